#!/usr/bin/env bash
# Starts, stops and reports the real services that development and the tests
# use: a Docker engine, an Apache Kafka broker (KRaft) and a CouchDB-compatible
# server (pouchdb-server, or the server named by COUCHDB_URL).
#
#   scripts/services.sh up [docker|kafka|couchdb ...]   start (default: all); a no-op for what runs
#   scripts/services.sh down [docker|kafka|couchdb ...] stop only what this script started
#   scripts/services.sh status                          one line per service
#   scripts/services.sh env                             the variables tests and the invoker read
#
# Settings (environment, defaults in brackets):
#   DOCKER_HOST             engine to use [local socket]; a remote engine is used, never started
#   KAFKA_PORT              broker port on 127.0.0.1 [9092]
#   KAFKA_CONTROLLER_PORT   KRaft controller port on 127.0.0.1 [9093]
#   KAFKA_VERSION           broker version resolved from Maven Central [from scripts/kafka/pom.xml]
#   COUCHDB_PORT            pouchdb-server port on 127.0.0.1 [5984]
#   COUCHDB_URL             use this CouchDB instead of starting pouchdb-server
#   TEST_DOCKER_NETWORK     bridge network created for action containers [whisk-test]
#   SERVICES_DIR            pids, logs and data [<repo>/.services]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVICES_DIR=${SERVICES_DIR:-$ROOT/.services}
CACHE_DIR=$ROOT/.cache
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_VERSION=${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")}
COUCHDB_PORT=${COUCHDB_PORT:-5984}
TEST_DOCKER_NETWORK=${TEST_DOCKER_NETWORK:-whisk-test}

say() { printf '[services] %s\n' "$*"; }
fail() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# A URL with any user:password@ removed, for printing.
redact_url() { sed -E 's#://[^/@]+@#://***@#' <<<"$1"; }

# pouchdb-server and the Kafka readiness probe (kafkajs) come from npm.
ensure_node_modules() {
  [ -x "$ROOT/node_modules/.bin/pouchdb-server" ] && [ -d "$ROOT/node_modules/kafkajs" ] && return 0
  say "installing npm dependencies (npm ci)"
  source "$ROOT/scripts/node.sh"
  use_project_node
  (cd "$ROOT" && npm ci --no-audit --no-fund >"$CACHE_DIR/npm-ci.log" 2>&1) || fail "npm ci failed, see $CACHE_DIR/npm-ci.log"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # description seconds command...
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
  say "$what is ready"
}

stop_pid() { # name pidfile
  local name=$1 pidfile=$2 pid
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    say "$name: not started by this script, nothing to stop"
    return 0
  fi
  pid=$(cat "$pidfile")
  say "$name: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name: still running after 30 s, killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "$name: stopped"
}

# ---------------------------------------------------------------- Docker
docker_answers() { docker info >/dev/null 2>&1; }

docker_up() {
  mkdir -p "$SERVICES_DIR/docker"
  if docker_answers; then
    say "docker: engine already answering$([ -n "${DOCKER_HOST:-}" ] && echo " at $DOCKER_HOST")"
  elif [ -n "${DOCKER_HOST:-}" ]; then
    fail "docker: DOCKER_HOST=$DOCKER_HOST does not answer; start that engine or unset DOCKER_HOST to use a local one"
  else
    if ! command -v dockerd >/dev/null 2>&1; then
      [ "$(id -u)" = 0 ] || fail "docker: no engine answers and dockerd is not installed; install Debian's docker.io (needs root)"
      say "docker: installing Debian's docker.io"
      apt-get update -qq >"$SERVICES_DIR/docker/apt.log" 2>&1 || fail "docker: apt-get update failed, see $SERVICES_DIR/docker/apt.log"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >>"$SERVICES_DIR/docker/apt.log" 2>&1 \
        || fail "docker: installing docker.io failed, see $SERVICES_DIR/docker/apt.log"
    fi
    [ "$(id -u)" = 0 ] || fail "docker: no engine answers and starting dockerd needs root"
    say "docker: starting dockerd (log: $SERVICES_DIR/docker/dockerd.log)"
    nohup dockerd --pidfile "$SERVICES_DIR/docker/dockerd.daemon.pid" >"$SERVICES_DIR/docker/dockerd.log" 2>&1 &
    echo $! >"$SERVICES_DIR/docker/dockerd.pid"
    wait_for "docker" 60 docker_answers || fail "docker: dockerd did not answer within 60 s, see $SERVICES_DIR/docker/dockerd.log"
  fi
  if docker network inspect "$TEST_DOCKER_NETWORK" >/dev/null 2>&1; then
    say "docker: network $TEST_DOCKER_NETWORK exists"
  else
    say "docker: creating bridge network $TEST_DOCKER_NETWORK for action containers"
    docker network create --driver bridge --label whisk.services=true "$TEST_DOCKER_NETWORK" >/dev/null
  fi
}

docker_down() {
  if docker_answers && [ "$(docker network inspect -f '{{index .Labels "whisk.services"}}' "$TEST_DOCKER_NETWORK" 2>/dev/null)" = true ]; then
    # Containers still attached (left by an interrupted test) would keep the network alive.
    local stale
    stale=$(docker ps -aq --filter "network=$TEST_DOCKER_NETWORK")
    [ -z "$stale" ] || { say "docker: removing containers left on $TEST_DOCKER_NETWORK"; docker rm -f $stale >/dev/null; }
    docker network rm "$TEST_DOCKER_NETWORK" >/dev/null && say "docker: removed network $TEST_DOCKER_NETWORK"
  fi
  stop_pid docker "$SERVICES_DIR/docker/dockerd.pid"
}

docker_status() {
  if docker_answers; then
    echo "docker: up ($(docker version -f '{{.Server.Version}}' 2>/dev/null))$(pid_alive "$SERVICES_DIR/docker/dockerd.pid" && echo ', started by services.sh')"
  else
    echo "docker: down"
  fi
}

# ---------------------------------------------------------------- Kafka
KAFKA_DIR=$SERVICES_DIR/kafka
KAFKA_LIBS=$CACHE_DIR/kafka/$KAFKA_VERSION/libs

kafka_fetch() {
  if [ -f "$KAFKA_LIBS/.complete" ]; then return 0; fi
  command -v java >/dev/null 2>&1 || fail "kafka: java is not installed (Java 17 runs the broker)"
  command -v mvn >/dev/null 2>&1 || fail "kafka: mvn is not installed (Maven resolves the broker jars from Maven Central)"
  say "kafka: resolving Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS" >"$CACHE_DIR/kafka/mvn-$KAFKA_VERSION.log" 2>&1 \
    || fail "kafka: resolving the jars failed, see $CACHE_DIR/kafka/mvn-$KAFKA_VERSION.log"
  touch "$KAFKA_LIBS/.complete"
}

kafka_ready() { node "$ROOT/scripts/kafka-ready.mjs" "127.0.0.1:$KAFKA_PORT"; }

kafka_up() {
  if pid_alive "$KAFKA_DIR/kafka.pid"; then
    say "kafka: already running (pid $(cat "$KAFKA_DIR/kafka.pid")) on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  if port_open "$KAFKA_PORT"; then
    say "kafka: something already listens on 127.0.0.1:$KAFKA_PORT; using it as the broker"
    return 0
  fi
  kafka_fetch
  ensure_node_modules
  mkdir -p "$KAFKA_DIR/data"
  sed -e "s#@@PORT@@#$KAFKA_PORT#g" -e "s#@@CONTROLLER_PORT@@#$KAFKA_CONTROLLER_PORT#g" -e "s#@@DATA_DIR@@#$KAFKA_DIR/data#g" \
    "$ROOT/scripts/kafka/server.properties.template" >"$KAFKA_DIR/server.properties"
  local java_opts=(-Xms256m -Xmx768m -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" -cp "$KAFKA_LIBS/*")
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    say "kafka: formatting storage in $KAFKA_DIR/data"
    local cluster_id
    cluster_id=$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" \
      >"$KAFKA_DIR/format.log" 2>&1 || fail "kafka: formatting storage failed, see $KAFKA_DIR/format.log"
  fi
  say "kafka: starting Apache Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (log: $KAFKA_DIR/kafka.log)"
  nohup java "${java_opts[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/kafka.log" 2>&1 &
  echo $! >"$KAFKA_DIR/kafka.pid"
  wait_for "kafka" 90 kafka_ready || fail "kafka: broker not ready within 90 s, see $KAFKA_DIR/kafka.log"
}

kafka_down() { stop_pid kafka "$KAFKA_DIR/kafka.pid"; }

kafka_status() {
  if pid_alive "$KAFKA_DIR/kafka.pid"; then echo "kafka: up on 127.0.0.1:$KAFKA_PORT (Apache Kafka $KAFKA_VERSION, pid $(cat "$KAFKA_DIR/kafka.pid"))"
  elif port_open "$KAFKA_PORT"; then echo "kafka: something listens on 127.0.0.1:$KAFKA_PORT (not started by services.sh)"
  else echo "kafka: down"; fi
}

# ---------------------------------------------------------------- CouchDB
COUCH_DIR=$SERVICES_DIR/couchdb

couchdb_url() { echo "${COUCHDB_URL:-http://127.0.0.1:$COUCHDB_PORT}"; }
couchdb_answers() { curl -fsS --max-time 2 "$(couchdb_url)/" >/dev/null 2>&1; }

couchdb_up() {
  if [ -n "${COUCHDB_URL:-}" ]; then
    couchdb_answers || fail "couchdb: COUCHDB_URL=$(redact_url "$COUCHDB_URL") does not answer"
    say "couchdb: using $(redact_url "$COUCHDB_URL")"
    return 0
  fi
  if pid_alive "$COUCH_DIR/couchdb.pid"; then
    say "couchdb: pouchdb-server already running (pid $(cat "$COUCH_DIR/couchdb.pid")) on 127.0.0.1:$COUCHDB_PORT"
    return 0
  fi
  if couchdb_answers; then
    say "couchdb: a server already answers on 127.0.0.1:$COUCHDB_PORT; using it"
    return 0
  fi
  ensure_node_modules
  mkdir -p "$COUCH_DIR/data"
  say "couchdb: starting pouchdb-server on 127.0.0.1:$COUCHDB_PORT (data: $COUCH_DIR/data)"
  # pouchdb-server writes config.json and log.txt into its working directory.
  (cd "$COUCH_DIR" && exec nohup "$ROOT/node_modules/.bin/pouchdb-server" --host 127.0.0.1 --port "$COUCHDB_PORT" \
    --dir "$COUCH_DIR/data" --no-stdout-logs >"$COUCH_DIR/pouchdb-server.log" 2>&1) &
  echo $! >"$COUCH_DIR/couchdb.pid"
  wait_for "couchdb" 60 couchdb_answers || fail "couchdb: pouchdb-server did not answer within 60 s, see $COUCH_DIR/pouchdb-server.log"
}

couchdb_down() {
  if [ -n "${COUCHDB_URL:-}" ]; then say "couchdb: external server $(redact_url "$COUCHDB_URL") is left alone"; return 0; fi
  stop_pid couchdb "$COUCH_DIR/couchdb.pid"
}

couchdb_status() {
  if couchdb_answers; then echo "couchdb: up at $(redact_url "$(couchdb_url)")$(pid_alive "$COUCH_DIR/couchdb.pid" && echo ' (pouchdb-server started by services.sh)')"
  else echo "couchdb: down"; fi
}

# ---------------------------------------------------------------- main
print_env() {
  echo "export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
  echo "export COUCHDB_URL=$(couchdb_url)"
  echo "export TEST_DOCKER_NETWORK=$TEST_DOCKER_NETWORK"
  echo "export ACTION_IMAGE_NODEJS20=${ACTION_IMAGE_NODEJS20:-whisk/action-nodejs-v20:local}"
}

command=${1:-status}
shift || true
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(docker kafka couchdb)
for s in "${services[@]}"; do
  case $s in docker|kafka|couchdb) ;; *) fail "unknown service '$s' (docker, kafka, couchdb)";; esac
done
mkdir -p "$SERVICES_DIR" "$CACHE_DIR"

case $command in
  up) for s in "${services[@]}"; do "${s}_up"; done ;;
  # Reverse order: the data services go before the engine.
  down) for ((i = ${#services[@]} - 1; i >= 0; i--)); do "${services[$i]}_down"; done ;;
  status) for s in "${services[@]}"; do "${s}_status"; done ;;
  env) print_env ;;
  *) fail "unknown command '$command' (up, down, status, env)" ;;
esac
