#!/usr/bin/env bash
# Pipeline throughput with a slow LLM: a fake OpenAI-compatible API that answers after L = 2 s, at
# llm.concurrency = worker.concurrency = C = 8, fed 5 alert groups a second (more than the 4/s it can
# finish) for DURATION seconds. Prints analyses/s per minute and the daemon's RSS over time; the
# target is at least 0.9 x C / L = 3.6 analyses/s, and no growth in RSS.
# Usage: scripts/bench/pipeline.sh [duration_secs]      (default 600)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-600}
cargo build --release --quiet -p aiops

source scripts/lib/procs.sh

llm=$(free_port); api=$(free_port)
python3 scripts/bench/fake_llm.py "$llm" 2 & pids+=($!)

AIOPS__SERVER__LISTEN=127.0.0.1:$api AIOPS__STORE__URL=sqlite://$work/aiops.db \
AIOPS__LLM__PROVIDER=openai-compatible AIOPS__LLM__BASE_URL=http://127.0.0.1:$llm/v1 \
AIOPS__LLM__MODEL=bench AIOPS__LLM__CONCURRENCY=8 AIOPS__LLM__CACHE_TTL_SECS=0 \
AIOPS__WORKER__CONCURRENCY=8 AIOPS__NOTIFY__STDOUT=false AIOPS__NOTIFY__FILE=$work/out.jsonl \
AIOPS__LOG__LEVEL=warn ./target/release/aiops serve 2>"$work/aiops.log" & pid=$!; pids+=($pid)
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$api/ready" >/dev/null 2>&1 && break; sleep 0.1; done

rss() { awk '/^VmRSS:/ {printf "%.1f", $2/1024}' "/proc/$pid/status"; }
done_count() { curl -fsS "http://127.0.0.1:$api/queue/status" | sed -n 's/.*"done":\([0-9]*\).*/\1/p'; }
echo "machine: $(nproc) cores, $(uname -sr); LLM 2 s per answer, concurrency 8; 5 groups/s for ${DURATION}s"
echo "minute  done  analyses/s  RSS MiB"
# The feeder: 5 distinct groups a second.
(
  n=0
  end=$((SECONDS + DURATION))
  while [ $SECONDS -lt $end ]; do
    for _ in 1 2 3 4 5; do
      n=$((n + 1))
      sed "s/\"fingerprint\": *\"[^\"]*\"/\"fingerprint\": \"pipe-$n\"/" tests/fixtures/alertmanager/high-load-warning.json |
        curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @- \
          "http://127.0.0.1:$api/webhook/alerts" || true
    done
    sleep 1
  done
) & pids+=($!)
last=0
for minute in $(seq 1 $((DURATION / 60))); do
  sleep 60
  now=$(done_count)
  printf "%6d  %4d  %10.2f  %7s\n" "$minute" "$now" "$(python3 -c "print(($now - $last) / 60)")" "$(rss)"
  last=$now
done
echo "overall: $(python3 -c "print(f'{$last / $DURATION:.2f}')") analyses/s; peak RSS $(awk '/^VmHWM:/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status")"
