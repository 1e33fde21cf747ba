#!/usr/bin/env bash
# Builds the KeyVirt test guest: the Debian kernel as a bootable ELF vmlinux plus a
# busybox initramfs with the virtio modules, qemu-ga, the NoCloud seed reader and the
# counter / dirtying workloads (see docs/adr/0030-test-guest.md).
#
# The result is cached under hack/.cache/guest/<hash>/, the hash covering this
# script, everything under hack/guest/, the kernel package version and the exact
# busybox / qemu-ga / library files copied in. A cached build costs ~0.2 s.
# Prints the build directory: vmlinux, initramfs.cpio.gz and cmdline for a direct kernel
# boot, disk.qcow2 (the same kernel and initramfs behind syslinux on a bootable disk),
# manifest.json.
#
# Usage: hack/guest/build.sh [--force]
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache="$root/hack/.cache/guest"
force=0
[ "${1:-}" = "--force" ] && force=1

log() { echo "guest-build: $*" >&2; }
die() { log "error: $*"; exit 1; }

busybox_bin=/bin/busybox
qemu_ga_bin=/usr/sbin/qemu-ga
# (no `cmd | grep -q` under pipefail: grep exiting early would fail the pipeline)
[ -x "$busybox_bin" ] && grep -qx init <<<"$("$busybox_bin" --list)" || die "busybox-static is not installed"
[ -x "$qemu_ga_bin" ] || die "qemu-guest-agent is not installed"
for tool in syslinux mkfs.vfat mcopy sfdisk; do command -v "$tool" >/dev/null || die "$tool is not installed (hack/bootstrap.sh)"; done
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || die "syslinux-common is not installed (hack/bootstrap.sh)"

# The kernel: whatever linux-image-amd64 currently points to. apt-cache takes
# seconds on a busy machine, so the answer is remembered until the package lists change.
mkdir -p "$cache"
lists_stamp=$(find /var/lib/apt/lists -maxdepth 1 -name "*Packages*" -printf "%T@\n" 2>/dev/null | sort -n | tail -n1)
resolved="$cache/.kernel-package"
if [ "$(sed -n 1p "$resolved" 2>/dev/null)" != "$lists_stamp" ]; then
  meta=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null || true)
  kernel_pkg=$(awk '/^Depends:/ {print $2; exit}' <<<"$meta")
  kernel_pkg_version=$(awk '/^Version:/ {print $2; exit}' <<<"$meta")
  [ -n "$kernel_pkg" ] && [ -n "$kernel_pkg_version" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
  printf '%s\n%s\n%s\n' "$lists_stamp" "$kernel_pkg" "$kernel_pkg_version" > "$resolved.$$"
  mv "$resolved.$$" "$resolved"
fi
kernel_pkg=$(sed -n 2p "$resolved")
kernel_pkg_version=$(sed -n 3p "$resolved")

# Shared libraries qemu-ga needs, with the dynamic loader (absolute paths from ldd).
mapfile -t qemu_ga_libs < <(ldd "$qemu_ga_bin" | awk '/=> \// {print $3} /^[[:space:]]*\/[^ ]+ \(/ {print $1}' | sort -u)
((${#qemu_ga_libs[@]} > 0)) || die "ldd found no libraries for $qemu_ga_bin"

input_hash() {
  {
    echo "kernel $kernel_pkg $kernel_pkg_version"
    dpkg-query -W -f='${Version}\n' e2fsprogs 2>/dev/null || true
    gcc -dumpfullversion
    sha256sum /usr/lib/syslinux/mbr/mbr.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$(command -v syslinux)" "$(command -v mkfs.vfat)"
    (cd "$here" && find . -path ./debian -prune -o -type f ! -name '*.md' -print0 | sort -z | xargs -0 sha256sum)
    sha256sum "$busybox_bin" "$qemu_ga_bin" "${qemu_ga_libs[@]}"
  } | sha256sum | cut -c1-16
}
hash=$(input_hash)
out="$cache/$hash"
if ((!force)) && [ -f "$out/manifest.json" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if ((!force)) && [ -f "$out/manifest.json" ]; then
  echo "$out"
  exit 0
fi
started=$(date +%s)
work=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- vmlinux: the ELF inside the bzImage, found the way scripts/extract-vmlinux does:
# look for each compressor's magic, decompress from there, keep the first ELF. ---
is_elf() { [ "$(head -c4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }
extract_vmlinux() {
  local img=$1 dest=$2 magic tool off
  for pair in '\x1f\x8b\x08|gunzip' '\xfd7zXZ\x00|unxz' '\x28\xb5\x2f\xfd|unzstd' \
    'BZh|bunzip2' '\x5d\x00\x00\x00|unlzma' '\x89\x4c\x5a|lzop -d' '\x02\x21\x4c\x18|lz4 -d'; do
    magic=${pair%%|*}
    tool=${pair#*|}
    command -v "${tool%% *}" >/dev/null || continue
    for off in $(grep -obUaP "$magic" "$img" | cut -d: -f1); do
      tail -c "+$((off + 1))" "$img" | $tool -c > "$dest" 2>/dev/null || true
      if [ -s "$dest" ] && is_elf "$dest"; then
        log "vmlinux: $tool payload at offset $off"
        return 0
      fi
    done
  done
  return 1
}

# --- kernel layer: the package unpacked, vmlinux extracted, modules.dep generated;
# kept per package version so that changes to the initramfs rebuild in seconds ---
kernel_dir="$cache/kernel/${kernel_pkg}_${kernel_pkg_version//:/_}"
if [ ! -f "$kernel_dir/vmlinux" ]; then
  debs="$cache/debs"
  mkdir -p "$debs" "$cache/kernel"
  deb=$(ls "$debs/${kernel_pkg}_${kernel_pkg_version//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$deb" ]; then
    log "downloading $kernel_pkg $kernel_pkg_version"
    (cd "$debs" && apt-get download -q "$kernel_pkg=$kernel_pkg_version" >/dev/null 2>"$work/apt.log") ||
      { cat "$work/apt.log" >&2; die "apt-get download $kernel_pkg failed"; }
    deb=$(ls "$debs/${kernel_pkg}_"*.deb | head -n1)
  fi
  log "unpacking $(basename "$deb")"
  rm -rf "$kernel_dir.tmp"
  mkdir -p "$kernel_dir.tmp"
  dpkg-deb -x "$deb" "$kernel_dir.tmp/pkg"
  kver=$(ls "$kernel_dir.tmp/pkg/lib/modules")
  vmlinuz="$kernel_dir.tmp/pkg/boot/vmlinuz-$kver"
  [ -f "$vmlinuz" ] || die "no vmlinuz in $deb"
  depmod -b "$kernel_dir.tmp/pkg" "$kver"
  extract_vmlinux "$vmlinuz" "$kernel_dir.tmp/vmlinux" || die "no ELF kernel found inside $vmlinuz"
  rm -rf "$kernel_dir"
  mv "$kernel_dir.tmp" "$kernel_dir"
  rm -f "$deb"
fi
kver=$(ls "$kernel_dir/pkg/lib/modules")
ln -f "$kernel_dir/vmlinux" "$work/vmlinux" 2>/dev/null || cp "$kernel_dir/vmlinux" "$work/vmlinux"

# --- initramfs tree ---
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,run,tmp,root,mnt,var/log}
cp -a "$here/rootfs/." "$rootfs/"
mkdir -p "$rootfs/usr/lib"
cp "$rootfs/etc/os-release" "$rootfs/usr/lib/os-release"
ln -s /run "$rootfs/var/run"

cp "$busybox_bin" "$rootfs/bin/busybox"
while read -r applet; do
  case "$applet" in usr/*|bin/*|sbin/*) ;; *) continue ;; esac
  [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done < <("$busybox_bin" --list-full)
ln -sf /bin/busybox "$rootfs/init"

cp "$qemu_ga_bin" "$rootfs/usr/sbin/qemu-ga"
for lib in "${qemu_ga_libs[@]}"; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
# the loader's canonical path, whatever ldd printed
[ -e "$rootfs/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$rootfs/lib64/"

for prog in kv-counter kv-dirty kv-powerbutton kv-modload; do
  gcc -O2 -Wall -Wextra -Werror -static -s -o "$work/$prog" "$here/src/$prog.c"
done
install -m 0755 "$work/kv-counter" "$rootfs/bin/kv-counter"
install -m 0755 "$work/kv-dirty" "$rootfs/bin/dirty"
install -m 0755 "$work/kv-powerbutton" "$rootfs/sbin/kv-powerbutton"
install -m 0755 "$work/kv-modload" "$rootfs/sbin/kv-modload"

# --- modules: wanted list closed over modules.dep, dependencies first ---
moddir="$kernel_dir/pkg/lib/modules/$kver"
declare -A mod_path=() mod_deps=() mod_done=()
while IFS=: read -r path deps; do
  name=$(basename "$path")
  name=${name%%.ko*}
  mod_path[$name]=$path
  mod_deps[$name]=$deps
done < "$moddir/modules.dep"
load_order=()
visit() {
  local name=$1 dep dep_name
  [ -n "${mod_done[$name]:-}" ] && return 0
  mod_done[$name]=1
  [ -n "${mod_path[$name]:-}" ] || die "module $name is not in $kernel_pkg"
  for dep in ${mod_deps[$name]}; do
    dep_name=$(basename "$dep")
    visit "${dep_name%%.ko*}"
  done
  load_order+=("$name")
}
while read -r wanted; do
  wanted=${wanted%%#*}
  wanted=${wanted//[[:space:]]/}
  [ -n "$wanted" ] && visit "$wanted"
done < "$here/modules.txt"
# Debian signs its modules; checking the signatures costs about a second of emulated
# boot time and buys nothing in a throwaway test guest, so the appended signature
# (payload, struct module_signature, magic) is cut off. The kernel loads unsigned
# modules (no sig_enforce, no lockdown) and marks itself tainted 'E'.
sig_magic='~Module signature appended~'
strip_signature() {
  local file=$1 size sig_len
  size=$(stat -c %s "$file")
  ((size > 40)) || return 0
  [ "$(dd if="$file" bs=1 skip=$((size - 28)) count=27 status=none)" = "$sig_magic" ] || return 0
  # struct module_signature is 12 bytes before the 28-byte magic; sig_len is its last 4 (big endian)
  sig_len=$(od -An -tu1 -j $((size - 32)) -N 4 "$file" | awk '{print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4}')
  truncate -s $((size - 28 - 12 - sig_len)) "$file"
}
mkdir -p "$rootfs/lib/modules/$kver"
: > "$rootfs/etc/keyvirt/modules.load"
for name in "${load_order[@]}"; do
  src="$moddir/${mod_path[$name]}"
  case "$src" in
    *.ko.xz) xz -dc "$src" > "$rootfs/lib/modules/$kver/$name.ko" ;;
    *.ko.zst) zstd -qdc "$src" > "$rootfs/lib/modules/$kver/$name.ko" ;;
    *.ko.gz) gzip -dc "$src" > "$rootfs/lib/modules/$kver/$name.ko" ;;
    *) cp "$src" "$rootfs/lib/modules/$kver/$name.ko" ;;
  esac
  strip_signature "$rootfs/lib/modules/$kver/$name.ko"
  echo "$kver/$name.ko" >> "$rootfs/etc/keyvirt/modules.load"
done
log "modules: ${load_order[*]}"

# /data: an ext2 image made here, copied onto a RAM disk at boot (making it in the
# guest would wait for the kernel's random pool, seconds under emulation)
mke2fs -q -F -t ext2 -L data -m 0 -E root_owner=0:0 "$rootfs/etc/keyvirt/data.ext2" 2048 >/dev/null

# device nodes the kernel needs before devtmpfs is mounted (console for init's stdio)
mknod -m 600 "$rootfs/dev/console" c 5 1
mknod -m 666 "$rootfs/dev/null" c 1 3

# --- pack ---
(cd "$rootfs" && find . -print0 | sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -6 > "$work/initramfs.cpio.gz"
cmdline="console=ttyS0 quiet panic=-1 scsi_mod.scan=sync mitigations=off clocksource=hpet no_timer_check i8042.noaux"
printf '%s\n' "$cmdline" > "$work/cmdline"

# --- the bootable disk: an MBR (syslinux's boot code) and one FAT partition holding
# syslinux, the compressed kernel (syslinux cannot load the ELF vmlinux), the same
# initramfs and the same command line. SeaBIOS boots it like any disk. ---
disk_mib=64
part_start_mib=1
cp "$kernel_dir/pkg/boot/vmlinuz-$kver" "$work/vmlinuz"
printf 'DEFAULT keyvirt\nPROMPT 0\nTIMEOUT 0\nLABEL keyvirt\n  LINUX /vmlinuz\n  INITRD /initrd.gz\n  APPEND %s\n' "$cmdline" > "$work/syslinux.cfg"
part="$work/boot.fat"
mkfs.vfat -C -n KVBOOT -i 4b564254 "$part" $(((disk_mib - part_start_mib) * 1024)) >/dev/null
syslinux --install "$part"
export MTOOLS_SKIP_CHECK=1
mcopy -i "$part" "$work/vmlinuz" ::/vmlinuz
mcopy -i "$part" "$work/initramfs.cpio.gz" ::/initrd.gz
mcopy -i "$part" "$work/syslinux.cfg" ::/syslinux.cfg
raw="$work/disk.raw"
truncate -s "${disk_mib}M" "$raw"
printf "label: dos\nlabel-id: 0x4b564254\nstart=%d, type=6, bootable\n" $((part_start_mib * 2048)) | sfdisk -q "$raw" >/dev/null
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$part" of="$raw" bs=1M seek="$part_start_mib" conv=notrunc,sparse status=none
qemu-img convert -q -f raw -O qcow2 "$raw" "$work/disk.qcow2"
rm -f "$part" "$raw" "$work/syslinux.cfg" "$work/vmlinuz"
busybox_version=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)
qemu_ga_version=$("$qemu_ga_bin" --version | awk 'NR == 1 {print $NF}')
cat > "$work/manifest.json" <<EOF
{
  "hash": "$hash",
  "kernel": "vmlinux",
  "initrd": "initramfs.cpio.gz",
  "disk": "disk.qcow2",
  "diskBytes": $((disk_mib * 1024 * 1024)),
  "cmdline": "$cmdline",
  "kernelRelease": "$kver",
  "kernelPackage": "$kernel_pkg",
  "kernelPackageVersion": "$kernel_pkg_version",
  "busyboxVersion": "$busybox_version",
  "qemuGaVersion": "$qemu_ga_version",
  "modules": [$(printf '"%s",' "${load_order[@]}" | sed 's/,$//')],
  "builtAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
mkdir -p "$out.new"
mv "$work/vmlinux" "$work/initramfs.cpio.gz" "$work/cmdline" "$work/disk.qcow2" "$out.new/"
mv "$work/manifest.json" "$out.new/manifest.json"
rm -rf "$out"
mv "$out.new" "$out"
ln -sfn "$hash" "$cache/current"
# builds nobody has produced for a few days go (a running test may still use a recent one)
find "$cache" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9a-f]\{16\}' ! -name "$hash" -mtime +2 -exec rm -rf {} +
log "built $out in $(($(date +%s) - started)) s ($(du -h "$out/vmlinux" | cut -f1) vmlinux, $(du -h "$out/initramfs.cpio.gz" | cut -f1) initramfs, $(du -h "$out/disk.qcow2" | cut -f1) disk)"
echo "$out"
