#!/usr/bin/env python3
"""Writes the large case of scripts/bench/context.sh: a cluster's worth of series (node_exporter on 30
hosts, kube-state-metrics and cAdvisor for 500 pods, three applications), over 50 minutes at a 60 s
scrape, with two incidents in it: host-07's CPU taken by a batch process group, and pod
shop/checkout-...-00's memory at its limit. Two alert groups, one each.

Usage: python3 eval/gen/large.py DIR [MINUTES]   (writes DIR/host and DIR/pod, scenario folders
that share metrics.om; see docs/EVAL.md for the format; MINUTES of data, 50 by default, at least
the context window's 40). Deterministic.
"""

import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))
from omgen import alert, fmt_value, group, rel  # noqa: E402

HOSTS = [f"host-{i:02d}" for i in range(1, 31)]
NAMESPACES = ["shop", "search", "billing", "identity", "platform"]
PODS_PER_NS = 100
CONTAINERS = ("main", "istio-proxy")
STEP = 60
TIMES = list(range(-50 * 60 + 45, 0, STEP))
INCIDENT = -10 * 60
rng = random.Random(17)


class Out:
    def __init__(self, path):
        self.f = open(path, "w")
        self.series = 0
        self.typed = set()

    def family(self, name, kind, help_="."):
        if name not in self.typed:
            self.typed.add(name)
            self.f.write(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")

    def write(self, name, labels, values):
        """values: one per time in TIMES."""
        lbl = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for t, v in zip(TIMES, values):
            self.f.write(f"{name}{{{lbl}}} {fmt_value(v)} {t}\n")
        self.series += 1

    def counter(self, name, labels, rate):
        value = rng.uniform(1e3, 1e5)
        vals = []
        for t in TIMES:
            value += max(0.0, rate(t)) * STEP
            vals.append(value)
        self.write(name, labels, vals)

    def gauge(self, name, labels, level):
        self.write(name, labels, [level(t) for t in TIMES])


def families(o):
    # In the order OpenMetrics needs: every family's samples together.
    o_cpu = "node_cpu_seconds_total"
    o.family(o_cpu, "counter")
    for h in HOSTS:
        for cpu in range(16):
            for mode in ("idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"):
                def rate(t, h=h, mode=mode):
                    b = 0.97 if (h == "host-07" and t >= INCIDENT) else 0.2 + rng.uniform(-0.01, 0.01)
                    return {"idle": 1 - b, "user": b * 0.7, "system": b * 0.2}.get(mode, b * 0.02)
                o.counter(o_cpu, {"cpu": str(cpu), "instance": f"{h}:9100", "job": "node", "mode": mode}, rate)
    gauges = ["node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes", "node_memory_Cached_bytes",
              "node_memory_Buffers_bytes", "node_memory_SwapFree_bytes", "node_load1", "node_load5",
              "node_load15", "node_procs_running", "node_procs_blocked", "node_entropy_available_bits",
              "node_filefd_allocated", "node_filefd_maximum", "node_nf_conntrack_entries",
              "node_nf_conntrack_entries_limit", "node_sockstat_TCP_inuse", "node_sockstat_TCP_tw",
              "node_timex_offset_seconds", "node_boot_time_seconds", "node_time_seconds"]
    gauges += [f"node_netstat_{p}_{i}" for p in ("Tcp", "Udp", "Ip", "Icmp") for i in range(10)]
    gauges += [f"node_vmstat_{p}_{i}" for p in ("pgpg", "pswp", "oom", "numa", "thp", "slab") for i in range(10)]
    levels = {"node_nf_conntrack_entries": 60000, "node_nf_conntrack_entries_limit": 262144,
              "node_filefd_allocated": 9000, "node_filefd_maximum": 9223372036854775807}
    for g in gauges:
        o.family(g, "gauge")
        for h in HOSTS:
            base = levels.get(g) or rng.uniform(1, 1e6)
            o.gauge(g, {"instance": f"{h}:9100", "job": "node"}, lambda t, base=base: base * (1 + rng.uniform(-0.01, 0.01)))
    for name in ("node_filesystem_avail_bytes", "node_filesystem_size_bytes", "node_filesystem_files_free",
                 "node_filesystem_files", "node_filesystem_readonly"):
        o.family(name, "gauge")
        for h in HOSTS:
            for dev, mp in (("/dev/nvme0n1p1", "/"), ("/dev/nvme1n1", "/var"), ("tmpfs", "/run"),
                            ("/dev/nvme2n1", "/data"), ("tmpfs", "/dev/shm")):
                base = rng.uniform(1e9, 5e10)
                o.gauge(name, {"device": dev, "fstype": "xfs", "instance": f"{h}:9100", "job": "node", "mountpoint": mp},
                        lambda t, base=base: base)
    for name in ("node_network_receive_bytes_total", "node_network_transmit_bytes_total",
                 "node_network_receive_packets_total", "node_network_transmit_packets_total",
                 "node_network_receive_errs_total", "node_network_transmit_errs_total",
                 "node_network_receive_drop_total", "node_network_transmit_drop_total",
                 "node_disk_read_bytes_total", "node_disk_written_bytes_total",
                 "node_disk_io_time_seconds_total", "node_disk_reads_completed_total",
                 "node_disk_writes_completed_total"):
        o.family(name, "counter")
        key = "device"
        for h in HOSTS:
            for dev in ("eth0", "eth1", "eth2", "eth3", "lo", "docker0", "nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1"):
                r = rng.uniform(1, 1e5)
                o.counter(name, {key: dev, "instance": f"{h}:9100", "job": "node"}, lambda t, r=r: r)
    # process-exporter on every host: host-07's batch group takes the CPU from the incident on.
    o.family("namedprocess_namegroup_cpu_seconds_total", "counter")
    for h in HOSTS:
        for g in ("nginx", "app", "batch-report", "backup", "sshd"):
            def rate(t, h=h, g=g):
                if g == "batch-report" and h == "host-07" and t >= INCIDENT:
                    return 7.2
                return 0.05
            o.counter("namedprocess_namegroup_cpu_seconds_total",
                      {"groupname": g, "instance": f"{h}:9256", "job": "process-exporter", "mode": "user"}, rate)
    o.family("node_uname_info", "gauge")
    for h in HOSTS:
        o.gauge("node_uname_info", {"instance": f"{h}:9100", "job": "node", "nodename": h, "release": "6.1.0"},
                lambda t: 1)

    # Kubernetes: 500 pods in 5 namespaces, 20 deployments each.
    pods = []
    for ns in NAMESPACES:
        for d in range(20):
            deploy = f"{['checkout', 'cart', 'api', 'worker', 'web'][d % 5]}-{d:02d}" if ns == "shop" else f"svc-{d:02d}"
            rs = f"{deploy}-7d9c8b6f5"
            for p in range(PODS_PER_NS // 20):
                pods.append((ns, deploy, rs, f"{rs}-{p:02d}x{d:02d}", HOSTS[(len(pods)) % len(HOSTS)]))
    culprit = pods[0]  # shop/checkout-00-7d9c8b6f5-00x00
    for name in ("kube_pod_created", "kube_pod_start_time", "kube_pod_labels"):
        o.family(name, "gauge")
        for p in pods:
            o.gauge(name, {"namespace": p[0], "pod": p[3]}, lambda t: 1.7e9)
    info = {"kube_pod_info": lambda ns, dep, rs, pod, node: {"namespace": ns, "pod": pod, "node": node, "host_ip": "10.0.0.1", "created_by_kind": "ReplicaSet", "created_by_name": rs},
            "kube_pod_owner": lambda ns, dep, rs, pod, node: {"namespace": ns, "pod": pod, "owner_kind": "ReplicaSet", "owner_name": rs},
            "kube_pod_container_info": lambda ns, dep, rs, pod, node: {"namespace": ns, "pod": pod, "container": "main", "image": f"registry/{dep}:1.0"}}
    for name, labels in info.items():
        o.family(name, "gauge")
        for p in pods:
            o.gauge(name, labels(*p), lambda t: 1)
    o.family("kube_replicaset_owner", "gauge")
    for ns, dep, rs in sorted({(p[0], p[1], p[2]) for p in pods}):
        o.gauge("kube_replicaset_owner", {"namespace": ns, "replicaset": rs, "owner_kind": "Deployment", "owner_name": dep}, lambda t: 1)
    o.family("kube_pod_status_phase", "gauge")
    for p in pods:
        for phase in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
            o.gauge("kube_pod_status_phase", {"namespace": p[0], "pod": p[3], "phase": phase}, lambda t, phase=phase: 1 if phase == "Running" else 0)
    o.family("kube_pod_container_resource_limits", "gauge")
    o.family("kube_pod_container_resource_requests", "gauge")
    for name in ("kube_pod_container_resource_limits", "kube_pod_container_resource_requests"):
        for p in pods:
            for c in CONTAINERS:
                for res, v in (("memory", 805306368), ("cpu", 1)):
                    o.gauge(name, {"namespace": p[0], "pod": p[3], "container": c, "node": p[4], "resource": res, "unit": "byte" if res == "memory" else "core"}, lambda t, v=v: v)
    for name in ("kube_pod_container_status_restarts_total", "kube_pod_container_status_ready",
                 "kube_pod_container_status_running", "kube_pod_container_status_waiting"):
        o.family(name, "gauge" if not name.endswith("_total") else "counter")
        for p in pods:
            for c in CONTAINERS:
                crash = p == culprit and c == "main"
                o.gauge(name, {"namespace": p[0], "pod": p[3], "container": c},
                        lambda t, crash=crash, name=name: (6 if crash and t >= INCIDENT else 0) if name.endswith("_total") else 1)
    cad_g = ["container_memory_working_set_bytes", "container_memory_rss", "container_memory_cache",
             "container_memory_usage_bytes", "container_spec_memory_limit_bytes", "container_threads",
             "container_file_descriptors", "container_processes", "container_sockets",
             "container_memory_mapped_file"]
    cad_c = ["container_cpu_usage_seconds_total", "container_cpu_user_seconds_total",
             "container_cpu_system_seconds_total", "container_cpu_cfs_periods_total",
             "container_cpu_cfs_throttled_periods_total", "container_network_receive_bytes_total",
             "container_network_transmit_bytes_total", "container_fs_reads_bytes_total",
             "container_fs_writes_bytes_total", "container_memory_failures_total"]
    for name in cad_g:
        o.family(name, "gauge")
        for p in pods:
            for c in CONTAINERS:
                crash = p == culprit and c == "main"
                base = rng.uniform(1e8, 4e8)
                o.gauge(name, {"namespace": p[0], "pod": p[3], "container": c, "instance": p[4], "job": "kubelet"},
                        lambda t, crash=crash, base=base, name=name: 8.0e8 if (crash and name == "container_memory_working_set_bytes" and t >= INCIDENT) else base)
    for name in cad_c:
        o.family(name, "counter")
        for p in pods:
            for c in CONTAINERS:
                r = rng.uniform(0.01, 1)
                o.counter(name, {"namespace": p[0], "pod": p[3], "container": c, "instance": p[4], "job": "kubelet"}, lambda t, r=r: r)
    # Three applications: requests by pod, handler and code, and latency buckets.
    o.family("http_requests_total", "counter")
    apps = [p for p in pods if p[0] == "shop"]
    for p in apps:
        for handler in ("/", "/cart", "/checkout", "/api/v1/items", "/health", "/login", "/search", "/orders"):
            for code in ("200", "404", "500"):
                r = rng.uniform(0.1, 50)
                o.counter("http_requests_total", {"namespace": p[0], "pod": p[3], "handler": handler, "code": code, "job": p[1]}, lambda t, r=r: r)
    o.family("http_request_duration_seconds", "histogram")
    for p in apps:
        for handler in ("/", "/cart", "/checkout"):
            total = 0.0
            for le in ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"):
                total += rng.uniform(1, 10)
                o.counter("http_request_duration_seconds_bucket", {"namespace": p[0], "pod": p[3], "handler": handler, "le": le, "job": p[1]}, lambda t, r=total: r)
    return culprit




def main(root):
    os.makedirs(os.path.join(root, "host"), exist_ok=True)
    os.makedirs(os.path.join(root, "pod"), exist_ok=True)
    o = Out(os.path.join(root, "host", "metrics.om"))
    culprit = families(o)
    o.f.write("# EOF\n")
    o.f.close()
    ns, dep, rs, pod, node = culprit
    host = alert('100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[2m]))) > 90',
                 {"alertname": "HostHighCpuLoad", "instance": "host-07:9100", "job": "node", "severity": "warning"},
                 {"summary": "Host high CPU load (instance host-07:9100)"}, rel(INCIDENT + 180))
    podalert = alert("increase(kube_pod_container_status_restarts_total[10m]) > 2",
                     {"alertname": "KubePodCrashLooping", "namespace": ns, "pod": pod, "container": "main",
                      "job": "kube-state-metrics", "severity": "warning"},
                     {"summary": f"Pod {ns}/{pod} is crash looping"}, rel(INCIDENT + 180))
    for name, a, culprit_fact in (("host", host, "batch-report"), ("pod", podalert, "805306368")):
        d = os.path.join(root, name)
        with open(os.path.join(d, "alert.json"), "w") as f:
            json.dump(group([a], ["alertname"]), f)
        with open(os.path.join(d, "expect.toml"), "w") as f:
            f.write(f'description = "large case: {name}"\ncategory = "resource_saturation"\n'
                    f'culprit = ["{culprit_fact}"]\n\n[[fact]]\nwhat = "the culprit"\nany = ["{culprit_fact}"]\n')
        open(os.path.join(d, "logs.jsonl"), "w").close()
    link = os.path.join(root, "pod", "metrics.om")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.join(os.path.abspath(root), "host", "metrics.om"), link)
    print(f"{o.series} series, {len(TIMES)} samples each, in {root}")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        TIMES = list(range(-int(sys.argv[2]) * 60 + 45, 0, STEP))
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/aiops-large")
