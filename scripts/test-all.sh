#!/usr/bin/env bash
# npm test: every phase in order, each timed, stopping at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -a report=()
phase() {
  local name=$1; shift
  local t=$SECONDS
  printf '\n--- %s\n' "$name"
  "$@"
  report+=("$(printf '%-12s %4d s' "$name" $((SECONDS - t)))")
}
phase lint npm run -s lint
phase typecheck npm run -s typecheck
phase build npm run -s build
phase unit npm run -s test:unit
phase python npm run -s test:python
phase e2e npm run -s test:e2e
printf '\nphase times:\n'
printf '  %s\n' "${report[@]}"
