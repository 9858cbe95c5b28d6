#!/usr/bin/env bash
# Writes .env for docker-compose.yml: the bearer token Alertmanager sends to aiops, Grafana's admin
# password, PostgreSQL's password (the `ha` profile), the LLM (provider, model, key, base URL) and the Slack (or Mattermost) webhook URL.
#
# Interactive by default. Non-interactive (CI, provisioning) with --yes, or when stdin is not a
# terminal: answers come from the variables LLM_PROVIDER, LLM_MODEL, LLM_API_KEY, LLM_BASE_URL,
# SLACK_WEBHOOK_URL (empty: the rule-based analyzer, and analyses on aiops' stdout). An existing
# .env keeps its token and password. The file is created with mode 600.
set -euo pipefail
cd "$(dirname "$0")/.."

interactive=true
[ "${1:-}" = "--yes" ] && interactive=false
[ -t 0 ] || interactive=false

# Keep what an existing .env already has (tokens survive a re-run).
existing() { [ -f .env ] && sed -n "s/^$1=//p" .env | tail -n 1 || true; }
random() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

ask() { # ask VAR "question" default [secret]
  local var=$1 question=$2 default=$3 secret=${4:-} answer
  if $interactive; then
    if [ -n "$secret" ]; then
      read -r -s -p "$question${default:+ [keep current]}: " answer; echo >&2
    else
      read -r -p "$question${default:+ [$default]}: " answer
    fi
    printf -v "$var" '%s' "${answer:-$default}"
  else
    printf -v "$var" '%s' "$default"
  fi
}

AIOPS_AUTH_TOKEN=$(existing AIOPS_AUTH_TOKEN); AIOPS_AUTH_TOKEN=${AIOPS_AUTH_TOKEN:-$(random)}
GRAFANA_ADMIN_PASSWORD=$(existing GRAFANA_ADMIN_PASSWORD); GRAFANA_ADMIN_PASSWORD=${GRAFANA_ADMIN_PASSWORD:-$(random)}
POSTGRES_PASSWORD=$(existing POSTGRES_PASSWORD); POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-$(random)}

ask provider "LLM provider: none, openai, deepseek, ollama or openai-compatible" \
  "${LLM_PROVIDER:-$(existing LLM_PROVIDER)}"
case "${provider:-none}" in
  ""|none) provider=""; model=""; key=""; base="" ;;
  openai|deepseek|ollama|openai-compatible)
    case $provider in
      openai) suggested=gpt-4o-mini ;; deepseek) suggested=deepseek-chat ;;
      ollama) suggested=llama3.1 ;; *) suggested="" ;;
    esac
    ask model "Model" "${LLM_MODEL:-$(existing LLM_MODEL)}"; model=${model:-$suggested}
    key=""
    case $provider in
      openai|deepseek|openai-compatible)
        ask key "API key (input hidden)" "${LLM_API_KEY:-$(existing LLM_API_KEY)}" secret ;;
    esac
    base_default="${LLM_BASE_URL:-$(existing LLM_BASE_URL)}"
    [ "$provider" = ollama ] && base_default=${base_default:-http://ollama:11434/v1}
    ask base "Base URL (empty: the provider's)" "$base_default"
    if [ "$provider" = openai-compatible ] && [ -z "$base" ]; then
      echo "openai-compatible needs a base URL (e.g. http://vllm:8000/v1)" >&2; exit 1
    fi
    if [ -z "$model" ]; then echo "an LLM needs a model name" >&2; exit 1; fi
    ;;
  *) echo "unknown provider: $provider" >&2; exit 1 ;;
esac
ask slack "Slack or Mattermost incoming-webhook URL (empty: stdout; input hidden)" \
  "${SLACK_WEBHOOK_URL:-$(existing SLACK_WEBHOOK_URL)}" secret

umask 077
tmp=$(mktemp .env.tmp.XXXXXX)
cat > "$tmp" <<ENV
# Written by scripts/setup.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Secrets: keep this file private.
AIOPS_AUTH_TOKEN=$AIOPS_AUTH_TOKEN
GRAFANA_ADMIN_PASSWORD=$GRAFANA_ADMIN_PASSWORD
POSTGRES_PASSWORD=$POSTGRES_PASSWORD
LLM_PROVIDER=$provider
LLM_MODEL=$model
LLM_API_KEY=$key
LLM_BASE_URL=$base
SLACK_WEBHOOK_URL=$slack
ENV
mv "$tmp" .env
echo "wrote .env (analyzer: ${provider:-rule-based}${model:+, $model}; Slack: $([ -n "$slack" ] && echo on || echo off))"
echo "next: docker compose up -d   (with Ollama: docker compose --profile ollama up -d)"
