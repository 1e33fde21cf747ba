#!/usr/bin/env bash
# Builds a node component of the pinned k8s.io/kubernetes release (kubelet or kube-proxy)
# into hack/.cache/k8s/bin (or $KEYVIRT_K8S_BIN) from the control plane's generated
# module (control-plane/, written by build.sh), with the same version stamps and
# CGO_ENABLED=0; cached by a hash of the pins, that go.mod and this script. Prints the
# binary's path. Usage: node-component.sh kubelet|kube-proxy
set -euo pipefail
name=${1:-}
case "$name" in
  kubelet|kube-proxy) ;;
  *) echo "usage: $0 kubelet|kube-proxy" >&2; exit 2 ;;
esac
k8s=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$k8s/../.." && pwd)
# shellcheck source=pins.env
source "$k8s/pins.env"

export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
command -v go >/dev/null || { echo "$name build: go not found at /usr/local/go/bin" >&2; exit 1; }
log() { printf '%s build: %s\n' "$name" "$*" >&2; }

out=${KEYVIRT_K8S_BIN:-$root/hack/.cache/k8s/bin}
mkdir -p "$out"
module="$k8s/control-plane"
[ -f "$module/go.mod.gen" ] || "$k8s/build.sh" control-plane

stamp=$(cat "$k8s/pins.env" "$k8s/node-component.sh" "$module/go.mod.gen" | sha256sum | cut -c1-16)
if [ "$(cat "$out/.$name.stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$out/$name" ]; then
  log "$name $KUBERNETES_VERSION is cached"
  echo "$out/$name"; exit 0
fi

minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
commit=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"Hash": "\(.*\)",*$/\1/p' | head -1)
vars="-X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
vars+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
if [ -n "$commit" ]; then vars+=" -X $pkg.gitCommit=$commit"; fi
log "building $name $KUBERNETES_VERSION"
start=$(date +%s)
(cd "$module" && go build -trimpath -ldflags="-s -w $vars" -o "$out/" "k8s.io/kubernetes/cmd/$name")
echo "$stamp" > "$out/.$name.stamp"
log "$name built in $(( $(date +%s) - start ))s"
echo "$out/$name"
