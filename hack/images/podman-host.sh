#!/usr/bin/env bash
# Makes this host's podman run the images hack/images/build.sh makes: installs
# hack/images/containers.conf as /etc/containers/containers.conf. Idempotent; it
# refuses to replace a containers.conf it did not write.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
want="$here/containers.conf"
conf=/etc/containers/containers.conf
marker='# Written to /etc/containers/containers.conf by hack/images/podman-host.sh.'
if [ -f "$conf" ] && cmp -s "$want" "$conf"; then exit 0; fi
if [ -f "$conf" ] && [ "$(head -1 "$conf")" != "$marker" ]; then
  echo "podman host: $conf exists and was not written by $0; it must hold the settings of $want" >&2
  exit 1
fi
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" mkdir -p /etc/containers
"${sudo_cmd[@]}" install -m 0644 "$want" "$conf"
echo "podman host: wrote $conf" >&2
