# shellcheck shell=bash
# The mmdebstrap options every Debian tree here is built with (the images' base,
# hack/images/build.sh, and the Debian guest, hack/guest/debian/build.sh): no
# recommends, no documentation but the copyrights, no man pages or locales, and the
# downloaded .debs kept in a cache directory a rebuild installs from, so that it
# downloads only what changed. Sourced; the scripts that source it put it in their
# content hash.

# mmdebstrap_options <archives dir>: sets the array mmdebstrap_opts.
mmdebstrap_options() {
  mmdebstrap_opts=(
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
    --skip=essential/unlink
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
    --setup-hook="sync-in $1 /var/cache/apt/archives/"
    --customize-hook="sync-out /var/cache/apt/archives $1"
  )
}

# mmdebstrap_sources <suite> <mirror> <security mirror>: sets the array mmdebstrap_srcs
# (main from the suite, its updates and its security updates).
mmdebstrap_sources() {
  mmdebstrap_srcs=("deb $2 $1 main" "deb $2 $1-updates main" "deb $3 $1-security main")
}
