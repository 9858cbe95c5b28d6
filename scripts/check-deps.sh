#!/usr/bin/env bash
# Fails when a crate lists a dependency its code never names: each `[dependencies]` entry of
# crates/*/Cargo.toml must appear as `name_with_underscores` in that crate's src/ (and each
# `[dev-dependencies]` entry in its tests/, examples/ or src/).
set -euo pipefail
cd "$(dirname "$0")/.."
unused=0
for manifest in crates/*/Cargo.toml; do
  crate=$(dirname "$manifest")
  for section in dependencies dev-dependencies; do
    dirs="$crate/src"
    [ "$section" = dev-dependencies ] && dirs="$crate/src $crate/tests $crate/examples"
    for dep in $(awk -v want="[$section]" '/^\[/ { on = ($0 == want); next }
                 on && /^[A-Za-z0-9_-]+[ .=]/ { sub(/[ .=].*/, ""); print }' "$manifest"); do
      name=${dep//-/_}
      # shellcheck disable=SC2086
      if ! grep -rqE "\b$name\b" $dirs 2>/dev/null; then
        echo "$manifest: [$section] $dep is never used" >&2
        unused=1
      fi
    done
  done
done
exit "$unused"
