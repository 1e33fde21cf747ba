#!/usr/bin/env bash
# Builds the kube-proxy of the pinned k8s.io/kubernetes release into hack/.cache/k8s/bin
# (or $KEYVIRT_K8S_BIN) from the control plane's generated module (../control-plane,
# written by ../build.sh), with the same version stamps and CGO_ENABLED=0; cached by a
# hash of the pins, that go.mod and this script. Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
k8s=$(cd "$here/.." && pwd)
root=$(cd "$k8s/../.." && pwd)
# shellcheck source=../pins.env
source "$k8s/pins.env"

export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
command -v go >/dev/null || { echo "kube-proxy build: go not found at /usr/local/go/bin" >&2; exit 1; }
log() { printf 'kube-proxy build: %s\n' "$*" >&2; }

out=${KEYVIRT_K8S_BIN:-$root/hack/.cache/k8s/bin}
mkdir -p "$out"
module="$k8s/control-plane"
[ -f "$module/go.mod.gen" ] || "$k8s/build.sh" control-plane

stamp=$(cat "$k8s/pins.env" "$here/build.sh" "$module/go.mod.gen" | sha256sum | cut -c1-16)
if [ "$(cat "$out/.kube-proxy.stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$out/kube-proxy" ]; then
  log "kube-proxy $KUBERNETES_VERSION is cached"
  echo "$out/kube-proxy"; exit 0
fi

minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
commit=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"Hash": "\(.*\)",*$/\1/p' | head -1)
vars="-X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
vars+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
if [ -n "$commit" ]; then vars+=" -X $pkg.gitCommit=$commit"; fi
log "building kube-proxy $KUBERNETES_VERSION"
start=$(date +%s)
(cd "$module" && go build -trimpath -ldflags="-s -w $vars" -o "$out/" k8s.io/kubernetes/cmd/kube-proxy)
echo "$stamp" > "$out/.kube-proxy.stamp"
log "kube-proxy built in $(( $(date +%s) - start ))s"
echo "$out/kube-proxy"
