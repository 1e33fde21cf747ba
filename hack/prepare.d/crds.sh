#!/usr/bin/env bash
# prepare-lane: go
# kube-apiserver's CRD validation as a small binary, for test/crds (cached).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=$(bash "$root/test/crds/build-crd-check.sh")
echo "crd-check: $bin" >&2
