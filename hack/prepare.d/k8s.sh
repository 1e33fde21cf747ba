#!/usr/bin/env bash
# prepare-lane: go
# Builds the pinned control-plane binaries the cluster suites need and helm for the
# chart suite (each cached by pin; a cold build prints its duration). kwok:
# `hack/k8s/build.sh kwok`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bash "$root/hack/k8s/build.sh" control-plane
bash "$root/hack/k8s/build.sh" helm
