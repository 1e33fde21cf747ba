#!/usr/bin/env bash
# Installs what a fresh clone is missing: Debian packages the launcher, the test
# guest and the local cluster need, and the npm dependencies (which include the
# pinned Node.js every script runs on). Idempotent and quiet when nothing is missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

apt_packages=(
  qemu-system-x86 qemu-utils qemu-guest-agent busybox-static
  genisoimage cpio xz-utils zstd kmod iproute2 util-linux procps
  bridge-utils iptables psmisc gcc libc6-dev e2fsprogs bindfs
  containerd runc containernetworking-plugins podman
  syslinux syslinux-common mtools dosfstools fdisk mmdebstrap
  curl docker-registry
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq >&2
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

stamp=node_modules/.keyvirt-lock-hash
want=$(sha256sum package-lock.json package.json crds/package.json launcher/package.json operator/package.json | sha256sum | cut -c1-16)
if [ ! -x node_modules/.bin/node ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing npm dependencies" >&2
  npm ci --no-fund --no-audit --loglevel=error >&2
  echo "$want" > "$stamp"
fi
