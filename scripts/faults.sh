#!/usr/bin/env bash
# The fault suite (tests/faults) with its figures printed: each test ends with one line starting
# "FAULT-FIGURES", the figures docs/reliability.md quotes. About 4 minutes on a 2-core machine
# (CI runs the same tests as part of scripts/test.sh, without -s).
#
# Longer or shorter runs through the environment, e.g.
#   SHIPMATE_FAULTS_LOAD_SECONDS=300 SHIPMATE_FAULTS_LIFECYCLES=200 scripts/faults.sh
# SHIPMATE_FAULTS_LOAD_SECONDS   prediction server under 200 clients (default 60)
# SHIPMATE_FAULTS_SWAP_SECONDS   seconds between model replacements meanwhile (default 1)
# SHIPMATE_FAULTS_OUTAGE_SECONDS database outage (default 30)
# SHIPMATE_FAULTS_BURST_SECONDS  write burst through two replicas (default 8)
# SHIPMATE_FAULTS_LIFECYCLES     agent lifecycles under SIGKILL on PostgreSQL (default 60)
# SHIPMATE_FAULTS_DOCKERD        1 (default here; off in CI): also restart a private dockerd under a
#                                running Docker environment (copies the images into it: about 4 min)
# Extra arguments go to pytest (e.g. scripts/faults.sh -k outage).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --dev >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
export SHIPMATE_FAULTS_DOCKERD="${SHIPMATE_FAULTS_DOCKERD:-1}"
exec python -m pytest tests/faults tests/plugins/docker/test_engine_faults.py -q -s -p no:cacheprovider \
    --durations=0 "$@"
