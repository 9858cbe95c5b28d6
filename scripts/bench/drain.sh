#!/usr/bin/env bash
# Drain rate with instant fakes and the overhead per analysis: a real Prometheus (Debian
# `prometheus`), instant fakes of Loki, an OpenAI-compatible LLM and Slack, and the release binary
# on SQLite. First GROUPS_SEQ groups one at a time (the stage timings of each: everything but an LLM
# wait), then JOBS groups at once (analyses/s until all are done). Targets: >= 200 analyses/s, p50
# overhead <= 50 ms.
# Usage: scripts/bench/drain.sh [jobs] [groups_seq] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p aiops --bin aiops --example bench_drain
echo "machine: $(nproc) cores, $(uname -sr)"
./target/release/examples/bench_drain --jobs "${1:-2000}" --sequential "${2:-200}" --concurrency "${3:-4}"
