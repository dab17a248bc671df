#!/usr/bin/env bash
# `npm run demo`: starts the whole system on this machine and runs a real
# invocation through it.
#   1. the services (Docker engine, Kafka, CouchDB-compatible server),
#   2. the action runtime image and the compiled invoker and controller,
#   3. invoker 0 (HTTP on 127.0.0.1:8080) and controller 0 (API on 127.0.0.1:3233),
#   4. upstream's `guest` identity in the subjects database,
#   5. OpenWhisk's first steps through the controller's REST API with the real
#      `openwhisk` npm client (scripts/demo-action.mjs): create myAction from
#      action.js, invoke it with --result, fetch its activation and logs;
#   6. how to point `wsk` and the `openwhisk` npm client at this system.
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

GUEST_KEY=23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP
say "creating upstream's guest identity (node dist/controller-lb/identity.js create guest)"
COUCHDB_URL=$COUCHDB_URL node dist/controller-lb/identity.js create guest >/dev/null 2>&1 \
  || COUCHDB_URL=$COUCHDB_URL node dist/controller-lb/identity.js get guest | grep -q "$GUEST_KEY" \
  || { echo "[demo] error: could not create the guest identity" >&2; exit 1; }

for _ in $(seq 1 30); do
  curl -fsS "http://127.0.0.1:$CONTROLLER_PORT/invokers" | grep -q '"up"' && break
  sleep 1
done
echo "invokers: $(curl -fsS "http://127.0.0.1:$CONTROLLER_PORT/invokers")"

say "OpenWhisk's first steps, through the REST API with the openwhisk npm client"
node scripts/demo-action.mjs "http://127.0.0.1:$CONTROLLER_PORT" "$GUEST_KEY" "$RUN_DIR"

say "done. The invoker and controller keep running. Point the clients at them:"
cat <<EOT
  wsk (the OpenWhisk CLI):
    wsk property set --apihost http://127.0.0.1:$CONTROLLER_PORT --auth $GUEST_KEY
    wsk action create myAction $RUN_DIR/action.js     # or: wsk action update ...
    wsk action invoke myAction --result
    wsk action invoke myAction                         # non-blocking: prints the activation id
    wsk activation list
    wsk activation get --last ; wsk activation logs --last ; wsk activation result --last
    wsk action list ; wsk namespace list ; wsk list
  the openwhisk npm client:
    const ow = require('openwhisk')({ apihost: 'http://127.0.0.1:$CONTROLLER_PORT', api_key: '$GUEST_KEY' });
    await ow.actions.invoke({ name: 'myAction', blocking: true, result: true });   // { hello: 'world' }
  plain HTTP:
    curl -u $GUEST_KEY -X POST 'http://127.0.0.1:$CONTROLLER_PORT/api/v1/namespaces/_/actions/myAction?blocking=true&result=true'
  more identities: COUCHDB_URL=$COUCHDB_URL node dist/controller-lb/identity.js create <subject>
  the invoker: curl http://127.0.0.1:$INVOKER_PORT/pool ; curl http://127.0.0.1:$INVOKER_PORT/metrics
  npm run demo -- stop      # stops them; npm run services down stops the services
EOT
