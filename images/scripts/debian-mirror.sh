#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt is configured with (first "deb" source
# whose suites include the release), so image builds never hard-code a host name.
# Usage: debian-mirror.sh [release]   (default: the host's VERSION_CODENAME)
set -euo pipefail
release="${1:-$(. /etc/os-release && echo "${VERSION_CODENAME}")}"

from_deb822() {
    # One stanza per blank-line-separated block: Types/URIs/Suites fields.
    awk -v rel="$release" '
        function flush() {
            if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " rel " ") && uris != "") { split(uris, u, " "); print u[1]; found = 1; exit }
            types = ""; uris = ""; suites = ""
        }
        /^[[:space:]]*$/ { flush(); next }
        /^Types:/  { sub(/^Types:[[:space:]]*/, "");  types = $0 }
        /^URIs:/   { sub(/^URIs:[[:space:]]*/, "");   uris = $0 }
        /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
        END { if (!found) flush() }
    ' "$@"
}

from_list() {
    # deb [options] URI suite components...
    awk -v rel="$release" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == rel) { print $i; exit } }' "$@"
}

mirror=""
shopt -s nullglob
sources=(/etc/apt/sources.list.d/*.sources)
lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
existing_lists=()
for f in "${lists[@]}"; do [[ -f $f ]] && existing_lists+=("$f"); done
if ((${#sources[@]})); then mirror="$(from_deb822 "${sources[@]}" || true)"; fi
if [[ -z $mirror ]] && ((${#existing_lists[@]})); then mirror="$(from_list "${existing_lists[@]}" || true)"; fi
if [[ -z $mirror ]]; then
    echo "debian-mirror: no apt source for release '$release' in /etc/apt/sources.list{,.d}" >&2
    exit 1
fi
echo "${mirror%/}"
