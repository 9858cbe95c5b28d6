#!/usr/bin/env bash
# RCA cost per alert group: for each firing fixture, the prompt's tokens (target <= 4,000 with the
# default budgets) and the LLM calls (target: 1, then 0 on a cache hit), with fakes of Prometheus,
# Loki and an OpenAI-compatible API. Then an analysis with tools off and on against a real
# Prometheus (a scenario's blocks) and a scripted model that answers at once: requests, tool calls,
# tokens sent, and aiops' own time per round (target < 50 ms). Figures go to docs/BENCHMARKS.md.
# Usage: scripts/bench/rca.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release --quiet -p aiops --example bench_rca
cargo run --release --quiet -p aiops-eval --example bench_investigation -- "${1:-20}"
