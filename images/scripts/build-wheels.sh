#!/usr/bin/env bash
# Builds the wheelhouse the images install from (`pip install --no-index`), since
# images cannot reach a package index at build time:
#   $WHEELHOUSE/deps/      every runtime dependency of shipmate + requirements.txt (pinned)
#   $WHEELHOUSE/shipmate/  the shipmate wheel built from this checkout
# The dependency wheels are cached, keyed by the dependency list in pyproject.toml;
# only the (small) shipmate wheel is rebuilt on every run.
# Env: WHEELHOUSE (default <repo>/.cache/wheels), PYTHON (default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
wheelhouse="${WHEELHOUSE:-$repo/.cache/wheels}"
python="${PYTHON:-python3}"
log() { echo "build-wheels: $*" >&2; }

mkdir -p "$wheelhouse/deps" "$wheelhouse/shipmate"
started=$SECONDS
# What the dependency wheels depend on: the declared runtime dependencies and the interpreter.
deps_key="$("$python" - "$repo/pyproject.toml" <<'PY'
import hashlib, sys, tomllib, platform
with open(sys.argv[1], "rb") as handle:
    deps = tomllib.load(handle)["project"]["dependencies"]
print(hashlib.sha256(repr((sorted(deps), platform.python_version_tuple()[:2])).encode()).hexdigest()[:16])
PY
)"
if [[ "$(cat "$wheelhouse/deps/.key" 2>/dev/null)" != "$deps_key" ]]; then
    log "building dependency wheels (key $deps_key) into $wheelhouse/deps"
    rm -f "$wheelhouse/deps/"*.whl "$wheelhouse/deps/.key"
    # `pip wheel .` resolves the dependencies exactly as an install would.
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$python" -m pip wheel --quiet --disable-pip-version-check -w "$tmp" "$repo"
    rm -f "$tmp"/shipmate-*.whl
    mv "$tmp"/*.whl "$wheelhouse/deps/"
    # Pin exactly the wheels present: name==version from each file name.
    for whl in "$wheelhouse/deps/"*.whl; do
        base="$(basename "$whl")"
        IFS=- read -r name version _ <<<"$base"
        echo "${name//_/-}==$version"
    done | sort >"$wheelhouse/deps/requirements.txt"
    echo "$deps_key" >"$wheelhouse/deps/.key"
    log "dependency wheels ready in $((SECONDS - started)) s ($(du -sh "$wheelhouse/deps" | cut -f1))"
else
    log "dependency wheels are up to date (key $deps_key)"
fi
# The build backend (hatchling) is kept in the wheelhouse too, so that rebuilding the
# shipmate wheel on a warm cache needs no package index at all.
build_key="$(grep -A3 '^\[build-system\]' "$repo/pyproject.toml" | sha256sum | cut -c1-16)"
if [[ "$(cat "$wheelhouse/build/.key" 2>/dev/null)" != "$build_key" ]]; then
    rm -rf "$wheelhouse/build" && mkdir -p "$wheelhouse/build"
    requires="$("$python" -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' "$repo/pyproject.toml")"
    # shellcheck disable=SC2086
    "$python" -m pip wheel --quiet --disable-pip-version-check -w "$wheelhouse/build" $requires
    echo "$build_key" >"$wheelhouse/build/.key"
fi
rm -f "$wheelhouse/shipmate/"*.whl
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-index --find-links "$wheelhouse/build" \
    -w "$wheelhouse/shipmate" "$repo"
log "shipmate wheel: $(basename "$wheelhouse"/shipmate/*.whl)"
