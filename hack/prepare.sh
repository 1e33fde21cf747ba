#!/usr/bin/env bash
# Builds what the suites and benchmarks need: every hack/prepare.d/*.sh, each cached.
# The scripts run in two lanes at once, each in name order: the Go builds (scripts
# that say `# prepare-lane: go`), which keep every core busy, beside the rest (guest
# images and container images: downloads, dpkg, compression), which mostly wait. A
# build both lanes could ask for takes its cache's lock. Every line is prefixed with
# its script's name; the run fails, naming the script, if any script failed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

go_lane=() other_lane=()
for prep in hack/prepare.d/*.sh; do
  [ -e "$prep" ] || continue
  if grep -qx '# prepare-lane: go' "$prep"; then go_lane+=("$prep"); else other_lane+=("$prep"); fi
done

# Runs the given scripts one after another; stops at the first that fails.
lane() {
  local prep name started
  for prep in "$@"; do
    name=$(basename "$prep" .sh)
    started=$SECONDS
    printf '== prepare: %s\n' "$name" >&2
    if ! bash "$prep" 2>&1 | sed -u "s/^/[$name] /" >&2; then
      printf '== prepare: %s FAILED\n' "$name" >&2
      return 1
    fi
    printf '== prepare: %s done in %d s\n' "$name" "$((SECONDS - started))" >&2
  done
}

started=$SECONDS
lane "${go_lane[@]}" & go_pid=$!
lane "${other_lane[@]}" & other_pid=$!
status=0
wait "$go_pid" || status=1
wait "$other_pid" || status=1
outcome=ready
if ((status != 0)); then outcome=failed; fi
printf '== prepare: %s in %d s\n' "$outcome" "$((SECONDS - started))" >&2
exit "$status"
