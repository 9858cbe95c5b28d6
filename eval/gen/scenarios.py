#!/usr/bin/env python3
"""Writes eval/scenarios/: realistic incidents, as the exporters and log pipelines of a production
estate would record them. Run from the repository root: python3 eval/gen/scenarios.py

Each function below is one incident. Metric names and labels are those of node_exporter,
process-exporter, kube-state-metrics, cAdvisor, blackbox_exporter, postgres_exporter,
mysqld_exporter, redis_exporter, kafka_exporter, ingress-nginx, CoreDNS, cert-manager, Micrometer
and the Go client; alert rules follow kubernetes-mixin and awesome-prometheus-alerts. Logs carry the
labels Promtail, Grafana Alloy and journald give them, which rarely match the alert's labels.

Write what production looks like; never shape an incident to what aiops finds today.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from omgen import Scenario, alert, group, step, ramp  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "scenarios")
SCENARIOS = []


def scenario(f):
    SCENARIOS.append(f)
    return f


# ---------------------------------------------------------------- shared pieces

CPU_MODES = {"idle": 0.0, "user": 0.0, "system": 0.0, "iowait": 0.0}


def node_cpu(s, hosts, busy, cpus=2, port=9100, extra=None):
    """node_cpu_seconds_total per host, cpu and mode; busy(host, t) is the share of CPU time used."""
    series = []
    for h in hosts:
        for cpu in range(cpus):
            labels = {"cpu": str(cpu), "instance": f"{h}:{port}", "job": "node", **(extra or {}).get(h, {})}
            for mode, share in (("user", 0.7), ("system", 0.2), ("iowait", 0.1), ("idle", None)):
                def rate(t, h=h, share=share):
                    b = min(0.99, max(0.01, busy(h, t) + s.noise(0.01)))
                    return (1 - b) if share is None else b * share
                series.append(({**labels, "mode": mode}, rate))
    s.counter("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", series, start=4e5)


def node_load(s, hosts, load, port=9100):
    s.gauge("node_load1", "1m load average.",
            [({"instance": f"{h}:{port}", "job": "node"}, lambda t, h=h: max(0, load(h, t) + s.noise(0.05))) for h in hosts])


def node_memory(s, hosts, total, available, port=9100):
    s.gauge("node_memory_MemTotal_bytes", "Memory information field MemTotal_bytes.",
            [({"instance": f"{h}:{port}", "job": "node"}, lambda t, h=h: total) for h in hosts])
    s.gauge("node_memory_MemAvailable_bytes", "Memory information field MemAvailable_bytes.",
            [({"instance": f"{h}:{port}", "job": "node"}, lambda t, h=h: max(0, available(h, t) + s.noise(2e7))) for h in hosts])


def node_uname(s, hosts, port=9100):
    s.info("node_uname_info", "Labeled system information as provided by the uname system call.",
           [({"domainname": "(none)", "instance": f"{h}:{port}", "job": "node", "machine": "x86_64",
              "nodename": h, "release": "6.1.0-26-amd64", "sysname": "Linux",
              "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.112-1 (2024-09-30)"}, None, None) for h in hosts])


def up(s, targets, down=None):
    """up per (job, instance); down(job, instance, t) -> True when the scrape fails."""
    series = []
    for job, instance, extra in targets:
        series.append(({"instance": instance, "job": job, **extra},
                       lambda t, j=job, i=instance: 0 if down and down(j, i, t) else 1))
    s.gauge("up", "Whether the last scrape of the target succeeded.", series)


def http_requests(s, name, base_labels, rate, error_share, codes=("200", "500")):
    """A server's request counter split by code; error_share(t) is the share of 5xx."""
    ok, bad = codes
    s.counter(name, "Total number of HTTP requests by status code.", [
        ({**base_labels, "code": ok}, lambda t: rate(t) * (1 - error_share(t))),
        ({**base_labels, "code": bad}, lambda t: rate(t) * error_share(t)),
    ])


def k8s_pods(s, namespace, deployment, replicaset, pods, node_of, image, since=None):
    s.info("kube_pod_info", "Information about pod.", [
        ({"namespace": namespace, "pod": p, "uid": f"{abs(hash(p)) % 10**8:08d}-1c2d-4e5f-8a9b-{abs(hash(p+'x')) % 10**12:012d}",
          "host_ip": f"10.0.{i + 1}.{17 + i}", "pod_ip": f"10.244.{i + 1}.{30 + i}", "node": node_of(p),
          "created_by_kind": "ReplicaSet", "created_by_name": replicaset, "priority_class": "",
          "host_network": "false"}, since, None) for i, p in enumerate(pods)])
    s.info("kube_pod_owner", "Information about the Pod's owner.", [
        ({"namespace": namespace, "pod": p, "owner_kind": "ReplicaSet", "owner_name": replicaset,
          "owner_is_controller": "true"}, since, None) for p in pods])
    s.info("kube_replicaset_owner", "Information about the ReplicaSet's owner.", [
        ({"namespace": namespace, "replicaset": replicaset, "owner_kind": "Deployment",
          "owner_name": deployment, "owner_is_controller": "true"}, since, None)])
    s.info("kube_pod_container_info", "Information about a container in a pod.", [
        ({"namespace": namespace, "pod": p, "container": deployment, "image_spec": image, "image": image,
          "image_id": f"{image.split(':')[0]}@sha256:{abs(hash(image)) % 10**16:016x}{'0' * 48}",
          "container_id": f"containerd://{abs(hash(p + image)) % 10**16:016x}{'a' * 48}"}, since, None) for p in pods])


# ---------------------------------------------------------------- 1. CPU: a batch process

@scenario
def node_cpu_batch_process():
    s = Scenario("node-cpu-batch-process", step=30)
    hosts = ["app-01", "app-02", "app-03", "app-04"]
    culprit_start = -16 * 60

    def busy(h, t):
        base = 0.22 + 0.04 * hosts.index(h)
        return 0.97 if (h == "app-03" and t >= culprit_start) else base

    node_cpu(s, hosts, busy)
    node_load(s, hosts, lambda h, t: busy(h, t) * 2 * (1.9 if h == "app-03" and t >= culprit_start else 1.0))
    node_uname(s, hosts)
    # process-exporter: the named groups on every host.
    groups = {"nginx": 0.05, "gunicorn": 0.25, "node_exporter": 0.01, "report-builder": 0.0}
    series = []
    for h in hosts:
        for g, share in groups.items():
            def rate(t, h=h, g=g, share=share):
                if g == "report-builder":
                    return 1.85 if (h == "app-03" and t >= culprit_start) else None
                return share * 2 * (0.9 + 0.2 * s.rng.random())
            series.append(({"groupname": g, "instance": f"{h}:9256", "job": "process-exporter", "mode": "user"}, rate))
    s.counter("namedprocess_namegroup_cpu_seconds_total", "Cpu user usage in seconds", series, start=5e4)
    s.gauge("namedprocess_namegroup_num_procs", "number of processes in this group",
            [({"groupname": g, "instance": f"{h}:9256", "job": "process-exporter"},
              (lambda t, h=h, g=g: (4 if (h == "app-03" and t >= culprit_start) else None) if g == "report-builder" else 3))
             for h in hosts for g in groups])
    # journald via Promtail: hostname, unit.
    for h in hosts:
        s.log_every(-7000, 0, 240, {"job": "systemd-journal", "hostname": h, "unit": "gunicorn.service"},
                    lambda i, t: f"[INFO] 200 GET /api/v2/orders?page={i % 7} 0.0{3 + i % 5}s")
    s.log(culprit_start - 5, {"job": "systemd-journal", "hostname": "app-03", "unit": "cron.service"},
          "CRON[48213]: (reports) CMD (/opt/reports/bin/report-builder --full --since=2024-01-01 >> /var/log/reports/full.log 2>&1)")
    s.log(culprit_start + 2, {"job": "systemd-journal", "hostname": "app-03", "unit": "cron.service"},
          "report-builder[48215]: starting full rebuild of 1,284,112 invoices with 4 workers")
    s.log_every(culprit_start + 60, 0, 180, {"job": "systemd-journal", "hostname": "app-03", "unit": "gunicorn.service"},
                lambda i, t: f"[WARNING] worker timeout (pid:{31000 + i}) request GET /api/v2/orders took 28.{i % 9}s")
    a = alert('100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[2m]))) > 90',
              {"alertname": "HostHighCpuLoad", "instance": "app-03:9100", "job": "node", "severity": "warning"},
              {"summary": "Host high CPU load (instance app-03:9100)",
               "description": "CPU load is > 90%\n  VALUE = 96.8\n  LABELS = map[instance:app-03:9100 job:node]"},
              "-8m")
    s.write(ROOT, group([a], ["alertname", "instance"]), """
description = "A nightly report rebuild started by cron at the wrong hour takes all CPU of app-03; gunicorn workers time out."
category = "resource_saturation"
culprit = ["report-builder"]
tags = ["cpu", "process"]

[[fact]]
what = "the process group eating the CPU"
any = ["report-builder"]

[[fact]]
what = "it was started by cron"
any = ["CRON[48213]", "report-builder --full"]

[[fact]]
what = "the other hosts are not busy"
any = ["app-01", "app-02", "app-04"]

[[fact]]
what = "the symptom for users: gunicorn worker timeouts"
any = ["worker timeout"]
""")


# ---------------------------------------------------------------- 2. memory: OOM kill on a host

@scenario
def node_memory_oom_kill():
    s = Scenario("node-memory-oom-kill")
    hosts = ["search-01", "search-02", "search-03"]
    leak_start = -50 * 60
    kill_at = -9 * 60
    total = 32 * 2**30

    def available(h, t):
        if h != "search-02" or t < leak_start:
            return 11.5 * 2**30 + hosts.index(h) * 2**29
        if t >= kill_at:
            return 14 * 2**30
        return max(0.4 * 2**30, 11.5 * 2**30 - (t - leak_start) * 2**30 * 11.2 / (kill_at - leak_start))

    node_memory(s, hosts, total, available)
    node_uname(s, hosts)
    s.counter("node_vmstat_oom_kill", "/proc/vmstat information field oom_kill.",
              [({"instance": f"{h}:9100", "job": "node"},
                (lambda t, h=h: 0.0)) for h in hosts], start=0)
    # The counter steps by one at the kill on search-02: rebuild it by hand.
    fam = s.families[-1]
    for labels, points in fam[3]:
        if labels["instance"] == "search-02:9100":
            points[:] = [(t, 1 if t >= kill_at else 0) for t, _ in points]
    s.gauge("node_memory_SwapFree_bytes", "Memory information field SwapFree_bytes.",
            [({"instance": f"{h}:9100", "job": "node"}, lambda t: 0) for h in hosts])
    for h in hosts:
        s.log_every(-7000, 0, 300, {"job": "varlogs", "host": h, "filename": "/var/log/syslog"},
                    lambda i, t: f"systemd[1]: Started Session {900 + i} of User deploy.")
    s.log(kill_at, {"job": "varlogs", "host": "search-02", "filename": "/var/log/kern.log"},
          "kernel: [2841733.120114] java invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0")
    s.log(kill_at + 1, {"job": "varlogs", "host": "search-02", "filename": "/var/log/kern.log"},
          "kernel: [2841733.121880] Out of memory: Killed process 18342 (java) total-vm:41842316kB, anon-rss:30824112kB, file-rss:0kB, shmem-rss:0kB, UID:112 pgtables:61604kB oom_score_adj:0")
    s.log(kill_at + 3, {"job": "varlogs", "host": "search-02", "filename": "/var/log/syslog"},
          "systemd[1]: elasticsearch.service: A process of this unit has been killed by the OOM killer.")
    s.log(kill_at + 3, {"job": "varlogs", "host": "search-02", "filename": "/var/log/syslog"},
          "systemd[1]: elasticsearch.service: Failed with result 'oom-kill'.")
    s.log_every(leak_start, kill_at, 420, {"job": "varlogs", "host": "search-02", "filename": "/var/log/elasticsearch/search.log"},
                lambda i, t: f"[WARN ][o.e.m.j.JvmGcMonitorService] [search-02] [gc][{2201 + i}] overhead, spent [{1 + i % 4}.{i % 10}s] collecting in the last [{2 + i % 4}.{i % 7}s]")
    a = alert('node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes * 100 < 10',
              {"alertname": "HostOutOfMemory", "instance": "search-02:9100", "job": "node", "severity": "warning"},
              {"summary": "Host out of memory (instance search-02:9100)",
               "description": "Node memory is filling up (< 10% left)\n  VALUE = 3.1\n  LABELS = map[instance:search-02:9100 job:node]"},
              "-13m")
    s.write(ROOT, group([a], ["alertname", "instance"]), """
description = "Elasticsearch's JVM on search-02 grows without bound (no heap cap fits the box) until the kernel OOM-kills it."
category = "crash_oom"
culprit = ["elasticsearch", "java"]
tags = ["memory", "oom", "kernel"]

[[fact]]
what = "the kernel killed java"
any = ["Killed process 18342 (java)", "Out of memory: Killed process"]

[[fact]]
what = "the unit that died"
any = ["elasticsearch.service"]

[[fact]]
what = "GC overhead before the kill"
any = ["JvmGcMonitorService", "overhead, spent"]

[[fact]]
what = "the oom_kill counter moved"
any = ["node_vmstat_oom_kill", "oom_kill"]
""")


# ---------------------------------------------------------------- 3. disk: logs fill /var

@scenario
def disk_full_logrotate():
    s = Scenario("disk-full-logrotate")
    hosts = ["edge-01", "edge-02"]
    size = 50 * 2**30
    broke = -95 * 60

    def avail(h, mount, t):
        if mount == "/":
            return 31 * 2**30
        if h != "edge-01" or t < broke:
            return 22 * 2**30
        return max(0.9 * 2**30, 22 * 2**30 - (t - broke) * (21.3 * 2**30) / (95 * 60 - 60))

    mounts = [("/", "/dev/nvme0n1p1", "ext4"), ("/var", "/dev/nvme1n1", "xfs")]
    s.gauge("node_filesystem_size_bytes", "Filesystem size in bytes.",
            [({"device": d, "fstype": f, "instance": f"{h}:9100", "job": "node", "mountpoint": m}, lambda t: size)
             for h in hosts for m, d, f in mounts])
    s.gauge("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.",
            [({"device": d, "fstype": f, "instance": f"{h}:9100", "job": "node", "mountpoint": m},
              lambda t, h=h, m=m: avail(h, m, t)) for h in hosts for m, d, f in mounts])
    s.gauge("node_filesystem_readonly", "Filesystem read-only status.",
            [({"device": d, "fstype": f, "instance": f"{h}:9100", "job": "node", "mountpoint": m}, lambda t: 0)
             for h in hosts for m, d, f in mounts])
    node_uname(s, hosts)
    for h in hosts:
        s.log_every(-7100, 0, 900, {"job": "systemd-journal", "host": h, "unit": "nginx.service"},
                    lambda i, t: "nginx[912]: 2024/11/28 03:1%d:02 [notice] 912#912: signal process started" % (i % 10))
    s.log(broke, {"job": "systemd-journal", "host": "edge-01", "unit": "logrotate.service"},
          "logrotate[77102]: error: error running non-shared postrotate script for /var/log/nginx/access.log of '/var/log/nginx/*.log '")
    s.log(broke + 1, {"job": "systemd-journal", "host": "edge-01", "unit": "logrotate.service"},
          "systemd[1]: logrotate.service: Main process exited, code=exited, status=1/FAILURE")
    s.log(broke + 1, {"job": "systemd-journal", "host": "edge-01", "unit": "logrotate.service"},
          "systemd[1]: Failed to start logrotate.service - Rotate log files.")
    s.log(-200, {"job": "systemd-journal", "host": "edge-01", "unit": "nginx.service"},
          "nginx[912]: 2024/11/28 05:41:07 [crit] 913#913: *88123 pwrite() \"/var/log/nginx/access.log\" failed (28: No space left on device)")
    a = alert('(node_filesystem_avail_bytes * 100) / node_filesystem_size_bytes < 10 and ON (instance, device, mountpoint) node_filesystem_readonly == 0',
              {"alertname": "HostOutOfDiskSpace", "device": "/dev/nvme1n1", "fstype": "xfs", "instance": "edge-01:9100",
               "job": "node", "mountpoint": "/var", "severity": "warning"},
              {"summary": "Host out of disk space (instance edge-01:9100)",
               "description": "Disk is almost full (< 10% left)\n  VALUE = 8.7\n  LABELS = map[device:/dev/nvme1n1 fstype:xfs instance:edge-01:9100 job:node mountpoint:/var]"},
              "-9m")
    s.write(ROOT, group([a], ["alertname", "instance"]), """
description = "logrotate's postrotate script failed on edge-01, so nginx's access log was never rotated and filled /var."
category = "resource_saturation"
culprit = ["logrotate", "access.log"]
tags = ["disk"]

[[fact]]
what = "logrotate failed"
any = ["logrotate.service", "postrotate"]

[[fact]]
what = "the file that grew"
any = ["/var/log/nginx/access.log"]

[[fact]]
what = "the other edge host has room"
any = ["edge-02"]

[[fact]]
what = "writes now fail"
any = ["No space left on device"]
""")


# ---------------------------------------------------------------- 4. file descriptors

@scenario
def fd_exhaustion_conn_leak():
    s = Scenario("fd-exhaustion-conn-leak")
    pods = ["payments-api-6d9f7c8b5-2xkqp", "payments-api-6d9f7c8b5-8rvzt", "payments-api-6d9f7c8b5-w4mnd"]
    leak = -70 * 60

    def fds(p, t):
        if p != pods[1] or t < leak:
            return 180 + pods.index(p) * 7 + s.noise(4)
        return min(1024, 180 + (t - leak) * 0.22)

    labels = lambda p: {"instance": f"10.244.2.{30 + pods.index(p)}:8080", "job": "payments-api", "namespace": "payments", "pod": p}
    s.gauge("process_open_fds", "Number of open file descriptors.", [(labels(p), lambda t, p=p: fds(p, t)) for p in pods])
    s.gauge("process_max_fds", "Maximum number of open file descriptors.", [(labels(p), lambda t: 1024) for p in pods])
    s.gauge("go_goroutines", "Number of goroutines that currently exist.",
            [(labels(p), lambda t, p=p: 40 + fds(p, t) * 1.1) for p in pods])
    s.gauge("sql_db_connections_open", "Open connections to the database (database/sql DBStats).",
            [({**labels(p), "db_name": "ledger"}, lambda t, p=p: 10 if (p != pods[1] or t < leak) else min(1000, 10 + (t - leak) * 0.21)) for p in pods])
    s.gauge("sql_db_connections_max_open", "Maximum number of open connections to the database.",
            [({**labels(p), "db_name": "ledger"}, lambda t: 0) for p in pods])
    http_requests(s, "http_requests_total", {"handler": "/v1/charges", "method": "POST", "job": "payments-api", "namespace": "payments"},
                  lambda t: 42, lambda t: 0.18 if t >= -14 * 60 else 0.002)
    for p in pods:
        s.log_every(-7100, 0, 200, {"namespace": "payments", "pod": p, "container": "payments-api", "app": "payments-api", "stream": "stdout"},
                    lambda i, t, p=p: f'{{"level":"info","ts":{i}.5,"caller":"http/server.go:112","msg":"request done","path":"/v1/charges","status":200,"duration_ms":{18 + i % 9}}}')
    s.log(leak, {"namespace": "payments", "pod": pods[1], "container": "payments-api", "app": "payments-api", "stream": "stdout"},
          '{"level":"info","ts":1.5,"caller":"ledger/client.go:88","msg":"ledger client: retry on timeout enabled, rows not closed on retry path"}')
    s.log_every(-14 * 60, 0, 25, {"namespace": "payments", "pod": pods[1], "container": "payments-api", "app": "payments-api", "stream": "stderr"},
                lambda i, t: f'{{"level":"error","ts":{i}.1,"caller":"http/server.go:3211","msg":"http: Accept error: accept tcp [::]:8080: accept4: too many open files; retrying in {5 * (1 + i % 4)}ms"}}')
    a = alert('process_open_fds / process_max_fds > 0.9',
              {"alertname": "ProcessFileDescriptorsExhausted", "instance": "10.244.2.31:8080", "job": "payments-api",
               "namespace": "payments", "pod": pods[1], "severity": "critical"},
              {"summary": "payments-api is running out of file descriptors",
               "description": "payments/payments-api-6d9f7c8b5-8rvzt uses 93% of its file descriptors."},
              "-10m")
    s.write(ROOT, group([a], ["alertname", "namespace"]), """
description = "One payments-api pod leaks database connections (rows not closed on a retry path) until it hits its 1024 fd limit and cannot accept."
category = "resource_saturation"
culprit = ["ledger", "connection leak", "sql_db_connections_open"]
tags = ["fds", "peers"]

[[fact]]
what = "the limit"
any = ["1024"]

[[fact]]
what = "accept fails"
any = ["too many open files"]

[[fact]]
what = "the open DB connections grow with the fds"
any = ["sql_db_connections_open"]

[[fact]]
what = "the other pods are fine"
any = ["payments-api-6d9f7c8b5-2xkqp", "payments-api-6d9f7c8b5-w4mnd"]
""")


# ---------------------------------------------------------------- 5. PostgreSQL connections

@scenario
def postgres_too_many_connections():
    s = Scenario("postgres-too-many-connections")
    inst = "pg-orders-0.pg-orders.db.svc:9187"
    start = -18 * 60
    users = {("orders", "orders_api"): 22, ("orders", "orders_worker"): 8, ("orders", "reporting_ro"): 4, ("postgres", "postgres"): 1}

    def count(key, t):
        base = users[key]
        if key == ("orders", "orders_worker") and t >= start:
            return min(160, base + (t - start) * 0.6)
        return base + s.noise(1)

    s.gauge("pg_stat_activity_count", "number of connections in this state",
            [({"datname": d, "usename": u, "state": "active", "instance": inst, "job": "postgres", "server": "pg-orders-0:5432"},
              lambda t, k=(d, u): max(0, count(k, t))) for d, u in users])
    s.gauge("pg_settings_max_connections", "Sets the maximum number of concurrent connections.",
            [({"instance": inst, "job": "postgres", "server": "pg-orders-0:5432"}, lambda t: 200)])
    s.gauge("pg_settings_superuser_reserved_connections", "Sets the number of connection slots reserved for superusers.",
            [({"instance": inst, "job": "postgres", "server": "pg-orders-0:5432"}, lambda t: 3)])
    s.gauge("pg_up", "Whether the last scrape could connect to PostgreSQL.", [({"instance": inst, "job": "postgres"}, lambda t: 1)])
    s.gauge("kube_deployment_spec_replicas", "Number of desired pods for a deployment.",
            [({"namespace": "orders", "deployment": "orders-worker"}, lambda t: 20 if t >= start - 60 else 4),
             ({"namespace": "orders", "deployment": "orders-api"}, lambda t: 6)])
    s.log(start - 60, {"namespace": "orders", "app": "orders-worker", "container": "manager", "pod": "keda-operator-6bd5b9c8f-zq7tx"},
          "scaledobject orders-worker: scaling deployment orders/orders-worker from 4 to 20 replicas (queue length 18231 > 500)")
    s.log_every(start + 120, 0, 20, {"namespace": "orders", "app": "orders-api", "container": "orders-api"},
                lambda i, t: f"ERROR [HikariPool-1] o.h.p.HikariPool: HikariPool-1 - Exception during pool initialization. org.postgresql.util.PSQLException: FATAL: sorry, too many clients already (url jdbc:postgresql://pg-orders-0.pg-orders.db.svc:5432/orders?user=orders_api&password=Xr7-kP2q!vLm)")
    s.log_every(start + 100, 0, 45, {"namespace": "db", "app": "pg-orders", "container": "postgres"},
                lambda i, t: f'2024-11-28 09:{14 + i % 40:02d}:0{i % 10}.123 UTC [{5512 + i}] FATAL:  remaining connection slots are reserved for non-replication superuser connections')
    s.log_every(-7100, 0, 300, {"namespace": "orders", "app": "orders-worker", "container": "orders-worker"},
                lambda i, t: f"INFO  c.s.o.worker.Consumer - processed batch of {180 + i % 40} orders in {900 + i % 300} ms (pool size 10)")
    a = alert('sum by (instance, server) (pg_stat_activity_count) > on (instance, server) (pg_settings_max_connections * 0.8)',
              {"alertname": "PostgresqlTooManyConnections", "instance": inst, "job": "postgres", "server": "pg-orders-0:5432",
               "severity": "warning"},
              {"summary": "Postgresql too many connections (instance pg-orders-0.pg-orders.db.svc:9187)",
               "description": "PostgreSQL instance has too many connections (> 80%).\n  VALUE = 172"},
              "-9m")
    s.write(ROOT, group([a], ["alertname", "instance"]), """
description = "KEDA scaled orders-worker from 4 to 20 replicas, each with a pool of 10 connections; pg-orders runs out of its 200 connections and orders-api cannot connect."
category = "resource_saturation"
culprit = ["orders-worker", "orders_worker"]
tags = ["connections", "secrets", "database"]
secrets = ["Xr7-kP2q!vLm"]

[[fact]]
what = "who holds the connections"
any = ["orders_worker"]

[[fact]]
what = "max_connections"
any = ["200"]

[[fact]]
what = "the client error"
any = ["too many clients already"]

[[fact]]
what = "the scale-out"
any = ["from 4 to 20 replicas", "orders-worker"]
""")


# ---------------------------------------------------------------- 6. K8s: OOMKilled crash loop

def restarts(s, namespace, pods, container, restart_times):
    """kube_pod_container_status_restarts_total: restart_times[pod] = [t, ...]."""
    s.counter("kube_pod_container_status_restarts_total", "The number of container restarts per container.",
              [({"namespace": namespace, "pod": p, "container": container, "job": "kube-state-metrics"},
                lambda t: 0.0) for p in pods], start=0)
    for labels, points in s.families[-1][3]:
        times = restart_times.get(labels["pod"], [])
        points[:] = [(t, sum(1 for r in times if t >= r)) for t, _ in points]


@scenario
def k8s_crashloop_oomkilled():
    s = Scenario("k8s-crashloop-oomkilled")
    ns = "shop"
    pods = ["checkout-7f8d6b9c4-h2xvl", "checkout-7f8d6b9c4-lq9zc", "checkout-7f8d6b9c4-t5wnb"]
    nodes = {pods[0]: "ip-10-0-1-17.eu-west-1.compute.internal", pods[1]: "ip-10-0-2-18.eu-west-1.compute.internal",
             pods[2]: "ip-10-0-3-19.eu-west-1.compute.internal"}
    k8s_pods(s, ns, "checkout", "checkout-7f8d6b9c4", pods, nodes.get, "registry.example.com/shop/checkout:4.12.1")
    limit = 768 * 2**20
    crashes = [-24 * 60, -19 * 60, -13 * 60, -6 * 60]

    def ws(p, t):
        if p != pods[1]:
            return 410 * 2**20 + pods.index(p) * 9 * 2**20 + s.noise(4 * 2**20)
        last = max([c for c in crashes if c <= t], default=-3 * 3600)
        grow = 420 * 2**20 + (t - last) * (0.9 * 2**20 if t >= -30 * 60 else 0.01 * 2**20)
        return min(limit * 0.999, grow)

    cl = lambda p: {"namespace": ns, "pod": p, "container": "checkout", "image": "registry.example.com/shop/checkout:4.12.1",
                    "name": f"k8s_checkout_{p}_shop_0", "id": f"/kubepods/burstable/pod{pods.index(p)}/{p}", "instance": nodes[p], "job": "kubelet",
                    "metrics_path": "/metrics/cadvisor"}
    s.gauge("container_memory_working_set_bytes", "Current working set of the container in bytes.",
            [(cl(p), lambda t, p=p: ws(p, t)) for p in pods])
    s.gauge("kube_pod_container_resource_limits", "The number of requested limit resource by a container.",
            [({"namespace": ns, "pod": p, "container": "checkout", "node": nodes[p], "resource": "memory", "unit": "byte"}, lambda t: limit) for p in pods])
    restarts(s, ns, pods, "checkout", {pods[1]: crashes})
    s.gauge("kube_pod_container_status_last_terminated_reason", "Describes the last reason the container was in terminated state.",
            [({"namespace": ns, "pod": pods[1], "container": "checkout", "reason": "OOMKilled"}, lambda t: 1 if t >= crashes[0] else None)])
    s.gauge("kube_pod_container_status_waiting_reason", "Describes the reason the container is currently in waiting state.",
            [({"namespace": ns, "pod": pods[1], "container": "checkout", "reason": "CrashLoopBackOff"},
              lambda t: 1 if any(c <= t < c + 150 for c in crashes[1:]) else None)])
    s.log_every(-30 * 60, 0, 40, {"namespace": ns, "pod": pods[1], "container": "checkout", "app": "checkout", "node_name": nodes[pods[1]]},
                lambda i, t: f"INFO  c.e.s.checkout.CartLoader - loaded cart snapshot of {4000 + i * 900} items into the in-memory price cache")
    for c in crashes:
        s.log(c - 2, {"namespace": ns, "pod": pods[1], "container": "checkout", "app": "checkout", "node_name": nodes[pods[1]]},
              "Exception in thread \"http-nio-8080-exec-7\" java.lang.OutOfMemoryError: Java heap space")
        s.log(c - 2, {"namespace": ns, "pod": pods[1], "container": "checkout", "app": "checkout", "node_name": nodes[pods[1]]},
              "\tat com.example.shop.checkout.PriceCache.warm(PriceCache.java:142)")
    for p in (pods[0], pods[2]):
        s.log_every(-7000, 0, 240, {"namespace": ns, "pod": p, "container": "checkout", "app": "checkout", "node_name": nodes[p]},
                    lambda i, t: "INFO  o.s.web.servlet.DispatcherServlet - Completed 200 OK")
    a = alert('max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff", job="kube-state-metrics"}[5m]) >= 1',
              {"alertname": "KubePodCrashLooping", "container": "checkout", "namespace": ns, "pod": pods[1],
               "reason": "CrashLoopBackOff", "severity": "warning", "job": "kube-state-metrics"},
              {"description": f"Pod {ns}/{pods[1]} (checkout) is in waiting state (reason: \"CrashLoopBackOff\").",
               "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
               "summary": "Pod is crash looping."},
              "-12m")
    # The rule reads a label (job) the series above do not carry: kube-state-metrics adds it at scrape.
    for fam in s.families:
        if fam[0] in ("kube_pod_container_status_waiting_reason",):
            for labels, _ in fam[3]:
                labels["job"] = "kube-state-metrics"
    s.write(ROOT, group([a], ["alertname", "namespace"]), """
description = "One checkout pod warms a price cache that grows past its 768 MiB memory limit; the JVM is OOMKilled and crash-loops."
category = "crash_oom"
culprit = ["OOMKilled", "memory limit", "PriceCache", "heap"]
tags = ["kubernetes", "oom", "limits"]

[[fact]]
what = "the kill reason"
any = ["OOMKilled"]

[[fact]]
what = "the limit"
any = ["805306368", "768"]

[[fact]]
what = "the JVM error"
any = ["OutOfMemoryError"]

[[fact]]
what = "what grows"
any = ["PriceCache", "price cache"]
""")


# ---------------------------------------------------------------- 7. K8s: a bad deploy (config)

@scenario
def k8s_bad_deploy_missing_config():
    s = Scenario("k8s-bad-deploy-missing-config")
    ns = "billing"
    deploy_at = -17 * 60
    old = ["invoice-api-5c7d9f6b8-9jxkm", "invoice-api-5c7d9f6b8-rt2zw"]
    new = ["invoice-api-84b6d5f7c-4hq8n", "invoice-api-84b6d5f7c-p7sxd"]
    k8s_pods(s, ns, "invoice-api", "invoice-api-5c7d9f6b8", old, lambda p: "ip-10-0-1-21", "registry.example.com/billing/invoice-api:2.13.4")
    # The new ReplicaSet's pods exist from the rollout on.
    k8s_pods(s, ns, "invoice-api", "invoice-api-84b6d5f7c", new, lambda p: "ip-10-0-2-22", "registry.example.com/billing/invoice-api:2.14.0", since=deploy_at)
    s.gauge("kube_deployment_status_observed_generation", "The generation observed by the deployment controller.",
            [({"namespace": ns, "deployment": "invoice-api"}, step(41, 42, deploy_at))])
    s.gauge("kube_deployment_metadata_generation", "Sequence number representing a specific generation of the desired state.",
            [({"namespace": ns, "deployment": "invoice-api"}, step(41, 42, deploy_at))])
    s.gauge("kube_deployment_status_replicas_unavailable", "The number of unavailable replicas per deployment.",
            [({"namespace": ns, "deployment": "invoice-api"}, lambda t: 1 if t >= deploy_at else 0)])
    http_requests(s, "http_server_requests_seconds_count", {"application": "invoice-api", "namespace": ns, "uri": "/invoices/{id}", "method": "GET"},
                  lambda t: 31, lambda t: 0.46 if t >= deploy_at + 30 else 0.001, codes=("200", "500"))
    for p in new:
        s.log(deploy_at + 5, {"namespace": ns, "pod": p, "container": "invoice-api", "app": "invoice-api", "version": "2.14.0"},
              "Starting InvoiceApiApplication v2.14.0 using Java 21.0.5 with PID 1")
        s.log_every(deploy_at + 20, 0, 12, {"namespace": ns, "pod": p, "container": "invoice-api", "app": "invoice-api", "version": "2.14.0"},
                    lambda i, t: "ERROR o.a.c.c.C.[.[.[/].[dispatcherServlet] - Servlet.service() threw exception: java.lang.IllegalStateException: Required property 'tax.provider.url' is not set (TAX_PROVIDER_URL) [env: SPRING_PROFILES_ACTIVE=prod, TAX_PROVIDER_TOKEN=tp_live_51HgT2sKq9vW8]")
    for p in old:
        s.log_every(-7000, deploy_at + 60, 180, {"namespace": ns, "pod": p, "container": "invoice-api", "app": "invoice-api", "version": "2.13.4"},
                    lambda i, t: f"INFO  c.e.b.invoice.InvoiceController - GET /invoices/{88000 + i} 200 in {11 + i % 8} ms")
    s.log(deploy_at - 20, {"namespace": "argocd", "app": "argocd-application-controller", "container": "application-controller"},
          'level=info msg="Updated sync status: Synced -> OutOfSync" application=argocd/billing-invoice-api dest-namespace=billing revision=7c1e9a2 image=registry.example.com/billing/invoice-api:2.14.0')
    a = alert('sum by (namespace, application) (rate(http_server_requests_seconds_count{status=~"5..|500"}[5m])) / sum by (namespace, application) (rate(http_server_requests_seconds_count[5m])) > 0.05',
              {"alertname": "HighErrorRatio", "application": "invoice-api", "namespace": ns, "severity": "critical"},
              {"summary": "invoice-api answers more than 5% errors", "description": "46% of requests to invoice-api fail."},
              "-11m")
    # Micrometer labels the status as `status`, not `code`.
    for labels, _ in s.families[-1][3]:
        labels["status"] = labels.pop("code")
        labels["outcome"] = "SUCCESS" if labels["status"] == "200" else "SERVER_ERROR"
    s.write(ROOT, group([a], ["alertname", "namespace"]), """
description = "invoice-api 2.14.0 reads a new required property tax.provider.url that the deployment does not set; the new pods fail half the requests."
category = "bad_deploy"
culprit = ["2.14.0", "tax.provider.url", "TAX_PROVIDER_URL"]
tags = ["kubernetes", "deploy", "secrets"]
secrets = ["tp_live_51HgT2sKq9vW8"]

[[fact]]
what = "the new version"
any = ["2.14.0"]

[[fact]]
what = "the missing setting"
any = ["tax.provider.url", "TAX_PROVIDER_URL"]

[[fact]]
what = "the rollout's time: a new generation"
any = ["observed_generation", "generation"]

[[fact]]
what = "the old version was fine"
any = ["2.13.4"]
""")


# ---------------------------------------------------------------- 8. CPU throttling (node CPU is fine)

@scenario
def k8s_cpu_throttling():
    s = Scenario("k8s-cpu-throttling")
    ns = "search"
    pods = ["search-api-7b5c9d8f6-2kd9s", "search-api-7b5c9d8f6-nq4xz", "search-api-7b5c9d8f6-zt7mv"]
    nodes = {p: f"gke-prod-pool-2-{['a1b2', 'c3d4', 'e5f6'][i]}" for i, p in enumerate(pods)}
    k8s_pods(s, ns, "search-api", "search-api-7b5c9d8f6", pods, nodes.get, "europe-docker.pkg.dev/acme/search/search-api:5.3.0")
    surge = -18 * 60
    use = lambda t: 0.48 if t >= surge else 0.22
    cl = lambda p: {"namespace": ns, "pod": p, "container": "search-api", "instance": nodes[p], "job": "kubelet", "metrics_path": "/metrics/cadvisor"}
    s.counter("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.",
              [(cl(p), lambda t: use(t) + s.noise(0.01)) for p in pods])
    s.counter("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.",
              [(cl(p), lambda t: 10.0) for p in pods], start=2e6)
    s.counter("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.",
              [(cl(p), lambda t: 7.1 if t >= surge else 0.3) for p in pods], start=1e4)
    s.gauge("kube_pod_container_resource_limits", "The number of requested limit resource by a container.",
            [({"namespace": ns, "pod": p, "container": "search-api", "node": nodes[p], "resource": "cpu", "unit": "core"}, lambda t: 0.5) for p in pods])
    s.gauge("kube_pod_container_resource_requests", "The number of requested request resource by a container.",
            [({"namespace": ns, "pod": p, "container": "search-api", "node": nodes[p], "resource": "cpu", "unit": "core"}, lambda t: 0.25) for p in pods])
    node_cpu(s, list(nodes.values()), lambda h, t: 0.31 + 0.03 * list(nodes.values()).index(h))
    s.histogram("http_request_duration_seconds", "Duration of HTTP requests.", [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                [({"namespace": ns, "service": "search-api", "handler": "/search", "method": "GET"},
                  lambda t: 120 if t >= surge else 60, lambda t: 0.9 if t >= surge else 0.08)])
    s.log(surge - 40, {"namespace": "marketing", "app": "campaign-scheduler", "container": "scheduler"},
          "campaign black-friday-teaser sent to 1.2M recipients; search traffic expected to double")
    for p in pods:
        s.log_every(-7000, 0, 300, {"namespace": ns, "pod": p, "container": "search-api", "app": "search-api"},
                    lambda i, t: f'level=info msg="query served" q_len={3 + i % 9} hits={i * 7 % 500} took_ms={40 + i % 30}')
    a = alert('histogram_quantile(0.99, sum by (le, service) (rate(http_request_duration_seconds_bucket{service="search-api"}[5m]))) > 0.5',
              {"alertname": "SearchApiLatencyHigh", "namespace": ns, "service": "search-api", "severity": "warning"},
              {"summary": "search-api p99 latency above 500ms", "description": "p99 latency of search-api is 2.3s."},
              "-10m")
    s.write(ROOT, group([a], ["alertname", "namespace"]), """
description = "Traffic doubled and search-api's 0.5-core CPU limit throttles it (70% of CFS periods throttled) while its nodes sit at 30% CPU."
category = "resource_saturation"
culprit = ["throttl", "cpu limit", "CFS"]
tags = ["kubernetes", "throttling", "red_herring"]

[[fact]]
what = "the containers are throttled"
any = ["container_cpu_cfs_throttled_periods_total", "throttled"]

[[fact]]
what = "the CPU limit"
any = ["0.5"]

[[fact]]
what = "the nodes are not busy"
any = ["node_cpu_seconds_total"]
""")


# ---------------------------------------------------------------- 9. dependency: Redis refuses

@scenario
def dependency_redis_refused():
    s = Scenario("dependency-redis-refused")
    ns = "shop"
    down = -14 * 60
    http_requests(s, "http_requests_total", {"job": "cart", "namespace": ns, "service": "cart", "route": "/api/cart"},
                  lambda t: 85, lambda t: 0.62 if t >= down else 0.003)
    s.gauge("redis_up", "Information about the Redis instance", [
        ({"instance": "redis://redis-cart-master.shop.svc:6379", "job": "redis"}, lambda t: 0 if t >= down else 1),
        ({"instance": "redis://redis-sessions-master.shop.svc:6379", "job": "redis"}, lambda t: 1)])
    s.gauge("redis_connected_clients", "connected_clients metric", [
        ({"instance": "redis://redis-cart-master.shop.svc:6379", "job": "redis"}, lambda t: None if t >= down else 48 + s.noise(2)),
        ({"instance": "redis://redis-sessions-master.shop.svc:6379", "job": "redis"}, lambda t: 31 + s.noise(2))])
    s.gauge("redis_memory_used_bytes", "memory_used_bytes metric", [
        ({"instance": "redis://redis-cart-master.shop.svc:6379", "job": "redis"}, lambda t: None if t >= down else 3.9e9 + (t + 7200) * 4e4),
        ({"instance": "redis://redis-sessions-master.shop.svc:6379", "job": "redis"}, lambda t: 2.1e8)])
    s.gauge("redis_memory_max_bytes", "memory_max_bytes metric", [
        ({"instance": "redis://redis-cart-master.shop.svc:6379", "job": "redis"}, lambda t: None if t >= down else 4.294967296e9),
        ({"instance": "redis://redis-sessions-master.shop.svc:6379", "job": "redis"}, lambda t: 1.073741824e9)])
    restarts(s, ns, ["redis-cart-master-0"], "redis", {"redis-cart-master-0": [down + 30, down + 200, down + 520]})
    s.log(down - 10, {"namespace": ns, "pod": "redis-cart-master-0", "container": "redis"},
          "1:M 28 Nov 2024 10:41:13.511 # Background saving error: Can't save in background: fork: Cannot allocate memory")
    s.log(down - 2, {"namespace": ns, "pod": "redis-cart-master-0", "container": "redis"},
          "1:M 28 Nov 2024 10:41:21.004 # Out Of Memory allocating 16432 bytes!")
    s.log_every(down + 5, 0, 15, {"namespace": ns, "pod": "cart-5d8c7b9f4-xk2lp", "container": "cart", "app": "cart"},
                lambda i, t: f'{{"level":"error","msg":"cart lookup failed","error":"dial tcp 10.96.113.40:6379: connect: connection refused","redis":"redis://:Gx8v2LkQp9@redis-cart-master.shop.svc:6379/0","user":"u-{4411 + i}"}}')
    s.log_every(-7000, 0, 120, {"namespace": ns, "pod": "cart-5d8c7b9f4-xk2lp", "container": "cart", "app": "cart"},
                lambda i, t: '{"level":"info","msg":"cart served","items":3,"ms":4}')
    a = alert('sum by (service, namespace) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (service, namespace) (rate(http_requests_total[5m])) > 0.05',
              {"alertname": "HighErrorRate", "namespace": ns, "service": "cart", "severity": "critical"},
              {"summary": "High error rate on cart", "description": "cart is answering 62% errors."},
              "-9m")
    s.write(ROOT, group([a], ["alertname", "namespace", "service"]), """
description = "redis-cart-master ran out of memory and keeps restarting; the cart service's connections are refused."
category = "dependency_failure"
culprit = ["redis-cart", "redis"]
tags = ["dependency", "secrets"]
secrets = ["Gx8v2LkQp9"]

[[fact]]
what = "connections refused"
any = ["connection refused"]

[[fact]]
what = "redis is down"
any = ["redis_up"]

[[fact]]
what = "redis ran out of memory"
any = ["Out Of Memory allocating", "Cannot allocate memory"]
""")



# ---------------------------------------------------------------- 10. dependency: a slow database

@scenario
def dependency_slow_database():
    s = Scenario("dependency-slow-database")
    ns = "orders"
    slow = -16 * 60
    s.histogram("http_server_request_duration_seconds", "Duration of HTTP server requests.",
                [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                [({"job": "orders-api", "namespace": ns, "http_route": "/orders/{id}", "http_request_method": "GET"},
                  lambda t: 140, lambda t: 1.9 if t >= slow else 0.03),
                 ({"job": "orders-api", "namespace": ns, "http_route": "/healthz", "http_request_method": "GET"},
                  lambda t: 2, lambda t: 0.002)])
    inst = "pg-orders-0.pg-orders.db.svc:9187"
    s.gauge("pg_stat_activity_max_tx_duration", "max duration in seconds any active transaction has been running",
            [({"datname": "orders", "state": "active", "usename": u, "instance": inst, "job": "postgres", "server": "pg-orders-0:5432"},
              (lambda t, u=u: (2400 + t - slow if t >= slow else 0.4) if u == "analytics_etl" else 1.2 + s.noise(0.3)))
             for u in ("orders_api", "analytics_etl")])
    s.counter("pg_stat_database_blks_read", "Number of disk blocks read in this database",
              [({"datname": "orders", "instance": inst, "job": "postgres", "server": "pg-orders-0:5432"},
                lambda t: 52000 if t >= slow else 900)])
    s.counter("pg_locks_count", "Number of locks", [
        ({"datname": "orders", "mode": "accessexclusivelock", "instance": inst, "job": "postgres"}, lambda t: 0.0)])
    s.log(slow - 30, {"namespace": "analytics", "app": "etl-nightly", "container": "etl", "job": "analytics/etl-nightly"},
          "INFO etl.extract: starting full extract of orders.order_lines (no incremental watermark found)")
    s.log_every(slow + 60, 0, 30, {"namespace": "db", "app": "pg-orders", "container": "postgres", "pod": "pg-orders-0"},
                lambda i, t: f"2024-11-28 11:{20 + i % 30:02d}:41.8{i % 10} UTC [{8812 + i}] LOG:  duration: {3100 + 37 * i} ms  statement: SELECT * FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE o.id = $1")
    s.log(slow + 10, {"namespace": "db", "app": "pg-orders", "container": "postgres", "pod": "pg-orders-0"},
          "2024-11-28 11:19:02.117 UTC [7702] LOG:  process 7702 still waiting for ShareLock on relation order_lines after 1000.112 ms")
    s.log_every(-7000, 0, 400, {"namespace": "db", "app": "pg-orders", "container": "postgres", "pod": "pg-orders-0"},
                lambda i, t: f"2024-11-28 10:{i % 60:02d}:00.000 UTC [61] LOG:  checkpoint complete: wrote {120 + i} buffers (0.7%)")
    a = alert('histogram_quantile(0.95, sum by (le, job) (rate(http_server_request_duration_seconds_bucket{job="orders-api"}[5m]))) > 1',
              {"alertname": "OrdersApiSlow", "job": "orders-api", "namespace": ns, "severity": "warning"},
              {"summary": "orders-api p95 latency above 1s", "description": "p95 of orders-api is 3.4s over 5 minutes."},
              "-10m")
    s.write(ROOT, group([a], ["alertname", "job"]), """
description = "A nightly ETL started a full extract on pg-orders; queries of orders-api wait on its locks and disk reads and take seconds."
category = "dependency_failure"
culprit = ["etl", "analytics_etl", "pg-orders"]
tags = ["dependency", "latency", "database"]

[[fact]]
what = "a long transaction on the database"
any = ["analytics_etl", "pg_stat_activity_max_tx_duration"]

[[fact]]
what = "slow statements in the database's log"
any = ["duration: 3"]

[[fact]]
what = "the full extract started"
any = ["full extract"]
""")


# ---------------------------------------------------------------- 11. network: DNS upstream failing

@scenario
def dns_coredns_servfail():
    s = Scenario("dns-coredns-servfail")
    broke = -15 * 60
    pods = ["coredns-5d78c9869d-8xj2k", "coredns-5d78c9869d-vq6tn"]
    s.counter("coredns_dns_responses_total", "Counter of response status codes.", [
        ({"instance": f"10.244.0.{11 + i}:9153", "job": "coredns", "pod": p, "server": "dns://:53", "zone": ".", "rcode": rc, "view": "", "plugin": ""},
         (lambda t, rc=rc: {"NOERROR": 410 if t < broke else 260, "NXDOMAIN": 95, "SERVFAIL": 140 if t >= broke else 0.05}[rc]))
        for i, p in enumerate(pods) for rc in ("NOERROR", "NXDOMAIN", "SERVFAIL")])
    s.counter("coredns_forward_healthcheck_broken_total", "Counter of the number of complete failures of the healthchecks.", [
        ({"instance": f"10.244.0.{11 + i}:9153", "job": "coredns", "pod": p}, lambda t: 0.2 if t >= broke else 0.0) for i, p in enumerate(pods)], start=0)
    s.counter("coredns_forward_responses_total", "Counter of responses received per upstream.", [
        ({"instance": f"10.244.0.{11 + i}:9153", "job": "coredns", "pod": p, "to": up_, "rcode": "NOERROR"},
         (lambda t, up_=up_: (0.0 if t >= broke else 60.0) if up_ == "10.20.0.53:53" else 58.0)) for i, p in enumerate(pods) for up_ in ("10.20.0.53:53", "10.20.1.53:53")])
    s.gauge("probe_success", "Displays whether or not the probe was a success", [
        ({"instance": "https://api.partner-bank.example/v2/health", "job": "blackbox-http", "module": "http_2xx"}, lambda t: 0 if t >= broke + 20 else 1),
        ({"instance": "https://status.example.com", "job": "blackbox-http", "module": "http_2xx"}, lambda t: 1),
        ({"instance": "10.20.0.53:53", "job": "blackbox-dns", "module": "dns_udp"}, lambda t: 0 if t >= broke else 1)])
    s.gauge("probe_dns_lookup_time_seconds", "Returns the time taken for probe dns lookup in seconds", [
        ({"instance": "https://api.partner-bank.example/v2/health", "job": "blackbox-http", "module": "http_2xx"}, lambda t: 5.0 if t >= broke + 20 else 0.004)])
    for p in pods:
        s.log_every(broke, 0, 12, {"namespace": "kube-system", "pod": p, "container": "coredns", "k8s_app": "kube-dns"},
                    lambda i, t: f"[ERROR] plugin/errors: 2 api.partner-bank.example. A: read udp 10.244.0.11:{40000 + i * 7}->10.20.0.53:53: i/o timeout")
    s.log_every(broke + 30, 0, 20, {"namespace": "payments", "app": "settlement", "container": "settlement"},
                lambda i, t: f"level=error msg=\"settlement push failed\" err=\"Post \\\"https://api.partner-bank.example/v2/settlements\\\": dial tcp: lookup api.partner-bank.example on 10.96.0.10:53: server misbehaving\" batch={7120 + i}")
    a = alert('probe_success{job="blackbox-http"} == 0',
              {"alertname": "BlackboxProbeFailed", "instance": "https://api.partner-bank.example/v2/health", "job": "blackbox-http",
               "module": "http_2xx", "severity": "critical"},
              {"summary": "Blackbox probe failed (instance https://api.partner-bank.example/v2/health)",
               "description": "Probe failed\n  VALUE = 0"},
              "-9m")
    s.write(ROOT, group([a], ["alertname", "instance"]), """
description = "The upstream resolver 10.20.0.53 stopped answering; CoreDNS answers SERVFAIL for external names, so the partner bank's API cannot be resolved."
category = "network"
culprit = ["10.20.0.53", "dns", "coredns", "resolver"]
tags = ["network", "dns"]

[[fact]]
what = "SERVFAIL from CoreDNS"
any = ["SERVFAIL"]

[[fact]]
what = "the upstream times out"
any = ["10.20.0.53:53: i/o timeout", "10.20.0.53"]

[[fact]]
what = "the client error"
any = ["server misbehaving"]
""")


# ---------------------------------------------------------------- 12. certificates: renewal failed

@scenario
def cert_expired_acme_ratelimit():
    s = Scenario("cert-expired-acme-ratelimit")
    expired = -12 * 60
    s.gauge("certmanager_certificate_ready_status", "The ready status of the certificate.", [
        ({"name": "shop-example-com-tls", "namespace": "shop", "condition": c, "issuer_name": "letsencrypt-prod", "issuer_kind": "ClusterIssuer", "issuer_group": "cert-manager.io"},
         (lambda t, c=c: (1 if c == "False" else 0) if t >= -5400 else (1 if c == "True" else 0))) for c in ("True", "False", "Unknown")] + [
        ({"name": "api-example-com-tls", "namespace": "api", "condition": c, "issuer_name": "letsencrypt-prod", "issuer_kind": "ClusterIssuer", "issuer_group": "cert-manager.io"},
         (lambda t, c=c: 1 if c == "True" else 0)) for c in ("True", "False", "Unknown")])
    # blackbox verifies the chain: an expired certificate fails the probe and reports no chain.
    s.gauge("probe_http_ssl", "Indicates if SSL was used for the final redirect", [
        ({"instance": "https://shop.example.com", "job": "blackbox-http", "module": "http_2xx"}, lambda t: 0 if t >= expired else 1),
        ({"instance": "https://api.example.com", "job": "blackbox-http", "module": "http_2xx"}, lambda t: 1)])
    s.gauge("probe_success", "Displays whether or not the probe was a success", [
        ({"instance": "https://shop.example.com", "job": "blackbox-http", "module": "http_2xx"}, lambda t: 0 if t >= expired else 1),
        ({"instance": "https://api.example.com", "job": "blackbox-http", "module": "http_2xx"}, lambda t: 1)])
    s.counter("certmanager_http_acme_client_request_count", "The number of requests made by the ACME client.", [
        ({"action": "new-order", "method": "POST", "scheme": "https", "host": "acme-v02.api.letsencrypt.org", "path": "/acme/new-order", "status": st},
         (lambda t, st=st: 0.02 if st == "429" else 0.0)) for st in ("201", "429")], start=0)
    s.log_every(-7000, 0, 600, {"namespace": "cert-manager", "app": "cert-manager", "container": "cert-manager-controller"},
                lambda i, t: 'E1128 10:12:03.311021       1 controller.go:167] "re-queuing item due to error processing" err="failed to create Order resource due to bad request, marking Order as failed: 429 urn:ietf:params:acme:error:rateLimited: Error creating new order :: too many certificates (5) already issued for this exact set of domains in the last 168 hours: shop.example.com" logger="cert-manager.controller" key="shop/shop-example-com-tls-1-2210374843"')
    s.log_every(expired, 0, 30, {"namespace": "ingress-nginx", "app": "ingress-nginx", "container": "controller"},
                lambda i, t: f"2024/11/28 10:{30 + i % 29:02d}:11 [error] 41#41: *{991200 + i} SSL_do_handshake() failed (SSL: error:0A000086:SSL routines::certificate verify failed) while SSL handshaking to upstream, client: 10.0.4.{i % 200}, server: shop.example.com")
    a = alert('probe_success == 0',
              {"alertname": "BlackboxProbeFailed", "instance": "https://shop.example.com", "job": "blackbox-http",
               "module": "http_2xx", "severity": "critical"},
              {"summary": "Blackbox probe failed (instance https://shop.example.com)",
               "description": "Probe failed\n  VALUE = 0\n  LABELS = map[instance:https://shop.example.com job:blackbox-http]"},
              "-11m")
    s.write(ROOT, group([a], ["alertname", "instance"]), """
description = "cert-manager could not renew shop.example.com for days: Let's Encrypt rate-limits the exact domain set (too many certificates issued); the certificate expired."
category = "dependency_failure"
culprit = ["rateLimited", "rate limit", "cert-manager", "letsencrypt"]
tags = ["certificates"]

[[fact]]
what = "renewal fails: rate limited"
any = ["rateLimited", "too many certificates"]

[[fact]]
what = "the certificate is not ready"
any = ["shop-example-com-tls"]

[[fact]]
what = "clients fail the handshake"
any = ["certificate verify failed"]
""")



# ---------------------------------------------------------------- 13. capacity: a surge, HPA at max

@scenario
def capacity_hpa_at_max():
    s = Scenario("capacity-hpa-at-max")
    ns = "storefront"
    surge = -22 * 60
    rate = lambda t: 2400 if t >= surge else 480
    s.counter("nginx_ingress_controller_requests", "The total number of client requests", [
        ({"controller_class": "k8s.io/ingress-nginx", "controller_namespace": "ingress-nginx", "controller_pod": "ingress-nginx-controller-6f7b8d9c5-x2k4p",
          "host": "www.example.com", "ingress": "storefront", "method": "GET", "namespace": ns, "path": "/", "service": "storefront", "status": st},
         (lambda t, st=st: rate(t) * ({"200": 0.93, "503": 0.06, "504": 0.01}[st] if t >= surge + 240 else {"200": 0.999, "503": 0.0005, "504": 0.0005}[st])))
        for st in ("200", "503", "504")])
    s.gauge("kube_horizontalpodautoscaler_status_current_replicas", "Current number of replicas of pods managed by this autoscaler.",
            [({"namespace": ns, "horizontalpodautoscaler": "storefront"}, lambda t: 6 if t < surge else min(12, 6 + (t - surge) // 60))])
    s.gauge("kube_horizontalpodautoscaler_status_desired_replicas", "Desired number of replicas of pods managed by this autoscaler.",
            [({"namespace": ns, "horizontalpodautoscaler": "storefront"}, lambda t: 6 if t < surge else 30)])
    s.gauge("kube_horizontalpodautoscaler_spec_max_replicas", "Upper limit for the number of pods that can be set by the autoscaler; cannot be smaller than MinReplicas.",
            [({"namespace": ns, "horizontalpodautoscaler": "storefront"}, lambda t: 12)])
    s.gauge("kube_horizontalpodautoscaler_spec_min_replicas", "Lower limit for the number of pods that can be set by the autoscaler, default 1.",
            [({"namespace": ns, "horizontalpodautoscaler": "storefront"}, lambda t: 3)])
    s.log(surge - 60, {"namespace": "marketing", "app": "newsletter", "container": "sender"},
          "campaign cyber-monday-early-access: 2,310,554 emails queued, landing page https://www.example.com/deals")
    s.log_every(surge + 240, 0, 15, {"namespace": "ingress-nginx", "app": "ingress-nginx", "container": "controller"},
                lambda i, t: f'10.0.{i % 8}.{i % 250} - - [28/Nov/2024:12:{i % 60:02d}:01 +0000] "GET /deals HTTP/2.0" 503 190 "-" "Mozilla/5.0" 42 0.000 [storefront-storefront-80] [] - - - - {i:032x}')
    s.log_every(surge + 120, 0, 120, {"namespace": "kube-system", "app": "kube-controller-manager", "container": "kube-controller-manager"},
                lambda i, t: 'I1128 horizontal.go:835] "Successful rescale" HPA="storefront/storefront" currentReplicas=12 desiredReplicas=30 reason="cpu resource utilization (percentage of request) above target" (limited by maxReplicas 12)')
    a = alert('sum by (ingress, namespace) (rate(nginx_ingress_controller_requests{status=~"5.."}[5m])) / sum by (ingress, namespace) (rate(nginx_ingress_controller_requests[5m])) > 0.02',
              {"alertname": "IngressHighErrorRate", "ingress": "storefront", "namespace": ns, "severity": "critical"},
              {"summary": "Ingress storefront answers more than 2% 5xx", "description": "7% of requests to www.example.com fail with 503/504."},
              "-13m")
    s.write(ROOT, group([a], ["alertname", "namespace"]), """
description = "A newsletter sent five times the usual traffic; the storefront autoscaler wants 30 replicas but stops at its maxReplicas of 12, and the ingress answers 503."
category = "capacity"
culprit = ["maxReplicas", "max replicas", "autoscaler", "hpa"]
tags = ["capacity", "traffic"]

[[fact]]
what = "the autoscaler is at its maximum"
any = ["kube_horizontalpodautoscaler_spec_max_replicas", "maxReplicas 12"]

[[fact]]
what = "it wants more"
any = ["desiredReplicas=30", "kube_horizontalpodautoscaler_status_desired_replicas"]

[[fact]]
what = "where the traffic came from"
any = ["cyber-monday", "campaign"]
""")


# ---------------------------------------------------------------- 14. queue lag: a slow downstream

@scenario
def kafka_consumer_lag_slow_downstream():
    s = Scenario("kafka-consumer-lag-slow-downstream")
    slow = -25 * 60
    parts = range(6)
    s.gauge("kafka_consumergroup_lag", "Current Approximate Lag of a ConsumerGroup at Topic/Partition", [
        ({"consumergroup": cg, "instance": "kafka-exporter.kafka.svc:9308", "job": "kafka-exporter", "partition": str(p), "topic": tp},
         (lambda t, cg=cg: max(0, (t - slow) * 9.5 + s.noise(30)) if (cg == "invoice-processor" and t >= slow) else abs(s.noise(20))))
        for cg, tp in (("invoice-processor", "orders.completed"), ("shipping-notifier", "orders.completed")) for p in parts])
    s.counter("kafka_consumergroup_current_offset", "Current Offset of a ConsumerGroup at Topic/Partition", [
        ({"consumergroup": cg, "instance": "kafka-exporter.kafka.svc:9308", "job": "kafka-exporter", "partition": str(p), "topic": "orders.completed"},
         (lambda t, cg=cg: 1.5 if (cg == "invoice-processor" and t >= slow) else 11.0)) for cg in ("invoice-processor", "shipping-notifier") for p in parts])
    s.histogram("http_client_requests_seconds", "Timer of outgoing HTTP requests (Micrometer).", [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0], [
        ({"application": "invoice-processor", "client_name": "tax-api.finance.svc", "method": "POST", "uri": "/v3/quote", "status": "200", "outcome": "SUCCESS"},
         lambda t: 6, lambda t: 7.5 if t >= slow else 0.09)])
    s.log_every(slow + 200, 0, 70, {"namespace": "billing", "app": "invoice-processor", "container": "invoice-processor"},
                lambda i, t: "WARN  o.a.k.c.c.internals.ConsumerCoordinator - [Consumer clientId=invoice-processor-1, groupId=invoice-processor] consumer poll timeout has expired. This means the time between subsequent calls to poll() was longer than the configured max.poll.interval.ms, which typically implies that the poll loop is spending too much time processing messages.")
    s.log_every(slow + 60, 0, 25, {"namespace": "billing", "app": "invoice-processor", "container": "invoice-processor"},
                lambda i, t: f"INFO  c.e.b.tax.TaxClient - POST https://tax-api.finance.svc/v3/quote took {7100 + 13 * i} ms (invoice {551200 + i})")
    s.log_every(slow - 30, 0, 40, {"namespace": "finance", "app": "tax-api", "container": "tax-api"},
                lambda i, t: f"WARN  rate provider vatlayer: upstream slow, {6 + i % 5}.{i % 10}s, falling back to synchronous lookup for country={['DE', 'FR', 'NL', 'IT'][i % 4]}")
    a = alert('sum by (consumergroup, topic) (kafka_consumergroup_lag) > 5000',
              {"alertname": "KafkaConsumerGroupLag", "consumergroup": "invoice-processor", "topic": "orders.completed", "severity": "warning"},
              {"summary": "Kafka consumer group lag (invoice-processor)", "description": "Consumer group invoice-processor lags 11200 messages behind on orders.completed."},
              "-12m")
    s.write(ROOT, group([a], ["alertname", "consumergroup"]), """
description = "tax-api became slow (its upstream rate provider); each invoice takes 7 s, invoice-processor exceeds max.poll.interval.ms and its lag grows."
category = "dependency_failure"
culprit = ["tax-api"]
tags = ["queue", "lag", "dependency"]

[[fact]]
what = "calls to tax-api are slow"
any = ["tax-api"]

[[fact]]
what = "the consumer's poll loop is too slow"
any = ["max.poll.interval.ms"]

[[fact]]
what = "the other consumer group keeps up"
any = ["shipping-notifier"]
""")


# ---------------------------------------------------------------- 15. replication lag: a migration

@scenario
def mysql_replication_lag_migration():
    s = Scenario("mysql-replication-lag-migration")
    alter = -28 * 60
    for_replica = lambda r, t: max(0.0, (t - alter - 40)) if t >= alter + 40 and r == "mysql-1" else abs(s.noise(0.3))
    s.gauge("mysql_slave_status_seconds_behind_master", "Generic metric from SHOW SLAVE STATUS.", [
        ({"instance": f"{r}.mysql.db.svc:9104", "job": "mysql", "master_host": "mysql-0.mysql.db.svc", "master_uuid": "3e11fa47-71ca-11e1-9e33-c80aa9429562", "channel_name": ""},
         lambda t, r=r: for_replica(r, t)) for r in ("mysql-1", "mysql-2")])
    s.gauge("mysql_slave_status_slave_sql_running", "Generic metric from SHOW SLAVE STATUS.", [
        ({"instance": f"{r}.mysql.db.svc:9104", "job": "mysql", "master_host": "mysql-0.mysql.db.svc", "master_uuid": "3e11fa47-71ca-11e1-9e33-c80aa9429562", "channel_name": ""}, lambda t: 1)
        for r in ("mysql-1", "mysql-2")])
    s.gauge("mysql_info_schema_processlist_seconds", "The number of seconds processes have been in their current state.", [
        ({"instance": "mysql-1.mysql.db.svc:9104", "job": "mysql", "command": "query", "state": "altering table"},
         lambda t: (t - alter - 40) if t >= alter + 40 else None)])
    s.log(alter, {"job": "mysql", "host": "mysql-0", "filename": "/var/log/mysql/mysql-slow.log"},
          "# Query_time: 1612.402  Lock_time: 0.000 Rows_sent: 0  Rows_examined: 48119022\nALTER TABLE orders ADD COLUMN fulfillment_region VARCHAR(16) NOT NULL DEFAULT 'eu-west', ALGORITHM=COPY;")
    s.log(alter - 15, {"namespace": "ci", "app": "schema-migrations", "container": "flyway"},
          "Migrating schema `shop` to version \"2024.11.28.1 - add fulfillment region\"")
    s.log_every(alter + 60, 0, 90, {"job": "mysql", "host": "mysql-1", "filename": "/var/log/mysql/error.log"},
                lambda i, t: f"2024-11-28T13:{i % 60:02d}:00.000000Z 14 [Note] [MY-010559] [Repl] Multi-threaded replica statistics for channel '': seconds elapsed = 90; events assigned = {12 + i}; worker queues filled over overrun level = 0; waited due a Worker queue full = 0; waited due the total size = 0; waited at clock conflicts = {912000 + i} waited (count) when Workers occupied = 0 waited when Workers occupied = 0")
    a = alert('mysql_slave_status_seconds_behind_master - mysql_slave_status_sql_delay > 300',
              {"alertname": "MysqlSlaveReplicationLag", "instance": "mysql-1.mysql.db.svc:9104", "job": "mysql", "severity": "critical"},
              {"summary": "MySQL Slave replication lag (instance mysql-1.mysql.db.svc:9104)",
               "description": "MySQL replication lag is above 300s\n  VALUE = 1210"},
              "-9m")
    s.gauge("mysql_slave_status_sql_delay", "Generic metric from SHOW SLAVE STATUS.", [
        ({"instance": f"{r}.mysql.db.svc:9104", "job": "mysql", "master_host": "mysql-0.mysql.db.svc", "master_uuid": "3e11fa47-71ca-11e1-9e33-c80aa9429562", "channel_name": ""}, lambda t: 0)
        for r in ("mysql-1", "mysql-2")])
    s.write(ROOT, group([a], ["alertname", "instance"]), """
description = "A schema migration ran ALTER TABLE orders with ALGORITHM=COPY on the primary; the replica applies it single-threaded and falls behind for its whole duration."
category = "bad_deploy"
culprit = ["ALTER TABLE", "migration", "fulfillment_region"]
tags = ["replication", "database", "change"]

[[fact]]
what = "the statement"
any = ["ALTER TABLE orders"]

[[fact]]
what = "the replica is altering the table"
any = ["altering table"]

[[fact]]
what = "the migration that ran it"
any = ["add fulfillment region", "2024.11.28.1"]
""")



# ---------------------------------------------------------------- 16. a group: one rack's switch

@scenario
def group_target_down_rack_switch():
    s = Scenario("group-target-down-rack-switch")
    cut = -12 * 60
    racks = {"r11": ["db-11", "db-12", "db-13"], "r12": ["db-21", "db-22", "db-23", "db-24"], "r13": ["db-31", "db-32"]}
    targets = [("node", f"{h}:9100", {"rack": r, "datacenter": "fra1"}) for r, hs in racks.items() for h in hs]
    up(s, targets, down=lambda j, i, t: t >= cut and any(i.startswith(h) for h in racks["r12"]))
    s.gauge("ifOperStatus", "The current operational state of the interface. - 1.3.6.1.2.1.2.2.1.8", [
        ({"instance": f"tor-{r}.fra1.example.net", "job": "snmp", "ifIndex": str(48 + k), "ifName": f"Ethernet{48 + k}", "ifAlias": f"uplink-spine-{k + 1}"},
         (lambda t, r=r: 2 if (r == "r12" and t >= cut) else 1)) for r in racks for k in range(2)])
    s.counter("ifHCInOctets", "The total number of octets received on the interface - 1.3.6.1.2.1.31.1.1.1.6", [
        ({"instance": f"tor-{r}.fra1.example.net", "job": "snmp", "ifIndex": str(48 + k), "ifName": f"Ethernet{48 + k}", "ifAlias": f"uplink-spine-{k + 1}"},
         (lambda t, r=r: 0.0 if (r == "r12" and t >= cut) else 9.1e7)) for r in racks for k in range(2)])
    s.log(cut - 3, {"job": "syslog", "host": "tor-r12.fra1.example.net", "facility": "local7"},
          "%PLATFORM-2-PFM_SYSTEM_RESET: Unexpected reset of supervisor: kernel panic in process l2fm (PID 8812)")
    s.log(cut - 1, {"job": "syslog", "host": "spine-1.fra1.example.net", "facility": "local7"},
          "%ETHPORT-5-IF_DOWN_LINK_FAILURE: Interface Ethernet1/12 is down (Link failure) [to tor-r12 Ethernet48]")
    s.log(cut - 1, {"job": "syslog", "host": "spine-2.fra1.example.net", "facility": "local7"},
          "%ETHPORT-5-IF_DOWN_LINK_FAILURE: Interface Ethernet1/12 is down (Link failure) [to tor-r12 Ethernet49]")
    alerts = []
    for h in racks["r12"]:
        alerts.append(alert('up{job="node"} == 0',
                            {"alertname": "TargetDown", "datacenter": "fra1", "instance": f"{h}:9100", "job": "node", "rack": "r12", "severity": "critical"},
                            {"summary": f"Target {h}:9100 is down", "description": f"{h}:9100 of job node has been unreachable for more than 2 minutes."},
                            "-10m"))
    s.write(ROOT, group(alerts, ["alertname", "job"]), """
description = "The top-of-rack switch of rack r12 rebooted after a kernel panic; all four hosts of the rack are unreachable while the other racks are fine."
category = "network"
culprit = ["tor-r12", "r12", "switch"]
tags = ["group", "network", "infrastructure"]

[[fact]]
what = "the switch failed"
any = ["tor-r12"]

[[fact]]
what = "the uplinks are down"
any = ["IF_DOWN_LINK_FAILURE", "ifOperStatus"]

[[fact]]
what = "other racks are up"
any = ["r11", "r13", "db-11", "db-31"]
""")


# ---------------------------------------------------------------- 17. a group: one node's disk pressure

@scenario
def group_pods_evicted_node_disk_pressure():
    s = Scenario("group-pods-evicted-node-disk-pressure")
    bad = "ip-10-0-5-41.eu-west-1.compute.internal"
    good = ["ip-10-0-4-12.eu-west-1.compute.internal", "ip-10-0-6-77.eu-west-1.compute.internal"]
    press = -15 * 60
    s.gauge("kube_node_status_condition", "The condition of a cluster node.", [
        ({"node": n, "condition": c, "status": st},
         (lambda t, n=n, c=c, st=st: int((st == "true") == (c == "DiskPressure" and n == bad and t >= press or c == "Ready"))))
        for n in [bad] + good for c in ("Ready", "DiskPressure", "MemoryPressure") for st in ("true", "false")])
    s.gauge("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", [
        ({"device": "/dev/nvme0n1p1", "fstype": "xfs", "instance": f"{n}:9100", "job": "node", "mountpoint": "/var/lib/containerd"},
         (lambda t, n=n: (max(1.1e9, 38e9 - (t + 3600) * 9e6) if t >= -3600 else 38e9) if n == bad else 61e9)) for n in [bad] + good])
    s.gauge("node_filesystem_size_bytes", "Filesystem size in bytes.", [
        ({"device": "/dev/nvme0n1p1", "fstype": "xfs", "instance": f"{n}:9100", "job": "node", "mountpoint": "/var/lib/containerd"}, lambda t: 100e9) for n in [bad] + good])
    pods = {"api": ("api-7c9d8b6f5-k2j4m", "shop"), "worker": ("worker-5b8f7d9c6-p8q2w", "shop"), "search": ("search-69d8f7b5c-x4r7t", "search")}
    s.gauge("kube_pod_status_phase", "The pods current phase.", [
        ({"namespace": ns, "pod": p, "phase": ph}, (lambda t, ph=ph: int((ph == "Failed") == (t >= press + 60)) if ph in ("Running", "Failed") else 0))
        for _, (p, ns) in pods.items() for ph in ("Running", "Failed", "Pending")])
    s.gauge("kube_pod_status_reason", "The pod status reasons", [
        ({"namespace": ns, "pod": p, "reason": "Evicted"}, lambda t: 1 if t >= press + 60 else 0) for _, (p, ns) in pods.items()])
    for app, (p, ns) in pods.items():
        k8s_pods(s, ns, app, p.rsplit("-", 1)[0], [p], lambda _: bad, f"registry.example.com/{ns}/{app}:1.0.{len(app)}")
    s.log_every(press, 0, 45, {"job": "systemd-journal", "node_name": bad, "unit": "kubelet.service"},
                lambda i, t: f'kubelet[2211]: I1128 eviction_manager.go:366] "Eviction manager: attempting to reclaim" resourceName="ephemeral-storage"')
    s.log_every(press + 30, 0, 60, {"job": "systemd-journal", "node_name": bad, "unit": "kubelet.service"},
                lambda i, t: f'kubelet[2211]: I1128 eviction_manager.go:616] "Eviction manager: pod is evicted successfully" pod="{list(pods.values())[i % 3][1]}/{list(pods.values())[i % 3][0]}"')
    s.log(-3600, {"job": "systemd-journal", "node_name": bad, "unit": "containerd.service"},
          'containerd[901]: level=warning msg="image garbage collection skipped: disk usage 81% below high threshold 85%"')
    alerts = []
    for app, (p, ns) in pods.items():
        alerts.append(alert('sum by (namespace, pod, cluster) (max by (namespace, pod, cluster) (kube_pod_status_phase{job="kube-state-metrics", phase=~"Pending|Unknown|Failed"})) > 0',
                            {"alertname": "KubePodNotReady", "namespace": ns, "pod": p, "severity": "warning"},
                            {"summary": "Pod has been in a non-ready state for more than 15 minutes.",
                             "description": f"Pod {ns}/{p} has been in a non-ready state for longer than 15 minutes.",
                             "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodnotready"},
                            "-8m"))
    for fam in s.families:
        if fam[0] == "kube_pod_status_phase":
            for labels, _ in fam[3]:
                labels["job"] = "kube-state-metrics"
    s.write(ROOT, group(alerts, ["alertname"]), """
description = "Node ip-10-0-5-41's containerd disk filled (images never garbage-collected); the kubelet's disk pressure evicted the three pods it ran."
category = "resource_saturation"
culprit = ["ip-10-0-5-41", "DiskPressure", "disk pressure"]
tags = ["group", "kubernetes", "node"]

[[fact]]
what = "all pods ran on one node"
any = ["ip-10-0-5-41"]

[[fact]]
what = "the node reports disk pressure"
any = ["DiskPressure"]

[[fact]]
what = "the kubelet evicted them"
any = ["Evicted", "evicted successfully"]

[[fact]]
what = "what filled"
any = ["/var/lib/containerd", "ephemeral-storage"]
""")



# ---------------------------------------------------------------- 18. a group: one version on three services

@scenario
def group_errors_shared_library_version():
    s = Scenario("group-errors-shared-library-version")
    ns = "platform"
    roll = -19 * 60
    services = ["profile", "wishlist", "notifications", "recommendations"]
    bad = services[:3]
    s.info("app_build_info", "Build information of the service (go build info, the shared auth client).", [
        ({"namespace": ns, "service": svc, "version": v, "authclient_version": ac, "goversion": "go1.23.3"}, since, until)
        for svc in services
        for (v, ac, since, until) in (
            [("3.4.1", "1.8.2", None, roll), ("3.4.2", "2.0.0", roll, None)] if svc in bad else [("5.0.7", "1.8.2", None, None)])])
    for svc in services:
        http_requests(s, "http_requests_total", {"namespace": ns, "service": svc, "job": svc},
                      lambda t: 60, (lambda t, svc=svc: 0.21 if (svc in bad and t >= roll + 60) else 0.002))
    # one counter family per service above would repeat the family: merge them.
    merged = []
    for fam in list(s.families):
        if fam[0] == "http_requests_total":
            merged.extend(fam[3])
            s.families.remove(fam)
    s.families.append(("http_requests_total", "counter", "Total number of HTTP requests by status code.", merged))
    for svc in bad:
        s.log_every(roll + 60, 0, 20, {"namespace": ns, "app": svc, "container": svc},
                    lambda i, t, svc=svc: f'level=error msg="request failed" err="authclient: token introspection: 401 Unauthorized: audience mismatch (want \\"api://{svc}\\", token has \\"api://platform\\")" path=/v1/{svc}')
    s.log(roll - 20, {"namespace": "argocd", "app": "argocd-application-controller", "container": "application-controller"},
          'level=info msg="sync" applications="platform/profile,platform/wishlist,platform/notifications" revision=a91f0c3 message="bump authclient to v2.0.0"')
    alerts = []
    for svc in bad:
        alerts.append(alert(f'sum by (namespace, service) (rate(http_requests_total{{code=~"5..",service="{svc}"}}[5m])) / sum by (namespace, service) (rate(http_requests_total{{service="{svc}"}}[5m])) > 0.05',
                            {"alertname": "ServiceHighErrorRate", "namespace": ns, "service": svc, "severity": "critical"},
                            {"summary": f"{svc} answers more than 5% errors", "description": f"{svc}: 21% of requests fail."},
                            "-12m"))
    s.write(ROOT, group(alerts, ["alertname", "namespace"]), """
description = "Three services were redeployed together with the shared auth client 2.0.0, which checks token audiences differently; all three fail a fifth of their requests, the one still on 1.8.2 does not."
category = "bad_deploy"
culprit = ["authclient", "2.0.0"]
tags = ["group", "deploy", "version"]

[[fact]]
what = "the shared new version"
any = ["2.0.0", "authclient_version"]

[[fact]]
what = "the error all three log"
any = ["audience mismatch"]

[[fact]]
what = "the service still on the old client is fine"
any = ["recommendations", "1.8.2"]
""")


# ---------------------------------------------------------------- 19. recording rule: an SLO burn rate

@scenario
def recording_rule_slo_burn_elasticsearch():
    s = Scenario("recording-rule-slo-burn-elasticsearch")
    red = -17 * 60
    ratio = lambda t: 0.31 if t >= red else 0.0008
    # What Prometheus recorded from http_requests_total (the recording rule's own output).
    s.gauge("job:slo_errors_per_request:ratio_rate5m", "Recorded: sum by (job) (rate(errors[5m])) / sum by (job) (rate(requests[5m])).",
            [({"job": "catalog-search"}, lambda t: ratio(t) + abs(s.noise(0.0003))), ({"job": "catalog-api"}, lambda t: 0.0006 + abs(s.noise(0.0002)))])
    s.gauge("job:slo_errors_per_request:ratio_rate1h", "Recorded: sum by (job) (rate(errors[1h])) / sum by (job) (rate(requests[1h])).",
            [({"job": "catalog-search"}, lambda t: (0.31 * min(1, (t - red) / 3600) if t >= red else 0.0008)), ({"job": "catalog-api"}, lambda t: 0.0006)])
    s.gauge("elasticsearch_cluster_health_status", "Whether all primary and replica shards are allocated.", [
        ({"cluster": "catalog", "color": c, "instance": "es-exporter.search.svc:9114", "job": "elasticsearch"},
         (lambda t, c=c: int(c == ("red" if t >= red else "green")))) for c in ("green", "yellow", "red")])
    s.gauge("elasticsearch_cluster_health_unassigned_shards", "The number of shards that are not allocated.", [
        ({"cluster": "catalog", "instance": "es-exporter.search.svc:9114", "job": "elasticsearch"}, lambda t: 6 if t >= red else 0)])
    s.gauge("elasticsearch_filesystem_data_available_bytes", "Available space on block device in bytes", [
        ({"cluster": "catalog", "instance": "es-exporter.search.svc:9114", "job": "elasticsearch", "name": n, "host": f"10.2.0.{i + 5}"},
         (lambda t, n=n: 4.1e9 if n == "es-data-2" and t >= red - 600 else 210e9 - i * 5e9)) for i, n in enumerate(["es-data-0", "es-data-1", "es-data-2"])])
    s.log(red - 5, {"namespace": "search", "app": "elasticsearch", "container": "elasticsearch", "pod": "es-data-2"},
          '{"@timestamp":"2024-11-28T14:02:11.812Z","log.level":"WARN","message":"flood stage disk watermark [95%] exceeded on [es-data-2][/usr/share/elasticsearch/data] free: 4.1gb[1.9%], all indices on this node will be marked read-only","ecs.version":"1.2.0","service.name":"ES_ECS","event.dataset":"elasticsearch.server","log.logger":"org.elasticsearch.cluster.routing.allocation.DiskThresholdMonitor"}')
    s.log_every(red + 30, 0, 15, {"namespace": "catalog", "app": "catalog-search", "container": "catalog-search"},
                lambda i, t: f"ERROR c.e.c.search.SearchService - search failed: org.elasticsearch.action.search.SearchPhaseExecutionException: all shards failed (index products-v7, query {i})")
    a = alert('job:slo_errors_per_request:ratio_rate5m{job="catalog-search"} > (14.4 * 0.001) and job:slo_errors_per_request:ratio_rate1h{job="catalog-search"} > (14.4 * 0.001)',
              {"alertname": "ErrorBudgetBurn", "job": "catalog-search", "long": "1h", "short": "5m", "severity": "critical"},
              {"summary": "catalog-search is burning its error budget 14x too fast", "description": "catalog-search: 31% errors over 5m against a 99.9% SLO."},
              "-12m")
    s.write(ROOT, group([a], ["alertname", "job"]), """
description = "es-data-2's disk passed the flood-stage watermark, Elasticsearch made its indices read-only and the catalog cluster went red; catalog-search's queries fail."
category = "dependency_failure"
culprit = ["elasticsearch", "es-data-2", "catalog cluster"]
tags = ["recording_rule", "slo", "dependency"]

[[fact]]
what = "the cluster is red"
any = ["elasticsearch_cluster_health_status", "red"]

[[fact]]
what = "the disk watermark"
any = ["flood stage disk watermark"]

[[fact]]
what = "queries fail"
any = ["all shards failed"]
""")


# ---------------------------------------------------------------- 20. recording rule: node CPU

@scenario
def recording_rule_node_cpu_backup():
    s = Scenario("recording-rule-node-cpu-backup")
    hosts = ["pg-01", "pg-02", "pg-03"]
    start = -18 * 60
    util = lambda h, t: 0.96 if (h == "pg-02" and t >= start) else 0.35 + 0.05 * hosts.index(h)
    s.gauge("instance:node_cpu_utilisation:rate5m", "Recorded by node-mixin: 1 - avg without (cpu) (sum without (mode) (rate(node_cpu_seconds_total{mode=~\"idle|iowait|steal\"}[5m]))).",
            [({"instance": f"{h}:9100", "job": "node"}, lambda t, h=h: min(0.999, util(h, t) + s.noise(0.01))) for h in hosts])
    s.gauge("instance:node_load1_per_cpu:ratio", "Recorded by node-mixin: node_load1 / count without (cpu, mode) (node_cpu_seconds_total{mode=\"idle\"}).",
            [({"instance": f"{h}:9100", "job": "node"}, lambda t, h=h: util(h, t) * 1.4) for h in hosts])
    series = []
    for h in hosts:
        for g, r in (("postgres", 1.1), ("pgbouncer", 0.1), ("pg_dump", 0.0), ("gzip", 0.0)):
            def rate(t, h=h, g=g, r=r):
                if g in ("pg_dump", "gzip"):
                    return (1.9 if g == "gzip" else 0.9) if (h == "pg-02" and t >= start) else None
                return r
            series.append(({"groupname": g, "instance": f"{h}:9256", "job": "process-exporter", "mode": "user"}, rate))
    s.counter("namedprocess_namegroup_cpu_seconds_total", "Cpu user usage in seconds", series, start=3e4)
    s.log(start - 10, {"job": "systemd-journal", "hostname": "pg-02", "unit": "pg-backup.service"},
          "systemd[1]: Started pg-backup.service - Nightly logical backup of shop (pg_dump | gzip -9).")
    s.log(start - 5, {"job": "systemd-journal", "hostname": "pg-02", "unit": "pg-backup.service"},
          "pg-backup[60411]: pg_dump: dumping contents of table \"public.order_lines\" (est. 211 GB) to /backup/shop-20241128.sql.gz")
    a = alert('instance:node_cpu_utilisation:rate5m > 0.9',
              {"alertname": "NodeCPUSaturated", "instance": "pg-02:9100", "job": "node", "severity": "warning"},
              {"summary": "CPU of pg-02 is saturated", "description": "pg-02:9100 has used 96% of its CPU for 10 minutes."},
              "-7m")
    s.write(ROOT, group([a], ["alertname", "instance"]), """
description = "The nightly logical backup on pg-02 (pg_dump piped to gzip -9) started early and saturates the host's CPU."
category = "resource_saturation"
culprit = ["pg_dump", "gzip", "pg-backup"]
tags = ["recording_rule", "cpu", "process"]

[[fact]]
what = "the processes eating the CPU"
any = ["gzip", "pg_dump"]

[[fact]]
what = "the backup unit started"
any = ["pg-backup.service"]

[[fact]]
what = "the other database hosts are fine"
any = ["pg-01", "pg-03"]
""")



# ---------------------------------------------------------------- 21. red herring: CPU is high, the heap is the cause

@scenario
def red_herring_cpu_high_gc_heap():
    s = Scenario("red-herring-cpu-high-gc-heap")
    ns = "accounts"
    pods = ["accounts-api-6c8d7f9b5-4kq2x", "accounts-api-6c8d7f9b5-mz8wr"]
    fill = -55 * 60
    heap_max = 2 * 2**30
    base = lambda p: {"application": "accounts-api", "namespace": ns, "pod": p, "instance": f"10.244.3.{20 + pods.index(p)}:8081", "job": "accounts-api"}
    used = lambda p, t: (min(0.985 * heap_max, 0.55 * heap_max + (t - fill) * 0.45 * heap_max / (40 * 60)) if (p == pods[0] and t >= fill) else 0.5 * heap_max + s.noise(5e7))
    s.gauge("jvm_memory_used_bytes", "The amount of used memory", [({**base(p), "area": "heap", "id": "G1 Old Gen"}, lambda t, p=p: used(p, t)) for p in pods])
    s.gauge("jvm_memory_max_bytes", "The maximum amount of memory in bytes that can be used for memory management", [({**base(p), "area": "heap", "id": "G1 Old Gen"}, lambda t: heap_max) for p in pods])
    s.counter("jvm_gc_pause_seconds_sum", "Time spent in GC pause", [
        ({**base(p), "action": "end of major GC", "cause": "G1 Humongous Allocation", "gc": "G1 Old Generation"},
         (lambda t, p=p: 0.62 if (p == pods[0] and t >= -16 * 60) else 0.002)) for p in pods], start=40)
    s.counter("jvm_gc_pause_seconds_count", "Time spent in GC pause", [
        ({**base(p), "action": "end of major GC", "cause": "G1 Humongous Allocation", "gc": "G1 Old Generation"},
         (lambda t, p=p: 0.5 if (p == pods[0] and t >= -16 * 60) else 0.001)) for p in pods], start=12)
    s.gauge("process_cpu_usage", "The \"recent cpu usage\" for the Java Virtual Machine process", [
        (base(p), (lambda t, p=p: 0.94 if (p == pods[0] and t >= -16 * 60) else 0.18 + s.noise(0.02))) for p in pods])
    s.gauge("system_cpu_usage", "The \"recent cpu usage\" of the system the application is running in", [
        (base(p), (lambda t, p=p: 0.71 if (p == pods[0] and t >= -16 * 60) else 0.2)) for p in pods])
    s.histogram("http_server_requests_seconds", "Duration of HTTP server request handling", [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0], [
        ({**base(p), "method": "GET", "uri": "/accounts/{id}", "status": "200", "outcome": "SUCCESS"}, lambda t: 50,
         (lambda t, p=p: 1.6 if (p == pods[0] and t >= -16 * 60) else 0.03)) for p in pods])
    s.log(fill, {"namespace": ns, "pod": pods[0], "container": "accounts-api", "app": "accounts-api"},
          "INFO  c.e.a.export.StatementExport - export job 88123 started: building 41,900 statements in memory for tenant t-5521")
    s.log_every(-16 * 60, 0, 30, {"namespace": ns, "pod": pods[0], "container": "accounts-api", "app": "accounts-api"},
                lambda i, t: f"[gc,start] GC({5510 + i}) Pause Full (G1 Compaction Pause) 2040M->2011M(2048M) {1400 + 17 * i}.{i % 10}ms")
    a = alert('histogram_quantile(0.99, sum by (le, application) (rate(http_server_requests_seconds_bucket{application="accounts-api"}[5m]))) > 0.5',
              {"alertname": "AccountsApiLatencyHigh", "application": "accounts-api", "namespace": ns, "severity": "warning"},
              {"summary": "accounts-api p99 above 500ms", "description": "accounts-api p99 is 2.9s."},
              "-10m")
    s.write(ROOT, group([a], ["alertname", "application"]), """
description = "A statement export holds 41,900 statements in one pod's heap; the old generation is full and back-to-back full GCs burn the CPU and stall requests. The CPU is a symptom."
category = "resource_saturation"
culprit = ["heap", "GC", "garbage collect", "StatementExport", "export job"]
tags = ["red_herring", "jvm", "memory"]

[[fact]]
what = "the heap is nearly full"
any = ["jvm_memory_used_bytes"]

[[fact]]
what = "full GCs"
any = ["Pause Full", "jvm_gc_pause_seconds"]

[[fact]]
what = "the export that fills it"
any = ["StatementExport", "export job 88123"]
""")


# ---------------------------------------------------------------- 22. red herring: a pod restarted, the auth service is the cause

@scenario
def red_herring_restart_auth_upstream():
    s = Scenario("red-herring-restart-auth-upstream")
    ns = "web"
    broke = -15 * 60
    http_requests(s, "http_requests_total", {"job": "web-frontend", "namespace": ns, "service": "web-frontend", "handler": "/account"},
                  lambda t: 120, lambda t: 0.38 if t >= broke else 0.002)
    restarts(s, ns, ["web-frontend-66b9c7d8f-q7x2n", "web-frontend-66b9c7d8f-z4k8p"], "web-frontend", {"web-frontend-66b9c7d8f-q7x2n": [-12 * 60]})
    http_requests(s, "auth_upstream_requests_total", {"job": "web-frontend", "namespace": ns, "upstream": "auth-service"},
                  lambda t: 200, lambda t: 0.41 if t >= broke else 0.001, codes=("200", "503"))
    s.gauge("kube_deployment_status_replicas_available", "The number of available replicas per deployment.", [
        ({"namespace": "identity", "deployment": "auth-service"}, lambda t: 1 if t >= broke - 30 else 4),
        ({"namespace": ns, "deployment": "web-frontend"}, lambda t: 2)])
    s.log(broke - 40, {"namespace": "identity", "app": "auth-service", "container": "auth-service"},
          "WARN  liveness probe failed: HTTP probe failed with statuscode: 500 (keycloak datasource: connection is not available, request timed out after 30000ms)")
    s.log_every(broke, 0, 12, {"namespace": ns, "app": "web-frontend", "container": "web-frontend"},
                lambda i, t: f"[error] upstream auth-service returned 503 Service Unavailable for GET /oauth/userinfo (attempt {1 + i % 3}/3)")
    s.log(-12 * 60 - 5, {"namespace": ns, "app": "web-frontend", "container": "web-frontend", "pod": "web-frontend-66b9c7d8f-q7x2n"},
          "[notice] received SIGTERM from kubelet (node drain of ip-10-0-7-31 for a kernel upgrade), shutting down gracefully")
    a = alert('sum by (namespace, service) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (namespace, service) (rate(http_requests_total[5m])) > 0.05',
              {"alertname": "HighErrorRate", "namespace": ns, "service": "web-frontend", "severity": "critical"},
              {"summary": "High error rate on web-frontend", "description": "web-frontend answers 38% errors."},
              "-10m")
    s.write(ROOT, group([a], ["alertname", "namespace", "service"]), """
description = "auth-service lost three of four replicas (its database pool timed out) and answers 503; web-frontend's /account fails. A web-frontend pod restarted meanwhile for a node drain, which is unrelated."
category = "dependency_failure"
culprit = ["auth-service"]
tags = ["red_herring", "dependency"]

[[fact]]
what = "the upstream's answer"
any = ["auth-service returned 503", "503 Service Unavailable"]

[[fact]]
what = "auth-service lost replicas"
any = ["auth-service"]

[[fact]]
what = "the restart was a node drain"
any = ["node drain", "SIGTERM"]
""")


# ---------------------------------------------------------------- 23. red herring: the disk looks busy, the network drops packets

@scenario
def red_herring_disk_busy_packet_loss():
    s = Scenario("red-herring-disk-busy-packet-loss")
    hosts = ["kafka-1", "kafka-2", "kafka-3"]
    flap = -17 * 60
    s.counter("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", [
        ({"device": "nvme0n1", "instance": f"{h}:9100", "job": "node"}, lambda t: 0.55 + s.noise(0.05)) for h in hosts])
    s.counter("node_network_receive_errs_total", "Network device statistic receive_errs.", [
        ({"device": d, "instance": f"{h}:9100", "job": "node"}, (lambda t, h=h, d=d: 380.0 if (h == "kafka-2" and d == "eth0" and t >= flap) else 0.0))
        for h in hosts for d in ("eth0", "lo")], start=0)
    s.counter("node_netstat_Tcp_RetransSegs", "Statistic TcpRetransSegs.", [
        ({"instance": f"{h}:9100", "job": "node"}, (lambda t, h=h: 2900.0 if (h == "kafka-2" and t >= flap) else 12.0)) for h in hosts])
    s.gauge("node_network_carrier_changes_total", "Network device property: carrier_changes_total", [
        ({"device": "eth0", "instance": f"{h}:9100", "job": "node"}, (lambda t, h=h: 4 + (int((t - flap) / 200) if (h == "kafka-2" and t >= flap) else 0))) for h in hosts])
    s.histogram("kafka_network_requestmetrics_totaltimems", "Total time of produce requests (JMX exporter histogram).", [5, 10, 25, 50, 100, 250, 500, 1000], [
        ({"instance": f"{h}:7071", "job": "kafka", "request": "Produce"}, lambda t: 300, (lambda t, h=h: 220.0 if (h == "kafka-2" and t >= flap) else 4.0)) for h in hosts])
    s.log_every(flap, 0, 200, {"job": "varlogs", "host": "kafka-2", "filename": "/var/log/kern.log"},
                lambda i, t: f"kernel: [918{i:03d}.55] mlx5_core 0000:3b:00.0 eth0: Link down" if i % 2 == 0 else f"kernel: [918{i:03d}.91] mlx5_core 0000:3b:00.0 eth0: Link up, 25000 Mbps, full duplex")
    for h in hosts:
        s.log_every(-7000, 0, 600, {"job": "varlogs", "host": h, "filename": "/var/log/syslog"},
                    lambda i, t: "kafka-server-start.sh[1201]: [LogCleaner] Log cleaner thread 0 cleaned log __consumer_offsets-17 (dirty section = [0, 0])")
    a = alert('histogram_quantile(0.99, sum by (le, instance) (rate(kafka_network_requestmetrics_totaltimems_bucket{request="Produce"}[5m]))) > 100',
              {"alertname": "KafkaProduceLatencyHigh", "instance": "kafka-2:7071", "job": "kafka", "request": "Produce", "severity": "warning"},
              {"summary": "Produce latency on kafka-2 above 100ms", "description": "p99 produce latency on kafka-2 is 640ms."},
              "-11m")
    s.write(ROOT, group([a], ["alertname", "instance"]), """
description = "kafka-2's NIC link flaps (eth0 down/up, receive errors, TCP retransmits); produce requests to it slow down. The disks are busy as always, on every broker."
category = "network"
culprit = ["eth0", "mlx5", "link", "NIC"]
tags = ["red_herring", "network", "infrastructure"]

[[fact]]
what = "the link flaps"
any = ["eth0: Link down", "carrier_changes"]

[[fact]]
what = "receive errors or retransmits"
any = ["node_network_receive_errs_total", "node_netstat_Tcp_RetransSegs", "RetransSegs"]

[[fact]]
what = "the disks are as busy on the other brokers"
any = ["kafka-1", "kafka-3"]
""")


# ---------------------------------------------------------------- 24. red herring: noisy old errors, one new one

@scenario
def red_herring_noisy_logs_tls_provider():
    s = Scenario("red-herring-noisy-logs-tls-provider")
    ns = "checkout"
    broke = -13 * 60
    http_requests(s, "http_requests_total", {"job": "checkout-api", "namespace": ns, "service": "checkout-api", "handler": "/pay"},
                  lambda t: 35, lambda t: 0.29 if t >= broke else 0.004)
    s.histogram("http_client_request_duration_seconds", "Duration of outgoing HTTP requests.", [0.1, 0.25, 0.5, 1, 2.5, 5, 10], [
        ({"job": "checkout-api", "namespace": ns, "server_address": "api.payments-provider.example", "http_request_method": "POST"},
         lambda t: 30, lambda t: 9.5 if t >= broke else 0.21)])
    lab = {"namespace": ns, "app": "checkout-api", "container": "checkout-api"}
    s.log_every(-7100, 0, 8, lab, lambda i, t: f"WARN  config key 'payments.legacy.retry' is deprecated and will be removed in 6.0 (req {i})")
    s.log_every(-7100, 0, 20, lab, lambda i, t: f"ERROR cache miss storm protection: lock for cart:{i % 97} held by another instance, serving stale")
    s.log_every(broke, 0, 14, lab,
                lambda i, t: f"ERROR PaymentClient - POST https://api.payments-provider.example/v1/charges failed: net/http: TLS handshake timeout (request headers: Authorization: Bearer sk_live_9fQ2mXr71LpZ, Idempotency-Key: ch_{80000 + i})")
    s.log(broke - 60, {"namespace": "kube-system", "app": "cilium", "container": "cilium-agent"},
          'level=info msg="Policy imported via API" policies="checkout/egress-allowlist" revision=2211 egress-to-fqdn="api.payments-provider.example" toPorts="443/TCP" action=drop-unmatched')
    a = alert('sum by (namespace, service) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (namespace, service) (rate(http_requests_total[5m])) > 0.05',
              {"alertname": "HighErrorRate", "namespace": ns, "service": "checkout-api", "severity": "critical"},
              {"summary": "High error rate on checkout-api", "description": "checkout-api answers 29% errors on /pay."},
              "-9m")
    s.write(ROOT, group([a], ["alertname", "namespace", "service"]), """
description = "A new egress policy drops part of the traffic to the payment provider; TLS handshakes time out and /pay fails. The deprecation warnings and cache-lock errors have always been there."
category = "network"
culprit = ["payments-provider", "egress", "TLS handshake"]
tags = ["red_herring", "secrets", "dependency", "network"]
secrets = ["sk_live_9fQ2mXr71LpZ"]

[[fact]]
what = "the new error"
any = ["TLS handshake timeout"]

[[fact]]
what = "the provider"
any = ["api.payments-provider.example"]

[[fact]]
what = "the policy change just before"
any = ["egress-allowlist", "Policy imported"]
""")


# ---------------------------------------------------------------- 25. threads: Tomcat's pool exhausted

@scenario
def tomcat_threads_exhausted_export():
    s = Scenario("tomcat-threads-exhausted-export")
    ns = "reports"
    start = -16 * 60
    pods = ["report-web-75f9c8d6b-6lq8t", "report-web-75f9c8d6b-xn2pd"]
    base = lambda p: {"application": "report-web", "namespace": ns, "pod": p, "instance": f"10.244.5.{40 + pods.index(p)}:8081", "job": "report-web", "name": "http-nio-8080"}
    busy = lambda p, t: 200 if t >= start + 120 else 14 + s.noise(3)
    s.gauge("tomcat_threads_busy_threads", "The number of busy threads", [(base(p), lambda t, p=p: busy(p, t)) for p in pods])
    s.gauge("tomcat_threads_current_threads", "The current number of threads", [(base(p), lambda t, p=p: max(25, busy(p, t))) for p in pods])
    s.gauge("tomcat_threads_config_max_threads", "The maximum number of threads", [(base(p), lambda t: 200) for p in pods])
    s.gauge("jvm_threads_live_threads", "The current number of live threads including both daemon and non-daemon threads", [
        ({k: v for k, v in base(p).items() if k != "name"}, lambda t, p=p: 40 + busy(p, t)) for p in pods])
    s.histogram("http_server_requests_seconds", "Duration of HTTP server request handling", [0.1, 0.5, 1, 5, 10, 30, 60], [
        ({**{k: v for k, v in base(p).items() if k != "name"}, "method": "GET", "uri": u, "status": "200", "outcome": "SUCCESS"},
         (lambda t, u=u: 3.0 if u == "/api/export" and t >= start else (0.05 if u == "/api/export" else 40)),
         (lambda t, u=u: 55.0 if u == "/api/export" and t >= start else (0.4 if u == "/api/export" else (2.5 if t >= start + 120 else 0.06))))
        for p in pods for u in ("/api/export", "/api/reports/{id}")])
    # Grafana Alloy's OpenTelemetry pipeline: service_name, not app.
    otel = {"service_name": "report-web", "service_namespace": ns, "k8s_pod_name": pods[0], "level": "INFO"}
    s.log_every(start, 0, 20, otel,
                lambda i, t: f"INFO  c.e.r.export.ExportController - GET /api/export?format=xlsx&range=all user=bi-sync-bot (synchronous, rows={1200000 + i})")
    s.log_every(start + 120, 0, 30, {**otel, "level": "WARN"},
                lambda i, t: "WARN  o.a.tomcat.util.threads.ThreadPoolExecutor - All threads [200] are currently busy, waiting. Increase maxThreads [200] or check the servlet status")
    a = alert('histogram_quantile(0.95, sum by (le, application) (rate(http_server_requests_seconds_bucket{application="report-web", uri!="/api/export"}[5m]))) > 1',
              {"alertname": "ReportWebSlow", "application": "report-web", "namespace": ns, "severity": "warning"},
              {"summary": "report-web p95 above 1s", "description": "report-web pages take 2.5s (p95)."},
              "-9m")
    s.write(ROOT, group([a], ["alertname", "application"]), """
description = "A BI bot calls the synchronous /api/export for all rows, each call holding a Tomcat thread for a minute; all 200 threads are busy and ordinary pages queue."
category = "resource_saturation"
culprit = ["/api/export", "bi-sync-bot", "export"]
tags = ["threads", "jvm"]

[[fact]]
what = "all threads are busy"
any = ["tomcat_threads_busy_threads", "All threads [200] are currently busy"]

[[fact]]
what = "the pool's limit"
any = ["200"]

[[fact]]
what = "the slow endpoint and its caller"
any = ["/api/export", "bi-sync-bot"]
""")


if __name__ == "__main__":
    wanted = set(sys.argv[1:])
    for make in SCENARIOS:
        if not wanted or make.__name__ in wanted:
            make()
