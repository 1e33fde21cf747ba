#!/usr/bin/env bash
# Builds the pinned control-plane binaries the cluster suites need (cached by pin;
# a cold build prints its duration). helm and kwok: `hack/k8s/build.sh tools`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
exec bash "$root/hack/k8s/build.sh" control-plane
