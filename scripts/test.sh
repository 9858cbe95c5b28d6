#!/usr/bin/env bash
# Runs the whole test suite: the house style first (rustfmt, clippy with warnings as errors, no
# unused dependency), then unit, crate integration, real-component and end-to-end tests.
# Installs what the tests need when it is missing: the Debian packages of Prometheus, Alertmanager
# and node-exporter, docker-compose (which validates docker-compose.yml; no Docker engine is
# needed), curl, python3 (the eval's data generators), chromium (the analysis page, headless) and
# PostgreSQL, with apt-get, as root or through sudo. Starts PostgreSQL's cluster
# (pg_ctlcluster) when it is down and gives the tests a role; each test makes its own database.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager \
            prometheus-node-exporter:prometheus-node-exporter promtool:prometheus \
            amtool:prometheus-alertmanager docker-compose:docker-compose curl:curl \
            python3:python3 chromium:chromium; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test dependencies: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# PostgreSQL: a running cluster, a role for the tests, no databases left from an interrupted run.
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
if [ -z "$(pg_lsclusters --no-header 2>/dev/null)" ]; then
  $sudo pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -n 1)" main >/dev/null
fi
read -r pg_version pg_cluster pg_port pg_status _ <<<"$(pg_lsclusters --no-header | head -n 1)"
[ "$pg_status" = online ] || $sudo pg_ctlcluster "$pg_version" "$pg_cluster" start
as_postgres psql -p "$pg_port" -qAt -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aiops_test') THEN
    CREATE ROLE aiops_test LOGIN PASSWORD 'aiops_test' CREATEDB;
  END IF; END \$\$;" >/dev/null
for db in $(as_postgres psql -p "$pg_port" -qAt -c "SELECT datname FROM pg_database WHERE datname LIKE 'aiops_t_%'"); do
  as_postgres psql -p "$pg_port" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done
export AIOPS_TEST_POSTGRES="postgres://aiops_test:aiops_test@127.0.0.1:$pg_port/postgres"
export AIOPS_TEST_PG_CLUSTER="$pg_version $pg_cluster"

# The house style, enforced: any of these failing fails the suite.
cargo fmt --all --check
scripts/check-deps.sh
cargo clippy --workspace --all-targets --locked -- -D warnings

cargo test --workspace --locked
