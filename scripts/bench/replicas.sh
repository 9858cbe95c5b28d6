#!/usr/bin/env bash
# Drain benchmark for replicas on PostgreSQL: JOBS distinct alert groups analyzed through a fake
# OpenAI-compatible LLM that takes 1 s per answer, at llm.concurrency = worker.concurrency = 4 per
# replica; once with one replica, once with two on the same database. Prints each run's jobs/s and the
# ratio. Needs PostgreSQL (scripts/test.sh starts it and creates the role PG_ADMIN uses).
# Usage: scripts/bench/replicas.sh [jobs]
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${1:-96}
admin=${PG_ADMIN:-postgres://aiops_test:aiops_test@127.0.0.1:5432/postgres}
cargo build --release --quiet -p aiops

source scripts/lib/procs.sh
on_exit() { psql -q "$admin" -c "DROP DATABASE IF EXISTS aiops_bench_drain WITH (FORCE)" 2>/dev/null || true; }

# The fake LLM: a chat completion after 1 s, many at a time.
llm=$(free_port)
python3 scripts/bench/fake_llm.py "$llm" 1 & pids+=($!)

run() { # run REPLICAS: prints jobs/s
  local n=$1 ports=() started ended
  psql -q "$admin" -c "DROP DATABASE IF EXISTS aiops_bench_drain WITH (FORCE)" -c "CREATE DATABASE aiops_bench_drain"
  for i in $(seq 1 "$n"); do
    local port; port=$(free_port); ports+=("$port")
    AIOPS__SERVER__LISTEN=127.0.0.1:$port AIOPS__STORE__URL=${admin%/*}/aiops_bench_drain \
    AIOPS__LLM__PROVIDER=openai-compatible AIOPS__LLM__BASE_URL=http://127.0.0.1:$llm/v1 \
    AIOPS__LLM__MODEL=bench AIOPS__LLM__CONCURRENCY=4 AIOPS__LLM__CACHE_TTL_SECS=0 \
    AIOPS__WORKER__CONCURRENCY=4 AIOPS__NOTIFY__STDOUT=false AIOPS__NOTIFY__FILE=$work/out-$n-$i.jsonl \
    AIOPS__LOG__LEVEL=warn ./target/release/aiops serve 2>"$work/aiops-$n-$i.log" & pids+=($!)
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  started=$(date +%s.%N)
  for j in $(seq 1 "$JOBS"); do
    sed "s/\"fingerprint\": *\"[^\"]*\"/\"fingerprint\": \"drain-$n-$j\"/" tests/fixtures/alertmanager/high-load-warning.json |
      curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @- \
        "http://127.0.0.1:${ports[0]}/webhook/alerts"
  done
  for _ in $(seq 1 3000); do
    status=$(curl -fsS "http://127.0.0.1:${ports[0]}/queue/status")
    case $status in *"\"done\":$JOBS,"*) break ;; esac
    sleep 0.1
  done
  ended=$(date +%s.%N)
  case $status in *"\"done\":$JOBS,"*) ;; *) echo "not drained: $status" >&2; exit 1 ;; esac
  llm_ok=0
  for port in "${ports[@]}"; do
    c=$(curl -fsS "http://127.0.0.1:$port/metrics" | sed -n 's/^aiops_analyses_total{analyzer="llm",result="ok"} //p')
    llm_ok=$((llm_ok + ${c%.*}))
  done
  [ "$llm_ok" -eq "$JOBS" ] || { echo "only $llm_ok of $JOBS analyses came from the LLM" >&2; exit 1; }
  for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=("${pids[0]}")
  python3 -c "print(f'{$JOBS / ($ended - $started):.2f}')"
}

echo "machine: $(nproc) cores, $(uname -sr); $JOBS jobs, LLM 1 s per answer, concurrency 4 per replica"
one=$(run 1); echo "1 replica:  $one jobs/s"
two=$(run 2); echo "2 replicas: $two jobs/s"
python3 -c "print(f'ratio: {$two / $one:.2f}x')"
