#!/usr/bin/env bash
# prepare-lane: go
# What the real nodes need before a suite starts them (each cached): the kubelet of the
# pinned release (after k8s.sh built the control plane's module) and the pause image.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=$(bash "$root/hack/k8s/kubelet/build.sh")
echo "kubelet: $bin" >&2
bash "$root/hack/images/build.sh" pause >&2
