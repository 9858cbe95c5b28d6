#!/usr/bin/env bash
# Posts an Alertmanager webhook payload to a running aiops, then shows /queue/status and the
# analysis once the job is done (or its last error).
#
#   scripts/test-alert.sh [FIXTURE.json]      default: tests/fixtures/alertmanager/high-error-rate-k8s.json
#
# AIOPS_URL (default http://127.0.0.1:8080) and AIOPS_TOKEN (default: AIOPS_AUTH_TOKEN from .env, if
# any) say where and how. Each run makes the group distinct (a fresh fingerprint), so it is never
# acknowledged as a duplicate.
set -euo pipefail
cd "$(dirname "$0")/.."

url=${AIOPS_URL:-http://127.0.0.1:8080}
fixture=${1:-tests/fixtures/alertmanager/high-error-rate-k8s.json}
token=${AIOPS_TOKEN:-$( [ -f .env ] && sed -n 's/^AIOPS_AUTH_TOKEN=//p' .env | tail -n 1 || true)}
auth=()
[ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
pretty() { if command -v python3 >/dev/null; then python3 -m json.tool; else cat; fi; }

[ -f "$fixture" ] || { echo "no such file: $fixture" >&2; exit 1; }
body=$(sed "s/\"fingerprint\": *\"\([^\"]*\)\"/\"fingerprint\": \"\1-$(date +%s%N)\"/" "$fixture")

echo "POST $url/webhook/alerts  ($fixture)"
answer=$(curl -sS --max-time 10 -X POST "$url/webhook/alerts" -H 'Content-Type: application/json' \
  "${auth[@]}" --data-binary "$body" -w '\n%{http_code}')
code=${answer##*$'\n'}; answer=${answer%$'\n'*}
echo "$code $answer"
case $code in 2??) ;; *) exit 1 ;; esac
id=$(printf '%s' "$answer" | sed -n 's/.*"job_id":"\([^"]*\)".*/\1/p')

echo; echo "GET $url/queue/status"
curl -sS --max-time 10 "$url/queue/status" | pretty

echo; echo "waiting for job $id ..."
for _ in $(seq 1 120); do
  record=$(curl -sS --max-time 10 "${auth[@]}" "$url/analyses/$id")
  case $record in
    *'"state":"done"'*|*'"state":"dead"'*) break ;;
  esac
  sleep 1
done
echo "GET $url/analyses/$id"
printf '%s' "$record" | pretty
