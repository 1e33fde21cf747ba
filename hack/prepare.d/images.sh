#!/usr/bin/env bash
# The container images (pause, operator, launcher, node agent) the image suites run and
# the real-node cluster imports, built with podman and cached by content hash under
# hack/.cache/images/ (see hack/images/build.sh); a warm run costs seconds.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
started=$SECONDS
bash "$root/hack/images/build.sh" >&2
echo "images: ready in $((SECONDS - started)) s" >&2
