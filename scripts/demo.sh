#!/usr/bin/env bash
# The main job: service + agent + prediction server on embedded defaults, a sample
# model deployed and answering predictions. Extra arguments go to `shipmate demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/shipmate demo "$@"
