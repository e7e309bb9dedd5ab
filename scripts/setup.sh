#!/usr/bin/env bash
# Installs everything Shipmate needs on a fresh machine, into the project's own
# virtualenv (.venv); nothing goes into the machine's Python. Idempotent: a second
# run only checks. Usage: scripts/setup.sh [--dev]   (--dev adds what the tests need)
set -euo pipefail
cd "$(dirname "$0")/.."

want_dev=0
[[ "${1:-}" == "--dev" ]] && want_dev=1

apt_packages=()
# Node.js and npm build the web console (console/) at set-up; nothing needs them at run time.
command -v npm >/dev/null || apt_packages+=(nodejs npm)
if [[ $want_dev == 1 ]]; then
    # dockerd for the Docker plugin's tests, debootstrap to build a base image
    # without a registry, chromium for the web UI's browser tests.
    command -v dockerd >/dev/null || apt_packages+=(docker.io)
    command -v debootstrap >/dev/null || apt_packages+=(debootstrap)
    command -v chromium >/dev/null || apt_packages+=(chromium)
    command -v wrk >/dev/null || apt_packages+=(wrk)
    command -v openssl >/dev/null || apt_packages+=(openssl)  # certificates for the RabbitMQ TLS tests
fi
if ((${#apt_packages[@]})); then
    echo "setup: installing Debian packages: ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

venv=.venv
if [[ ! -x $venv/bin/python ]]; then
    echo "setup: creating the project virtualenv $venv"
    python3 -m venv "$venv"
fi

extras=""
[[ $want_dev == 1 ]] && extras="[dev]"
stamp=".cache/setup-stamp$extras"
mkdir -p .cache
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]] || ! "$venv/bin/python" -c "import shipmate" 2>/dev/null; then
    echo "setup: installing shipmate$extras and its Python dependencies into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".$extras"
    touch "$stamp"
fi

# The web console's browser side (console/): built from the npm registry into the Python package,
# so the installed service serves it with no Node.js at run time. Rebuilt when its sources change.
if [[ -f console/package-lock.json ]]; then
    built=src/shipmate/server/ui/static/console.js
    if [[ ! -d console/node_modules || console/package-lock.json -nt console/node_modules ]]; then
        echo "setup: installing the web console's npm packages (npm ci)"
        (cd console && npm ci --no-audit --no-fund --loglevel=error)
    fi
    if [[ ! -f $built ]] || [[ -n $(find console/src console/package.json console/package-lock.json console/vite.config.ts -newer "$built" 2>/dev/null | head -1) ]]; then
        echo "setup: building the web console"
        (cd console && npm run --silent build >/dev/null)
    fi
fi
