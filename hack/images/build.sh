#!/usr/bin/env bash
# Builds KeyVirt's container images with podman, from a Debian 12 base made here with
# mmdebstrap (nothing is pulled), each cached by the content hash of its inputs
# (docs/adr/0058-container-images.md, 0059-image-names-and-tags.md).
#
#   build.sh [IMAGE...]            builds (or finds) the images, prints "IMAGE REF" lines
#   build.sh export IMAGE FILE     writes IMAGE as a docker archive that
#                                  `ctr -n k8s.io images import FILE` and `podman load` accept
#   build.sh ref IMAGE             prints the reference the last build of IMAGE made
#   build.sh prune                 removes older builds (every content-hash tag but the last)
#
# IMAGE: pause, debian, node-runtime, operator, launcher, node-agent (default: pause
# operator launcher node-agent; node-runtime is the parent of the last three). Each
# image is tagged twice: REGISTRY/keyvirt/NAME:HASH (what `build.sh`
# prints and `ref` returns: the content hash of its inputs) and REGISTRY/keyvirt/NAME:VERSION
# (the chart's appVersion; pause: its upstream version). REGISTRY is
# $KEYVIRT_IMAGE_REGISTRY, default `localhost`.
set -euo pipefail
shopt -s inherit_errexit
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/hack/images"
# pause is built from the pinned Kubernetes module: go where hack/k8s/build.sh finds it.
export PATH=/usr/local/go/bin:$PATH
# shellcheck source=mmdebstrap-options.sh
. "$here/mmdebstrap-options.sh"
cache=${KEYVIRT_IMAGE_CACHE:-$root/hack/.cache/images}
registry=${KEYVIRT_IMAGE_REGISTRY:-localhost}
node="$root/node_modules/.bin/node"
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/keyvirt/Chart.yaml")
mkdir -p "$cache/refs"
# One build at a time per cache (suites, benchmarks and the real nodes may ask at once).
exec 9>"$cache/.lock"
flock 9

log() { printf 'images: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The first 16 hex digits of the sha256 of the given strings and files (names and contents).
content_hash() {
  local item
  for item in "$@"; do
    if [ -f "$item" ]; then printf 'file %s\n' "${item#"$root"/}"; cat "$item"; else printf 'text %s\n' "$item"; fi
  done | sha256sum | cut -c1-16
}

tag_and_record() { # name hash-ref version-tag
  podman tag "$2" "$registry/keyvirt/$1:$3"
  echo "$2" > "$cache/refs/$1"
  echo "$1 $2"
}

# podman build with the host's containers.conf and the build's own settings; no network
# unless a step names it (only the launcher's apt step does). Layers are cached: a
# launcher whose sources changed reuses its QEMU layer and adds only the new tree.
podman_build() { # ref containerfile context [extra podman build args...]
  local ref=$1 file=$2 context=$3; shift 3
  local started=$SECONDS
  podman build --quiet --pull=never --layers --network none --file "$file" --tag "$ref" "$@" "$context" >/dev/null
  log "built $ref in $((SECONDS - started)) s"
}

# --- pause: containerd's sandbox image ---------------------------------------------
build_pause() {
  # shellcheck source=../k8s/pins.env
  source "$root/hack/k8s/pins.env"
  local src gomod tag hash ref
  gomod=$(cd "$root" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  src="$gomod/build/pause"
  [ -f "$src/linux/pause.c" ] || die "no build/pause/linux/pause.c in k8s.io/kubernetes@$KUBERNETES_VERSION ($gomod)"
  tag=$(sed -n 's/^TAG ?= *//p' "$src/Makefile")
  hash=$(content_hash "$KUBERNETES_VERSION" "$tag" "$(gcc --version | head -1)" "$src/linux/pause.c" "$here/pause/Containerfile" "$(declare -f build_pause podman_build)")
  ref="$registry/keyvirt/pause:$hash"
  if ! podman image exists "$ref"; then
    local dir="$cache/pause-$hash"
    find "$cache" -maxdepth 1 -name 'pause-*' -exec rm -rf {} +
    mkdir -p "$dir"
    # Upstream's flags (build/pause/Makefile), the version stamped as upstream does.
    gcc -Os -Wall -Werror -static -DVERSION="v$tag-$KUBERNETES_VERSION" -o "$dir/pause" "$src/linux/pause.c"
    strip "$dir/pause"
    podman_build "$ref" "$here/pause/Containerfile" "$dir"
  fi
  tag_and_record pause "$ref" "$tag"
}

# --- debian: the base every other image starts from --------------------------------
debian_suite=bookworm
debian_mirror=http://deb.debian.org/debian
debian_security=http://deb.debian.org/debian-security
# The recipe alone (this function's text), so that an edit elsewhere in this file does not
# rebuild the base.
debian_hash() { content_hash "$debian_suite $debian_mirror $debian_security" "$(mmdebstrap --version)" "$(declare -f build_debian)" "$here/mmdebstrap-options.sh"; }

build_debian() {
  local hash ref archives
  hash=$(debian_hash)
  ref="$registry/keyvirt/debian:$hash"
  if ! podman image exists "$ref"; then
    # Downloaded .debs are kept in $cache/apt/archives: a rebuild installs from there.
    archives="$cache/apt/archives"
    mkdir -p "$archives"
    local tar="$cache/debian-$hash.tar" started=$SECONDS
    rm -f "$tar"
    mmdebstrap_options "$archives"
    mmdebstrap_sources "$debian_suite" "$debian_mirror" "$debian_security"
    mmdebstrap --quiet --variant=minbase --mode=root --format=tar "${mmdebstrap_opts[@]}" "$debian_suite" "$tar" "${mmdebstrap_srcs[@]}"
    podman import --quiet --change 'CMD ["/bin/bash"]' "$tar" "$ref" >/dev/null
    rm -f "$tar"
    log "built $ref in $((SECONDS - started)) s"
  fi
  tag_and_record debian "$ref" "$debian_suite"
}

# --- node-runtime: the pinned Node.js on the base, under every application image -----
# One image, so one layer: built once and named as the parent of the operator, node-agent
# and launcher images, the node binary is the same layer (the same file on a node) in all.
build_node_runtime() {
  local base bin hash ref
  base=$(build_debian | cut -d' ' -f2)
  bin=$(readlink -f "$node")
  hash=$(content_hash "$base" "$("$node" --version)" "$here/node-runtime/Containerfile" "$(declare -f build_node_runtime podman_build)")
  ref="$registry/keyvirt/node-runtime:$hash"
  if ! podman image exists "$ref"; then
    local dir="$cache/node-runtime-$hash"
    find "$cache" -maxdepth 1 -name 'node-runtime-*' -exec rm -rf {} +
    mkdir -p "$dir"
    cp "$bin" "$dir/node"
    podman_build "$ref" "$here/node-runtime/Containerfile" "$dir" --build-arg "BASE=$base"
    rm -rf "$dir"
  fi
  tag_and_record node-runtime "$ref" "$app_version"
}

# --- operator, node agent, launcher: Node.js applications on the node runtime -------
# The build context: the application tree (runtime-tree.ts).
app_context() { # kind hash -> prints the context directory
  local dir="$cache/context-$1-$2"
  # Only the current context of a kind is kept.
  find "$cache" -maxdepth 1 -name "context-$1-*" ! -name "context-$1-$2" -exec rm -rf {} +
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp"
    "$node" --no-warnings "$here/runtime-tree.ts" build "$1" "$dir.tmp/app"
    touch "$dir.tmp/.complete"
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

build_app() { # name kind containerfile [extra podman build args...]
  local name=$1 kind=$2 file=$3; shift 3
  local base tree hash ref
  base=$(build_node_runtime | cut -d' ' -f2)
  tree=$("$node" --no-warnings "$here/runtime-tree.ts" hash "$kind")
  hash=$(content_hash "$base" "$tree" "$("$node" --version)" "$file" "$(declare -f build_app app_context podman_build)" "$here/runtime-tree.ts")
  ref="$registry/keyvirt/$name:$hash"
  if ! podman image exists "$ref"; then
    local context; context=$(app_context "$kind" "$tree")
    podman_build "$ref" "$file" "$context" --build-arg "BASE=$base" "$@"
  fi
  tag_and_record "$name" "$ref" "$app_version"
}

# Images whose Containerfile installs Debian packages: the apt step has the host's
# network and the apt caches mounted, so a rebuild downloads nothing it has.
build_app_with_apt() { # name kind containerfile
  mkdir -p "$cache/apt/archives" "$cache/apt/lists"
  build_app "$1" "$2" "$3" \
    --network host --volume "$cache/apt/archives:/var/cache/apt/archives" --volume "$cache/apt/lists:/var/lib/apt/lists"
}

build_launcher() { build_app_with_apt launcher launcher "$root/launcher/Containerfile"; }

build_one() {
  case "$1" in
    pause) build_pause ;;
    debian) build_debian ;;
    node-runtime) build_node_runtime ;;
    operator) build_app operator operator "$root/operator/Containerfile" ;;
    node-agent) build_app_with_apt node-agent operator "$root/operator/src/node-agent/Containerfile" ;;
    launcher) build_launcher ;;
    *) die "unknown image $1 (pause, debian, node-runtime, operator, launcher, node-agent)" ;;
  esac
}

command -v podman >/dev/null || die "podman is missing: run hack/bootstrap.sh"
bash "$here/podman-host.sh"

case "${1:-}" in
  export)
    [ $# -eq 3 ] || die "usage: build.sh export IMAGE FILE"
    ref=$(build_one "$2" | cut -d' ' -f2)
    version_ref=$(podman image inspect --format '{{range .RepoTags}}{{println .}}{{end}}' "$ref" | grep -v -x -F "$ref" | grep "^${ref%:*}:" | head -1 || true)
    rm -f "$3"
    # A docker archive keeps names and tags; containerd 1.6 imports it as is, both tags.
    podman save --quiet --multi-image-archive --format docker-archive --output "$3" "$ref" ${version_ref:+"$version_ref"}
    echo "$2 $ref $3"
    ;;
  prune)
    # Removes every content-hash build but the last of each image (refs/; also builds of
    # other checkouts that share this host's podman), then layers no image uses.
    mapfile -t keep < <(cat "$cache"/refs/* 2>/dev/null)
    podman images --format '{{.Repository}}:{{.Tag}}' | grep -E "^$registry/keyvirt/[a-z-]+:[0-9a-f]{16}\$" |
      grep -v -x -F -f <(printf '%s\n' "${keep[@]}") | xargs -r podman rmi >/dev/null || true
    podman image prune --force >/dev/null
    ;;
  ref)
    [ $# -eq 2 ] || die "usage: build.sh ref IMAGE"
    [ -f "$cache/refs/$2" ] || die "$2 was never built: run hack/images/build.sh $2"
    cat "$cache/refs/$2"
    ;;
  *)
    images=("$@")
    ((${#images[@]})) || images=(pause operator launcher node-agent)
    for image in "${images[@]}"; do build_one "$image"; done
    ;;
esac
