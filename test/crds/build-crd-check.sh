#!/usr/bin/env bash
# Builds test/crds/crd-check (kube-apiserver's CRD and custom-resource validation at
# the pinned Kubernetes version) into hack/.cache/crds/, cached by a hash of its
# sources and the Go version. Prints the binary's path.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
src=$root/test/crds/crd-check
out=$root/hack/.cache/crds
export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
command -v go >/dev/null || { echo "crd-check: go not found at /usr/local/go/bin" >&2; exit 1; }
want=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" <(go version) | sha256sum | cut -c1-16)
bin=$out/crd-check
if [ ! -x "$bin" ] || [ "$(cat "$out/crd-check.hash" 2>/dev/null)" != "$want" ]; then
  mkdir -p "$out"
  echo "crd-check: building (k8s.io/apiextensions-apiserver)" >&2
  (cd "$src" && go build -trimpath -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
  echo "$want" > "$out/crd-check.hash"
fi
echo "$bin"
