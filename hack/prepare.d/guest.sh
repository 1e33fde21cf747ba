#!/usr/bin/env bash
# The test guest every QEMU test and benchmark boots (kernel + initramfs), cached by
# content hash under hack/.cache/guest/ (see hack/guest/build.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=$(bash "$root/hack/guest/build.sh")
echo "test guest: $dir" >&2
