#!/usr/bin/env bash
# The Debian 12 guest image the cloud-init and SSH suites boot (qcow2), cached by content
# hash and package versions under ~/.cache/keyvirt/guest-debian/ (see hack/guest/debian/build.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=$(bash "$root/hack/guest/debian/build.sh")
echo "debian guest image: $dir" >&2
