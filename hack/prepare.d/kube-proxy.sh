#!/usr/bin/env bash
# prepare-lane: go
# kube-proxy of the pinned release for the local cluster's Service network (ADR 0099),
# built from the control plane's module after k8s.sh (cached by hash).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=$(bash "$root/hack/k8s/kube-proxy/build.sh")
echo "kube-proxy: $bin" >&2
