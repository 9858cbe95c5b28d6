#!/usr/bin/env bash
# Context-stage benchmark: the plan's wall time against its slowest single query (fakes of Prometheus
# and Loki with known delays), and the compression of 20 series and 500 log lines into the context,
# against the raw series and lines the seed design sent. Then the large case: 50,000 series in a real
# Prometheus (eval/gen/large.py), an alert on a host and one on a pod; the stage's wall time (cold and
# warm p50), the requests Prometheus served per group, and whether the culprit is named. Figures go
# to docs/BENCHMARKS.md.
# Usage: scripts/bench/context.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release --quiet -p aiops-context --example bench_context
large="$(mktemp -d)"
trap 'rm -rf "$large"' EXIT
python3 eval/gen/large.py "$large"
cargo run --release --quiet -p aiops-eval --example bench_discovery -- "$large" "${1:-10}"
