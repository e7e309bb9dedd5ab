#!/usr/bin/env bash
# Makes sure a Docker engine answers: does nothing when `docker info` works, else
# starts dockerd in the background (log under $CACHE_DIR) and waits for it.
# Exit 0 when the engine answers; 1 with the reason on stderr otherwise.
# Env: CACHE_DIR (default <repo>/.cache), DOCKERD_WAIT (seconds, default 60),
# DOCKERD_PIDFILE (when set and dockerd is started here, its pid is written there, so
# whoever asked, e.g. a test session, can stop what it started).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache_dir="${CACHE_DIR:-$repo/.cache}"
log() { echo "ensure-dockerd: $*" >&2; }

if docker info >/dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd >/dev/null; then
    log "dockerd is not installed (apt-get install -y docker.io)"
    exit 1
fi
if [[ $(id -u) != 0 ]]; then
    log "no engine answers and starting dockerd needs root"
    exit 1
fi
mkdir -p "$cache_dir"
logfile="$cache_dir/dockerd.log"
# setsid: the daemon outlives this script and whoever ran it (a test session).
setsid dockerd >>"$logfile" 2>&1 </dev/null &
deadline=$((SECONDS + ${DOCKERD_WAIT:-60}))
until docker info >/dev/null 2>&1; do
    if ! kill -0 $! 2>/dev/null; then
        log "dockerd exited during start-up; last lines of $logfile:"
        tail -n 15 "$logfile" >&2
        exit 1
    fi
    if ((SECONDS > deadline)); then
        log "dockerd did not answer within ${DOCKERD_WAIT:-60} s; see $logfile"
        exit 1
    fi
    sleep 0.5
done
if [[ -n ${DOCKERD_PIDFILE:-} ]]; then
    echo $! >"$DOCKERD_PIDFILE"
fi
log "started dockerd (pid $!), log $logfile"
