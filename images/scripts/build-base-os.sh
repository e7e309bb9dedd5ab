#!/usr/bin/env bash
# Builds the local base OS image (minimal Debian + Python 3) with
# debootstrap and `docker import`, because no image registry is reachable here.
#
# Cached twice, keyed by a recipe hash (release + package list + this script):
#   1. the image itself, tagged $BASE_OS_IMAGE and labelled with the hash: reused as is;
#   2. the root filesystem tarball under $CACHE_DIR: re-imported in seconds if the
#      engine's images were wiped.
# The mirror is read from this machine's apt sources (scripts/debian-mirror.sh).
#
# Env: BASE_OS_IMAGE (default shipmate/debian-base:bookworm), RELEASE (default host's),
#      CACHE_DIR (default <repo>/.cache/images), FORCE=1 to rebuild.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
release="${RELEASE:-$(. /etc/os-release && echo "${VERSION_CODENAME}")}"
image="${BASE_OS_IMAGE:-shipmate/debian-base:$release}"
cache_dir="${CACHE_DIR:-$repo/.cache/images}"
# python3-venv: the images install Shipmate into a venv (Debian's python is
# externally managed); tini: PID 1 that reaps and forwards signals.
packages="python3,python3-venv,ca-certificates,tini"

recipe="$( (echo "$release $packages"; cat "$0") | sha256sum | cut -c1-16)"
tarball="$cache_dir/debian-$release-$recipe.tar"

log() { echo "build-base-os: $*" >&2; }

if [[ "${FORCE:-0}" != 1 ]] && [[ "$(docker image inspect -f '{{ index .Config.Labels "org.shipmate.recipe" }}' "$image" 2>/dev/null)" == "$recipe" ]]; then
    log "$image is up to date (recipe $recipe), reusing it"
    exit 0
fi

command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install -y debootstrap)"; exit 1; }
mkdir -p "$cache_dir"
started=$SECONDS
if [[ "${FORCE:-0}" == 1 || ! -s "$tarball" ]]; then
    mirror="$("$here/debian-mirror.sh" "$release")"
    rootfs="$(mktemp -d "$cache_dir/rootfs.XXXXXX")"
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap $release from $mirror into $rootfs (packages: $packages)"
    debootstrap --variant=minbase --include="$packages" "$release" "$rootfs" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 \
        || { log "debootstrap failed, see $cache_dir/debootstrap.log"; tail -20 "$cache_dir/debootstrap.log" >&2; exit 1; }
    # Slim it: no apt lists, docs, man pages or locales the images never read.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
        "$rootfs"/var/log/*.log
    tar --numeric-owner -C "$rootfs" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    log "root filesystem ready in $((SECONDS - started)) s: $tarball ($(du -h "$tarball" | cut -f1))"
else
    log "reusing cached root filesystem $tarball"
fi

docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change "LABEL org.shipmate.recipe=$recipe org.shipmate.role=base-os" \
    --change 'CMD ["/bin/bash"]' \
    "$tarball" "$image" >/dev/null
log "imported $image (recipe $recipe) in $((SECONDS - started)) s total"
