#!/usr/bin/env bash
# `npm run demo`: starts the whole system on this machine and runs a real
# invocation through it.
#   1. the services (Docker engine, Kafka, CouchDB-compatible server),
#   2. the action runtime image and the compiled invoker and controller,
#   3. invoker 0 (HTTP on 127.0.0.1:8080) and controller 0 (API on 127.0.0.1:3233),
#   4. an action `guest/hello` in the whisks database,
#   5. a blocking invocation through the controller, which pushes it to the
#      invoker over HTTP; the result and the stored activation record are printed.
# The invoker and controller keep running; `npm run demo -- stop` stops them
# (`npm run services down` stops the services too).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN_DIR=$ROOT/.services/demo
INVOKER_PORT=${INVOKER_HTTP_PORT:-8080}
CONTROLLER_PORT=${CONTROLLER_PORT:-3233}

say() { printf '\n[demo] %s\n' "$*"; }

stop_one() { # name
  local pidfile=$RUN_DIR/$1.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    say "stopping $1 (pid $(cat "$pidfile"))"
    kill -TERM "$(cat "$pidfile")"
    for _ in $(seq 1 120); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$pidfile"
}

if [ "${1:-}" = stop ]; then
  stop_one controller
  stop_one invoker
  exit 0
fi

wait_http() { # what url seconds
  local deadline=$((SECONDS + $3))
  until curl -fsS --max-time 2 "$2" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "[demo] error: $1 did not answer $2 within $3 s; its log: $RUN_DIR/$1.log" >&2
      tail -n 20 "$RUN_DIR/$1.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

# Node.js 24 LTS from the npm registry when the machine's node is another major.
source "$ROOT/scripts/node.sh"
use_project_node

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund
fi

say "starting services"
bash scripts/services.sh up
eval "$(bash scripts/services.sh env)"

say "building the action runtime image"
bash scripts/build-runtime-image.sh

say "compiling TypeScript"
npm run --silent build

mkdir -p "$RUN_DIR"
stop_one controller
stop_one invoker

say "starting invoker 0 on 127.0.0.1:$INVOKER_PORT (log: $RUN_DIR/invoker.log)"
INVOKER_ID=0 INVOKER_HTTP_HOST=127.0.0.1 INVOKER_HTTP_PORT=$INVOKER_PORT \
  INVOKER_DOCKER_NETWORK=$TEST_DOCKER_NETWORK KAFKA_BROKERS=$KAFKA_BROKERS KAFKA_TOPIC_PREFIX=${KAFKA_TOPIC_PREFIX:-} COUCHDB_URL=$COUCHDB_URL \
  INVOKER_JOURNAL_DIR=$RUN_DIR/journal INVOKER_ADMIN_USER=admin INVOKER_ADMIN_PASSWORD=demo \
  nohup node dist/invoker/main.js >"$RUN_DIR/invoker.log" 2>&1 &
echo $! >"$RUN_DIR/invoker.pid"
wait_http invoker "http://127.0.0.1:$INVOKER_PORT/health/ready" 90

say "starting controller 0 on 127.0.0.1:$CONTROLLER_PORT (log: $RUN_DIR/controller.log)"
CONTROLLER_ID=0 CONTROLLER_PORT=$CONTROLLER_PORT INVOKER_URLS=http://127.0.0.1:$INVOKER_PORT \
  KAFKA_BROKERS=$KAFKA_BROKERS KAFKA_TOPIC_PREFIX=${KAFKA_TOPIC_PREFIX:-} COUCHDB_URL=$COUCHDB_URL \
  nohup node dist/controller-lb/main.js >"$RUN_DIR/controller.log" 2>&1 &
echo $! >"$RUN_DIR/controller.pid"
wait_http controller "http://127.0.0.1:$CONTROLLER_PORT/invokers" 60

say "creating the action guest/hello"
node scripts/demo-action.mjs "$COUCHDB_URL"

say "invoking guest/hello through the controller (blocking)"
for _ in $(seq 1 30); do
  curl -fsS "http://127.0.0.1:$CONTROLLER_PORT/invokers" | grep -q '"up"' && break
  sleep 1
done
echo "invokers: $(curl -fsS "http://127.0.0.1:$CONTROLLER_PORT/invokers")"
result=$(curl -fsS -X POST -H 'content-type: application/json' -d '{"name":"World"}' \
  "http://127.0.0.1:$CONTROLLER_PORT/api/v1/namespaces/guest/actions/hello?blocking=true")
echo "result: $result"
activation_id=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).activationId)' "$result")

say "the activation record in CouchDB (activations/guest%2F$activation_id)"
for _ in $(seq 1 50); do
  record=$(curl -fsS "$COUCHDB_URL/activations/guest%2F$activation_id" 2>/dev/null) && break
  sleep 0.2
done
echo "${record:?the activation record was not stored}"

say "done. The invoker and controller keep running:"
echo "  curl -X POST -H 'content-type: application/json' -d '{\"name\":\"you\"}' 'http://127.0.0.1:$CONTROLLER_PORT/api/v1/namespaces/guest/actions/hello?blocking=true'"
echo "  curl http://127.0.0.1:$INVOKER_PORT/pool ; curl http://127.0.0.1:$INVOKER_PORT/metrics"
echo "  npm run demo -- stop      # stops them; npm run services down stops the services"
