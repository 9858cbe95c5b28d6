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
what = "the mount point filling"
any = ["/var"]

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


if __name__ == "__main__":
    wanted = set(sys.argv[1:])
    for make in SCENARIOS:
        if not wanted or make.__name__ in wanted:
            make()
