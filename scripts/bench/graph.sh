#!/usr/bin/env bash
# The graph's cost: time to draw and encode one PNG (the largest chart aiops draws, and a small
# one), p50/p95/max over RUNS, and the PNG's size. Figures go to docs/BENCHMARKS.md.
# Usage: scripts/bench/graph.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release --quiet -p aiops-context --example bench_graph -- "${1:-50}"
