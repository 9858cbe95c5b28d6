#!/usr/bin/env bash
# The aiops stack without Docker: real Prometheus, Alertmanager and node-exporter (Debian packages
# prometheus, prometheus-alertmanager, prometheus-node-exporter) and aiops, all on loopback ports,
# with the repo's configs adapted to those ports and to second-scale timings. It then makes a real
# alert fire (it stops node-exporter: TargetDown), shows the RCA aiops prints, brings node-exporter
# back and shows the resolution. Everything it started is stopped, and its temp dir removed, on exit.
#
#   scripts/demo.sh            # about a minute; Ctrl-C stops it cleanly
#
# With AIOPS__LLM__* set in the environment, the LLM analyzes instead of the rule-based analyzer.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

for bin in prometheus prometheus-alertmanager prometheus-node-exporter; do
  command -v "$bin" >/dev/null || {
    echo "$bin is missing: sudo apt-get install prometheus prometheus-alertmanager prometheus-node-exporter" >&2
    exit 1
  }
done

echo "building aiops (release)..."
cargo build --release --locked -q -p aiops
aiops_bin=$repo/target/release/aiops

source scripts/lib/procs.sh
trap 'exit 130' INT TERM

wait_http() { # wait_http URL what
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "$2 did not start; its log:" >&2; cat "$work/$2.log" >&2; exit 1
}
wait_line() { # wait_line PATTERN SECONDS
  for _ in $(seq 1 $(($2 * 5))); do grep -q "$1" "$work/aiops.out" && return 0; sleep 0.2; done
  echo "no '$1' from aiops within $2 s; its log:" >&2; tail -n 30 "$work/aiops.log" >&2; exit 1
}
start_node_exporter() {
  prometheus-node-exporter --web.listen-address="127.0.0.1:$ne" >"$work/node-exporter.log" 2>&1 &
  ne_pid=$!; pids+=("$ne_pid")
}

prom=$(free_port); am=$(free_port); ne=$(free_port); api=$(free_port)
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s' "$token" > "$work/aiops-token"

# The repo's configs, adapted: loopback ports for the compose service names, no Loki, fast timings.
sed -e "s/alertmanager:9093/127.0.0.1:$am/; s/node-exporter:9100/127.0.0.1:$ne/; s/aiops:8080/127.0.0.1:$api/" \
    -e "s/localhost:9090/127.0.0.1:$prom/" \
    -e '/- job_name: loki/,/targets:/d' \
    -e 's/scrape_interval: 15s/scrape_interval: 2s/; s/evaluation_interval: 15s/evaluation_interval: 2s/' \
    prometheus/prometheus.yml > "$work/prometheus.yml"
sed -e 's/for: 2m/for: 10s/' prometheus/alert_rules.yml > "$work/alert_rules.yml"
sed -e "s#http://aiops:8080#http://127.0.0.1:$api#; s#/alertmanager/aiops-token#$work/aiops-token#" \
    -e 's/group_wait: 30s/group_wait: 2s/; s/group_interval: 5m/group_interval: 5s/' \
    alertmanager/alertmanager.yml > "$work/alertmanager.yml"

echo "starting aiops on 127.0.0.1:$api"
AIOPS__SERVER__LISTEN=127.0.0.1:$api AIOPS__STORE__URL=sqlite://$work/aiops.db \
AIOPS__SERVER__AUTH__BEARER_TOKEN=$token AIOPS__PROMETHEUS__URL=http://127.0.0.1:$prom \
  "$aiops_bin" serve >"$work/aiops.out" 2>"$work/aiops.log" &
pids+=($!)
wait_http "http://127.0.0.1:$api/ready" aiops

echo "starting Alertmanager on 127.0.0.1:$am (before Prometheus, which drops alerts it cannot send)"
prometheus-alertmanager --config.file="$work/alertmanager.yml" --storage.path="$work/am-data" \
  --web.listen-address="127.0.0.1:$am" --cluster.listen-address= >"$work/alertmanager.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$am/-/ready" alertmanager

echo "starting node-exporter on 127.0.0.1:$ne"
start_node_exporter
wait_http "http://127.0.0.1:$ne/metrics" node-exporter

echo "starting Prometheus on 127.0.0.1:$prom"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-data" \
  --web.listen-address="127.0.0.1:$prom" --web.external-url="http://127.0.0.1:$prom" \
  --rules.alert.resend-delay=2s >"$work/prometheus.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$prom/-/ready" prometheus
sleep 10 # a few scrapes, so the evidence has a before

echo; echo "stopping node-exporter: TargetDown fires after 10 s, Alertmanager groups it, aiops analyzes..."
kill "$ne_pid"; wait "$ne_pid" 2>/dev/null || true
wait_line '^\[FIRING\] TargetDown' 60
sleep 1
echo; echo "===== aiops ====="; sed -n '/^\[FIRING\] TargetDown/,$p' "$work/aiops.out"; echo "================="

echo; echo "starting node-exporter again: the alert resolves..."
start_node_exporter
wait_line '^\[RESOLVED\] TargetDown' 60
echo; echo "===== aiops ====="; grep '^\[RESOLVED\] TargetDown' "$work/aiops.out"; echo "================="
echo; echo "queue: $(curl -fsS "http://127.0.0.1:$api/queue/status")"
echo "done; stopping everything."
