#!/usr/bin/env bash
# The end-to-end fault suite (test/e2e/system.test.ts) with larger numbers,
# printing the accounting table of each scenario:
#
#   npm run e2e:load                     # 1000 activations per scenario, 24 callers
#   E2E_COUNT=3000 E2E_CONCURRENCY=48 E2E_INVOKER_MEMORY_MB=1024 npm run e2e:load
#
# Needs the services (npm run services -- up) and the runtime image
# (scripts/build-runtime-image.sh). Uses a Kafka broker of its own and a proxy
# in front of CouchDB: the shared services are never stopped.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source "$ROOT/scripts/node.sh"
use_project_node
eval "$(bash scripts/services.sh env)"
export E2E_COUNT=${E2E_COUNT:-1000} E2E_CONCURRENCY=${E2E_CONCURRENCY:-24} E2E_INVOKER_MEMORY_MB=${E2E_INVOKER_MEMORY_MB:-512}
echo "[e2e:load] $E2E_COUNT activations per scenario, $E2E_CONCURRENCY callers, invokers of $E2E_INVOKER_MEMORY_MB MB"
mkdir -p .cache
set +e
npx tap --reporter=tap --timeout=3600 test/e2e/system.test.ts >.cache/e2e-load.txt 2>&1
status=$?
set -e
# The tables are tap comments ("# == <scenario>" and the lines after it).
sed -nE 's/^ *# (== .*|[a-z ].*  +[0-9].*)$/\1/p' .cache/e2e-load.txt
grep -E '^ *not ok' .cache/e2e-load.txt || true
echo "[e2e:load] full output: .cache/e2e-load.txt (exit $status)"
exit "$status"
