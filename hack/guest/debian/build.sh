#!/usr/bin/env bash
# Builds the Debian 12 guest image: a bootable qcow2 (compressed) made with mmdebstrap
# from Debian's archive — the Debian kernel, systemd, cloud-init (NoCloud), qemu-guest-agent,
# openssh-server — behind syslinux on a FAT boot partition, the root file system on ext4.
# No image is downloaded and nothing is mounted: mke2fs -d and mtools write the file
# systems from the unpacked tree. See docs/adr/0088-debian-guest-image.md.
#
# Cached under $KEYVIRT_CACHE_HOME/guest-debian/<hash>/ (debian-12.qcow2, manifest.json;
# KEYVIRT_CACHE_HOME defaults to ~/.cache/keyvirt: the build is keyed by its content, so
# every checkout on the host shares it), the hash covering this directory and the
# candidate versions of the packages installed; the downloaded .debs are kept in
# $KEYVIRT_CACHE_HOME/guest-debian/apt/archives, so a rebuild after a package update
# downloads only what changed. Prints the build directory.
#
# Usage: hack/guest/debian/build.sh [--force | --if-built]
#   --if-built  print the build directory only when this build is cached; never build
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
mmdebstrap_fragment="$root/hack/images/mmdebstrap-options.sh"
# shellcheck source=../../images/mmdebstrap-options.sh
. "$mmdebstrap_fragment"
cache="${KEYVIRT_CACHE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/keyvirt}/guest-debian"
force=0
if_built=0
case "${1:-}" in
  --force) force=1 ;;
  --if-built) if_built=1 ;;
  '') ;;
  *) echo "usage: $0 [--force | --if-built]" >&2; exit 2 ;;
esac

log() { echo "debian-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in mmdebstrap mke2fs mkfs.vfat mcopy syslinux sfdisk qemu-img; do
  command -v "$tool" >/dev/null || die "$tool is not installed (hack/bootstrap.sh)"
done

suite=bookworm
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.txt")
disk_mib=2048
boot_mib=128
label_id=0x4b564244
root_partuuid=4b564244-02
cmdline="console=tty0 console=ttyS0,115200n8 root=PARTUUID=$root_partuuid ro rootwait"

# The package versions apt would install today (the host's lists follow the same suites).
versions=$(apt-cache policy "${packages[@]}" 2>/dev/null | awk '/^[^ ]/ {p=$1; sub(/:$/, "", p)} /Candidate:/ {print p, $2}')
[ -n "$versions" ] || die "apt-cache knows none of the packages (apt-get update?)"
hash=$({
  echo "$suite $mirror $security $disk_mib $boot_mib $cmdline"
  echo "$versions"
  mmdebstrap --version
  sha256sum /usr/lib/syslinux/mbr/mbr.bin /usr/lib/syslinux/modules/bios/ldlinux.c32
  sha256sum < "$mmdebstrap_fragment"
  (cd "$here" && find . -type f ! -name '*.md' -print0 | sort -z | xargs -0 sha256sum)
} | sha256sum | cut -c1-16)
out="$cache/$hash"
if ((!force)) && [ -f "$out/manifest.json" ]; then
  echo "$out"
  exit 0
fi
((if_built)) && exit 0
mkdir -p "$cache/apt/archives"
exec 9>"$cache/.lock"
flock 9
if ((!force)) && [ -f "$out/manifest.json" ]; then
  echo "$out"
  exit 0
fi
started=$SECONDS
work=$(mktemp -d "$cache/.build.XXXXXX")
# mmdebstrap mounts /proc, /sys and /dev into the tree while it installs; whatever it
# left mounted (a failed run) is unmounted before anything is removed or copied.
unmount_tree() {
  local m
  for m in $(awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}
trap 'unmount_tree; rm -rf --one-file-system "$work"' EXIT
tree="$work/root"
archives="$cache/apt/archives"

log "mmdebstrap $suite: ${packages[*]}"
include=$(IFS=,; echo "${packages[*]}")
mmdebstrap_options "$archives"
mmdebstrap_sources "$suite" "$mirror" "$security"
mmdebstrap --quiet --variant=apt --mode=root --format=directory \
  --include="$include" \
  "${mmdebstrap_opts[@]}" \
  --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
  --customize-hook="$here/customize.sh \"\$1\" $root_partuuid" \
  "$suite" "$tree" \
  "${mmdebstrap_srcs[@]}"

unmount_tree
kver=$(ls "$tree/lib/modules")
[ -f "$tree/boot/vmlinuz-$kver" ] && [ -f "$tree/boot/initrd.img-$kver" ] || die "no kernel or initrd in the tree ($kver)"
log "kernel $kver; the tree holds $(du -sh "$tree" | cut -f1)"

# --- boot partition: syslinux, the kernel and initrd, the command line ---
part_boot="$work/boot.fat"
mkfs.vfat -C -n DEBBOOT -i 4b564244 "$part_boot" $((boot_mib * 1024)) >/dev/null
syslinux --install "$part_boot"
printf 'DEFAULT debian\nPROMPT 0\nTIMEOUT 0\nLABEL debian\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' "$cmdline" > "$work/syslinux.cfg"
export MTOOLS_SKIP_CHECK=1
mcopy -i "$part_boot" "$tree/boot/vmlinuz-$kver" ::/vmlinuz
mcopy -i "$part_boot" "$tree/boot/initrd.img-$kver" ::/initrd.img
mcopy -i "$part_boot" "$work/syslinux.cfg" ::/syslinux.cfg

# --- root partition: ext4 written from the tree ---
root_mib=$((disk_mib - 1 - boot_mib))
part_root="$work/root.ext4"
mke2fs -q -F -t ext4 -L debian-root -U clear -E root_owner=0:0 -d "$tree" "$part_root" "${root_mib}M"

raw="$work/disk.raw"
truncate -s "${disk_mib}M" "$raw"
printf 'label: dos\nlabel-id: %s\nstart=2048, size=%d, type=c, bootable\nstart=%d, type=83\n' \
  "$label_id" $((boot_mib * 2048)) $(((1 + boot_mib) * 2048)) | sfdisk -q "$raw" >/dev/null
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$part_boot" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$part_root" of="$raw" bs=1M seek=$((1 + boot_mib)) conv=notrunc,sparse status=none
rm -f "$part_boot" "$part_root"
log "compressing"
qemu-img convert -q -c -f raw -O qcow2 "$raw" "$work/debian-12.qcow2"
rm -f "$raw"

pkg_json=$(awk '{printf "%s\"%s\": \"%s\"", (NR > 1 ? ", " : ""), $1, $2}' <<<"$versions")
cat > "$work/manifest.json" <<EOF
{
  "hash": "$hash",
  "image": "debian-12.qcow2",
  "format": "qcow2",
  "virtualBytes": $((disk_mib * 1024 * 1024)),
  "kernelRelease": "$kver",
  "cmdline": "$cmdline",
  "defaultUser": "debian",
  "packages": { $pkg_json },
  "builtAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
rm -rf "$tree"
mkdir -p "$out.new"
mv "$work/debian-12.qcow2" "$work/manifest.json" "$out.new/"
rm -rf "$out"
mv "$out.new" "$out"
ln -sfn "$hash" "$cache/current"
find "$cache" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9a-f]\{16\}' ! -name "$hash" -mtime +2 -exec rm -rf {} +
log "built $out in $((SECONDS - started)) s ($(du -h "$out/debian-12.qcow2" | cut -f1) qcow2)"
echo "$out"
