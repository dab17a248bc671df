#!/usr/bin/env bash
# The whole test suite (`npm test`): installs what is missing, starts the real
# services (Docker engine, Kafka broker, CouchDB-compatible server), builds the
# action runtime image, type-checks, and runs every test file with tap.
# Arguments are passed to tap, e.g. `npm test -- test/unit/protocol`.
# Services are left running for the next run; `npm run services down` stops them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

phase() { printf '\n[test] %s\n' "$*"; }

# Node.js 24 LTS from the npm registry when the machine's node is another major.
source "$ROOT/scripts/node.sh"
use_project_node

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  phase "installing npm dependencies"
  npm ci --no-audit --no-fund
fi

phase "starting services"
bash scripts/services.sh up
eval "$(bash scripts/services.sh env)"

phase "building the action runtime image"
bash scripts/build-runtime-image.sh

bash scripts/k8s-tools.sh >/dev/null || echo "[test] warning: the Kubernetes manifest tools could not be installed; test/integration/k8s will fail" >&2
phase "type-checking"
npx tsc --noEmit -p tsconfig.json

phase "running tests"
mkdir -p .cache
set +e
npx tap "$@" 2>&1 | tee .cache/tap-output.txt
status=${PIPESTATUS[0]}
set -e

# tap ends with "# { total: N, pass: N, fail: N, ... }"; restate it in the
# plain form CI systems read.
summary=$(grep -E '^# \{ total:' .cache/tap-output.txt | tail -n 1 || true)
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
skip=$(sed -nE 's/.*skip: ([0-9]+).*/\1/p' <<<"$summary")
echo
echo "tests: ${pass:-0} passed, ${fail:-0} failed${skip:+, $skip skipped}"
if [ -z "$summary" ] || [ "${pass:-0}" = 0 ]; then
  echo "[test] error: tap reported no passing test" >&2
  exit 1
fi
exit "$status"
