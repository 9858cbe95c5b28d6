#!/usr/bin/env python3
"""Writes crates/eval/tests/cases/: one small incident per discovery mechanism of the context stage
(issue 17, points 1 to 7), each with the culprit and an obvious candidate that is a red herring. The
test crates/eval/tests/discovery.rs serves each case on a real Prometheus (blocks built by promtool)
and the scenario Loki, runs the context stage and checks what it found and what it left out.

Run from the repository root: python3 eval/gen/cases.py. Same file format as eval/scenarios (see
docs/EVAL.md); the expect.toml files only describe the case, the test asserts on the evidence.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from omgen import Scenario, alert, group, step  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "eval", "tests", "cases")


def expect(description, category, culprit):
    return f'''
description = "{description}"
category = "{category}"
culprit = ["{culprit}"]
tags = ["discovery"]

[[fact]]
what = "the culprit"
any = ["{culprit}"]
'''


def ksm_pods(s, namespace, deployment, rs_hash, pods, nodes):
    """kube-state-metrics: pods owned by a ReplicaSet of a Deployment, each on a node."""
    rs = f"{deployment}-{rs_hash}"
    s.info("kube_pod_owner", "Information about the Pod's owner.",
           [({"namespace": namespace, "pod": p, "owner_kind": "ReplicaSet", "owner_name": rs,
              "owner_is_controller": "true"}, None, None) for p in pods])
    s.info("kube_replicaset_owner", "Information about the ReplicaSet's owner.",
           [({"namespace": namespace, "replicaset": rs, "owner_kind": "Deployment",
              "owner_name": deployment, "owner_is_controller": "true"}, None, None)])
    s.info("kube_pod_info", "Information about pod.",
           [({"namespace": namespace, "pod": p, "node": n, "host_ip": f"10.0.0.{i + 10}",
              "pod_ip": f"10.244.{i}.7", "created_by_kind": "ReplicaSet", "created_by_name": rs},
             None, None) for i, (p, n) in enumerate(zip(pods, nodes))])


def entities_pod_node():
    """Point 1: the alert names a service; its pods run on ip-10-0-1-5, whose memory is under
    pressure. ip-10-0-9-9 is under the same pressure but runs none of its pods."""
    s = Scenario("entities-pod-node", step=30)
    start = -14 * 60
    pods = ["checkout-7d9c8b6f5-k2j4m", "checkout-7d9c8b6f5-x8p2q"]
    ksm_pods(s, "shop", "checkout", "7d9c8b6f5", pods, ["ip-10-0-1-5", "ip-10-0-1-5"])
    s.gauge("checkout_request_duration_seconds_p99", "p99 latency of checkout requests.",
            [({"namespace": "shop", "service": "checkout", "job": "checkout"},
              lambda t: 2.4 if t >= start else 0.18 + s.noise(0.01))])
    pressure = []
    for node in ("ip-10-0-1-5", "ip-10-0-9-9", "ip-10-0-3-3"):
        busy = node in ("ip-10-0-1-5", "ip-10-0-9-9")
        pressure.append(({"instance": f"{node}:9100", "job": "node"},
                         lambda t, busy=busy: (0.8 if busy and t >= start else 0.002) + abs(s.noise(0.001))))
    s.counter("node_pressure_memory_waiting_seconds_total",
              "Total time in seconds that processes have waited for memory", pressure, start=100.0)
    a = alert("checkout_request_duration_seconds_p99 > 1",
              {"alertname": "CheckoutSlow", "namespace": "shop", "service": "checkout", "severity": "warning"},
              {"summary": "checkout p99 above 1s"}, "-9m")
    s.write(ROOT, group([a], ["alertname"]), expect(
        "checkout's node ip-10-0-1-5 runs out of memory; ip-10-0-9-9 too, but no checkout pod runs there.",
        "resource_saturation", "ip-10-0-1-5"))


def dependency_hop():
    """Point 2: cart's errors name redis-cart-master; its pod logs Out Of Memory and its exporter
    says it is down. redis-sessions-master fails the same way, but cart never names it."""
    s = Scenario("dependency-hop", step=30)
    start = -13 * 60
    s.gauge("http_requests_error_ratio", "Share of requests answered 5xx.",
            [({"namespace": "shop", "service": "cart", "job": "cart"},
              lambda t: 0.31 if t >= start else 0.001)])
    s.gauge("redis_up", "Information about the Redis instance",
            [({"instance": f"redis://{r}-master.shop.svc:6379", "job": "redis"},
              lambda t: 0 if t >= start - 60 else 1) for r in ("redis-cart", "redis-sessions")])
    s.log_every(-7000, 0, 300, {"namespace": "shop", "app": "cart", "container": "cart"},
                lambda i, t: '{"level":"info","msg":"cart served","items":3}')
    s.log_every(start, 0, 40, {"namespace": "shop", "app": "cart", "container": "cart"},
                lambda i, t: '{"level":"error","msg":"cart lookup failed","error":"dial tcp redis-cart-master.shop.svc:6379: connect: connection refused"}')
    for r in ("redis-cart", "redis-sessions"):
        labels = {"namespace": "shop", "pod": f"{r}-master-0", "container": "redis"}
        s.log_every(-7000, start - 120, 600, labels, lambda i, t: "1:M * Background saving terminated with success")
        s.log(start - 70, labels, f"1:M # Out Of Memory allocating 16432 bytes! ({r})")
    a = alert("http_requests_error_ratio > 0.05",
              {"alertname": "HighErrorRate", "namespace": "shop", "service": "cart", "severity": "critical"},
              {"summary": "cart answers errors"}, "-10m")
    s.write(ROOT, group([a], ["alertname"]), expect(
        "redis-cart-master ran out of memory; redis-sessions-master did too, but cart does not use it.",
        "dependency_failure", "redis-cart-master"))


def workload_scope():
    """Point 3: the ingress alert names namespace and ingress; the autoscaler of that workload wants
    30 replicas and stops at 12. Another namespace's autoscaler is at its maximum too."""
    s = Scenario("workload-scope", step=30)
    start = -15 * 60
    for ns, name, busy in (("storefront", "storefront", True), ("search", "search", True)):
        labels = {"namespace": ns, "horizontalpodautoscaler": name}
        s.gauge("kube_horizontalpodautoscaler_spec_max_replicas", "Upper limit for the number of pods.",
                [(labels, lambda t: 12)])
        s.gauge("kube_horizontalpodautoscaler_status_desired_replicas", "Desired number of replicas.",
                [(labels, lambda t, busy=busy: 30 if busy and t >= start else 6)])
    s.gauge("nginx_ingress_controller_error_ratio", "Share of 5xx answers per ingress.",
            [({"namespace": "storefront", "ingress": "storefront"}, lambda t: 0.07 if t >= start else 0.001)])
    a = alert("nginx_ingress_controller_error_ratio > 0.02",
              {"alertname": "IngressHighErrorRate", "namespace": "storefront", "ingress": "storefront",
               "severity": "critical"}, {"summary": "storefront answers 5xx"}, "-12m")
    s.write(ROOT, group([a], ["alertname"]), expect(
        "The storefront autoscaler is at its maximum; so is search's, in another namespace.",
        "capacity", "storefront"))


def scoring():
    """Point 4: on the alerting host, disk I/O time jumps with the alert, and so does the app's
    database latency (a histogram); the load average is high all along (a red herring: high, but it
    did not change)."""
    s = Scenario("scoring", step=30)
    start = -12 * 60
    h = {"instance": "app-01:9100", "job": "node"}
    s.counter("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.",
              [({**h, "device": "nvme0n1"}, lambda t: (0.97 if t >= start else 0.05) + abs(s.noise(0.005)))],
              start=1e4)
    s.gauge("node_load15", "15m load average.", [(h, lambda t: 14.0 + s.noise(0.2))])
    # The app's database calls, a histogram: slow from the incident on (read as its 99th percentile).
    s.histogram("app_db_query_duration_seconds", "Database query latency.",
                [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
                [({"instance": "app-01:8080", "job": "app"}, lambda t: 40.0,
                  lambda t: 0.9 if t >= start else 0.02)])
    s.gauge("app_request_latency_seconds", "Request latency.",
            [({"instance": "app-01:8080", "job": "app"}, lambda t: 1.9 if t >= start else 0.1)])
    a = alert("app_request_latency_seconds > 1",
              {"alertname": "AppSlow", "instance": "app-01:8080", "job": "app", "severity": "warning"},
              {"summary": "app slow"}, "-10m")
    s.write(ROOT, group([a], ["alertname"]), expect(
        "Disk I/O saturates when the alert starts; the load was high long before.",
        "resource_saturation", "node_disk_io_time_seconds_total"))


def saturation():
    """Point 5: the checkout container works at 99% of its 768 MiB limit; its sidecar uses more
    memory in bytes (2 GiB) but of an 8 GiB limit."""
    s = Scenario("saturation", step=30)
    start = -11 * 60
    pod = {"namespace": "shop", "pod": "checkout-7d9c8b6f5-k2j4m"}
    mem = []
    for container, base, peak in (("checkout", 400e6, 799e6), ("cache", 2.1e9, 2.15e9)):
        mem.append(({**pod, "container": container, "instance": "ip-10-0-1-5", "job": "kubelet",
                     "metrics_path": "/metrics/cadvisor"},
                    lambda t, base=base, peak=peak: (peak if t >= start else base) + s.noise(1e6)))
    s.gauge("container_memory_working_set_bytes", "Current working set of the container in bytes", mem)
    s.gauge("kube_pod_container_resource_limits", "The number of requested limit resource by a container.",
            [({**pod, "container": c, "node": "ip-10-0-1-5", "resource": "memory", "unit": "byte"},
              lambda t, v=v: v) for c, v in (("checkout", 805306368), ("cache", 8589934592))])
    s.gauge("kube_pod_container_status_restarts_total", "restarts", [({**pod, "container": "checkout"},
            lambda t: 4 if t >= start + 120 else 0)])
    a = alert("kube_pod_container_status_restarts_total > 2",
              {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-7d9c8b6f5-k2j4m",
               "container": "checkout", "severity": "warning"}, {"summary": "checkout restarts"}, "-8m")
    s.write(ROOT, group([a], ["alertname"]), expect(
        "checkout runs into its memory limit; the cache container uses more bytes but a quarter of its limit.",
        "crash_oom", "805306368"))


def peers_factors():
    """Point 6: three targets of rack r12 are down; one r12 target and the other racks are up. All
    of them share the datacenter (a red herring: shared by the healthy ones too)."""
    s = Scenario("peers-factors", step=30)
    start = -10 * 60
    racks = {"db-11": "r11", "db-12": "r11", "db-21": "r12", "db-22": "r12", "db-23": "r12",
             "db-24": "r12", "db-31": "r13"}
    down = {"db-21", "db-22", "db-23"}
    s.gauge("up", "scrape health",
            [({"instance": f"{h}:9100", "job": "node", "rack": r, "datacenter": "fra1"},
              lambda t, h=h: 0 if h in down and t >= start else 1) for h, r in racks.items()])
    alerts = [alert('up{job="node"} == 0',
                    {"alertname": "TargetDown", "instance": f"{h}:9100", "job": "node", "rack": "r12",
                     "datacenter": "fra1", "severity": "critical"}, {"summary": f"{h} down"}, "-8m")
              for h in sorted(down)]
    s.write(ROOT, group(alerts, ["alertname", "job"]), expect(
        "Rack r12's targets are down (its switch); the datacenter is shared by all.",
        "network", "r12"))


def changes():
    """Point 7: profile's build info shows version 3.4.2 from just before the errors; notifications
    changed version an hour and a half ago (a red herring: long before)."""
    s = Scenario("changes", step=30)
    start = -12 * 60
    s.info("app_build_info", "Build information.", [
        ({"namespace": "platform", "service": "profile", "version": "3.4.1"}, None, start - 60),
        ({"namespace": "platform", "service": "profile", "version": "3.4.2"}, start - 60, None),
        ({"namespace": "platform", "service": "notifications", "version": "2.0.0"}, None, -95 * 60),
        ({"namespace": "platform", "service": "notifications", "version": "2.0.1"}, -95 * 60, None),
    ])
    s.gauge("http_error_ratio", "Share of 5xx answers.",
            [({"namespace": "platform", "service": "profile"}, lambda t: 0.2 if t >= start else 0.001)])
    a = alert("http_error_ratio > 0.05",
              {"alertname": "ServiceHighErrorRate", "namespace": "platform", "service": "profile",
               "severity": "critical"}, {"summary": "profile answers errors"}, "-9m")
    s.write(ROOT, group([a], ["alertname"]), expect(
        "profile's new version 3.4.2 fails; notifications changed long before.",
        "bad_deploy", "3.4.2"))


CASES = [entities_pod_node, dependency_hop, workload_scope, scoring, saturation, peers_factors, changes]

if __name__ == "__main__":
    for case in CASES:
        case()
