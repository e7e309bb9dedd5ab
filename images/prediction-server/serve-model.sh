#!/bin/sh
# Entry point of the prediction server image: serve what is under /opt/ml/model.
set -eu
if [ "$#" -gt 0 ]; then
    exec shipmate serve "$@"
fi
model_dir="${SHIPMATE_MODEL_DIR:-/opt/ml/model}"
port="${PORT:-8080}"
set -- "$model_dir"/*.mlpkg
if [ "$#" -gt 1 ]; then
    echo "shipmate-serve-model: $# packages in $model_dir; keep one, or pass --model <file>" >&2
    exit 64
fi
if [ -f "$1" ]; then
    exec shipmate serve --model "$1" --host 0.0.0.0 --port "$port"
fi
# No package at the top level: the multi-model layout (one directory per deployment).
exec shipmate serve --deployments-dir "$model_dir" --host 0.0.0.0 --port "$port"
