#!/usr/bin/env bash
# Runs the whole test suite: unit, crate integration, real-component and end-to-end tests.
# Installs what the tests need when it is missing: the Debian packages of Prometheus, Alertmanager
# and node-exporter, and docker-compose (which validates docker-compose.yml; no Docker engine is
# needed), with apt-get, as root or through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager \
            prometheus-node-exporter:prometheus-node-exporter promtool:prometheus \
            amtool:prometheus-alertmanager docker-compose:docker-compose curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing test dependencies: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

cargo test --workspace --locked
