#!/usr/bin/env bash
# Installs the Kubernetes manifest tools the test suite validates k8s/ with,
# idempotently, into .cache/ (ignored by git):
#   .cache/bin/kustomize     sigs.k8s.io/kustomize/kustomize/v5  (Go module proxy)
#   .cache/bin/kubeconform   github.com/yannh/kubeconform         (Go module proxy)
#   .cache/k8s-schemas/vX.Y.Z-strict/   the Kubernetes API JSON schemas shipped
#       by the PyPI package kubernetes-validate, their "$ref"s rewritten from
#       "/api/_definitions.json" to this folder's file:// path so kubeconform
#       reads them offline.
# A second run with everything in place does nothing. Prints the folder of the
# schemas on the last line. Exits non-zero, saying what failed, when a tool
# cannot be installed (the manifest tests then fail with that message).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
KUBECONFORM_VERSION=v0.8.0
# v5.8.3 needs Go 1.27.
KUSTOMIZE_VERSION=v5.8.2
KUBERNETES_VALIDATE_VERSION=1.37.0
# The oldest Kubernetes the manifests support (k8s/README.md) and the newest
# schema set kubernetes-validate ships: the manifests are checked against both.
SCHEMA_VERSIONS=(1.28.0 1.37.0)

say() { printf '[k8s-tools] %s\n' "$*" >&2; }
mkdir -p "$BIN"

go_tool() { # name module version
  local name=$1 module=$2 version=$3 stamp="$BIN/.$1-$3"
  if [ -x "$BIN/$name" ] && [ -e "$stamp" ]; then return 0; fi
  if ! command -v go >/dev/null 2>&1; then
    say "error: 'go' is not installed; it is needed to install $name ($module@$version)"
    return 1
  fi
  say "installing $name $version (go install $module@$version)"
  if ! GOBIN="$BIN" GOFLAGS=-buildvcs=false go install "$module@$version"; then
    say "error: go install $module@$version failed"
    return 1
  fi
  rm -f "$BIN/.$name-"*
  touch "$stamp"
}

go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"

SCHEMAS="$CACHE/k8s-schemas"
stamp_of() { # target dir: names the package version and the absolute path written into the $refs
  printf '%s/.rewritten-%s-%s' "$1" "$KUBERNETES_VALIDATE_VERSION" "$(printf '%s' "$1" | cksum | cut -d' ' -f1)"
}
missing=()
for version in "${SCHEMA_VERSIONS[@]}"; do
  [ -e "$(stamp_of "$SCHEMAS/v$version-strict")" ] || missing+=("$version")
done
if [ "${#missing[@]}" -gt 0 ]; then
  # The package ships every Kubernetes version's schemas (over 100 MB): only
  # the ones used are kept, rewritten, and the package is removed again.
  PYDIR="$CACHE/k8s-python"
  rm -rf "$PYDIR"
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (pip, for its schemas only)"
  if ! python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --no-compile \
      --target "$PYDIR" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"; then
    say "error: pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
    exit 1
  fi
  for version in "${missing[@]}"; do
    source_dir="$PYDIR/kubernetes_validate/kubernetes-json-schema/v$version-local-strict"
    target_dir="$SCHEMAS/v$version-strict"
    if [ ! -d "$source_dir" ]; then
      say "error: kubernetes-validate $KUBERNETES_VALIDATE_VERSION has no schemas for Kubernetes $version"
      exit 1
    fi
    say "rewriting the schemas of Kubernetes $version for offline use"
    rm -rf "$target_dir"
    mkdir -p "$target_dir"
    cp "$source_dir"/*.json "$target_dir"/
    find "$target_dir" -name '*.json' -exec sed -i "s#\"/api/_definitions.json#\"file://$target_dir/_definitions.json#g" {} +
    touch "$(stamp_of "$target_dir")"
  done
  rm -rf "$PYDIR"
fi
echo "$SCHEMAS"
