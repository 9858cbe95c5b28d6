#!/usr/bin/env bash
# Context-stage benchmark: the plan's wall time against its slowest single query (fakes of Prometheus
# and Loki with known delays), and the compression of 20 series and 500 log lines into the context,
# against the raw series and lines the seed design sent. Figures go to docs/BENCHMARKS.md.
# Usage: scripts/bench/context.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release --quiet -p aiops-context --example bench_context
