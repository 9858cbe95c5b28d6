#!/usr/bin/env bash
# RCA cost per alert group: for each firing fixture, the prompt's tokens (target <= 4,000 with the
# default budgets) and the LLM calls (target: 1, then 0 on a cache hit), with fakes of Prometheus,
# Loki and an OpenAI-compatible API. Figures go to docs/BENCHMARKS.md.
# Usage: scripts/bench/rca.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release --quiet -p aiops --example bench_rca
