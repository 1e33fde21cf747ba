#!/usr/bin/env bash
# mmdebstrap customize hook for the Debian guest image: runs on the build host with the
# unpacked tree as $1, before the tree becomes the image's root file system.
set -euo pipefail
tree=$1
root_partuuid=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

printf 'PARTUUID=%s / ext4 defaults,errors=remount-ro 0 1\n' "$root_partuuid" > "$tree/etc/fstab"
echo debian > "$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$tree/etc/hosts"
# Every copy of the image is a new machine: its own machine-id and SSH host keys, made at first boot.
: > "$tree/etc/machine-id"
rm -f "$tree/var/lib/dbus/machine-id" "$tree"/etc/ssh/ssh_host_*
# cloud-init: NoCloud (the seed KeyVirt attaches), nothing else probed.
install -D -m 0644 "$here/cloud.cfg" "$tree/etc/cloud/cloud.cfg.d/90-keyvirt.cfg"
# The network: cloud-init renders its config (version 1 or 2; DHCP on the first NIC when
# none is given) for netplan, which hands it to systemd-networkd.
# Periodic jobs a short-lived guest has no use for.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
  ln -sf /dev/null "$tree/etc/systemd/system/$unit"
done
rm -rf "$tree/var/lib/apt/lists/"* "$tree/var/log/"*.log
