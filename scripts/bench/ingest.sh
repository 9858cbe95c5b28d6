#!/usr/bin/env bash
# Ingest benchmark: POST /webhook/alerts at concurrency 50 for 15 s, three times, against a release
# build with a durable commit (SQLite WAL, group commit, the WAL fsynced) before every 2xx.
# Prints req/s, p50, p99, errors, and the daemon's RSS idle and at peak. Needs wrk (apt-get install wrk).
# Usage: scripts/bench/ingest.sh [duration_secs] [connections] [runs]
# STORE=postgres runs it on PostgreSQL instead: a fresh database aiops_bench on the server that
# PG_ADMIN names (default: the test role scripts/test.sh creates).
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-15}
CONNS=${2:-50}
RUNS=${3:-3}
FIXTURE=${FIXTURE:-tests/fixtures/alertmanager/target-down-single.json}

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --quiet -p aiops

source scripts/lib/procs.sh
port=$(free_port)
export AIOPS__SERVER__LISTEN=127.0.0.1:$port
export AIOPS__STORE__URL=sqlite://$work/aiops.db
if [ "${STORE:-sqlite}" = postgres ]; then
  admin=${PG_ADMIN:-postgres://aiops_test:aiops_test@127.0.0.1:5432/postgres}
  psql -q "$admin" -c "DROP DATABASE IF EXISTS aiops_bench WITH (FORCE)" -c "CREATE DATABASE aiops_bench"
  export AIOPS__STORE__URL=${admin%/*}/aiops_bench
  echo "store: PostgreSQL $(psql -qAt "$admin" -c 'SHOW server_version'), pool ${AIOPS__STORE__POOL_SIZE:-10}"
fi
export AIOPS__STORE__MAX_QUEUED=100000000
export AIOPS__LOG__LEVEL=warn
./target/release/aiops serve >/dev/null 2>"$work/aiops.log" &
pid=$!
pids+=("$pid")
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
rss() { awk -v k="$1:" '$1==k {printf "%.1f MiB", $2/1024}' "/proc/$pid/status"; }
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "daemon RSS idle: $(rss VmRSS)"
for run in $(seq 1 "$RUNS"); do
  echo "--- run $run: $CONNS connections, ${DURATION}s"
  RUN=$run FIXTURE=$FIXTURE wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s scripts/bench/ingest.lua \
    "http://127.0.0.1:$port" | grep -E 'Requests/sec|^ +50%|^ +99%|non-2xx|requests in'
done
echo "daemon RSS after load: $(rss VmRSS), peak: $(rss VmHWM)"
sleep 5
echo "daemon RSS idle after load: $(rss VmRSS)"
curl -fsS "http://127.0.0.1:$port/queue/status"; echo
