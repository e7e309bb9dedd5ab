#!/usr/bin/env bash
# The Docker plugin end to end through the documented runner (bosun-plugin-runner):
# build the images, start the environment, deploy a model, predict through the proxy,
# stop the deployment. Env: PLUGIN_CONFIG (default: plugin.docker.conf.yaml here),
# KEEP=1 to leave the deployment running, SKIP_IMAGES=1 when the images are built.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
config="${PLUGIN_CONFIG:-$here/plugin.docker.conf.yaml}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ "${SKIP_IMAGES:-0}" != 1 ]]; then
    make -s -C "$here/../../images" all >/dev/null
fi
python3 "$here/make_model.py" "$work/house-prices.mlpkg" >/dev/null

cat >"$work/action.yaml" <<YAML
pluginConfig: {name: docker-example, type: docker}
peInfo: {id: example-env, name: Docker example}
deploymentInfo:
  id: house-prices
  name: House prices
  modelId: model-1
  modelArtifact: $work/house-prices.mlpkg
  modelExecutionType: dedicated
YAML

run() {
    bosun-plugin-runner --plugin docker --private-config "$config" --config "$work/action.yaml" \
        --action "$1" --status-file "$work/status.yaml" --exit-codes >/dev/null
    python3 -c 'import sys, yaml; s = yaml.safe_load(open(sys.argv[1])); print(sys.argv[2] + ":", s["status"], s["msg"])' \
        "$work/status.yaml" "$1"
}

run plugin_start
run deployment_start
url="$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["predictionUrl"])' "$work/status.yaml")"
echo "prediction URL: $url"
curl -sS --fail --max-time 30 -X POST -H 'Content-Type: text/csv' --data-binary $'rooms,age,distance\n1.5,0.2,-1\n' "$url"
echo
run deployment_status
if [[ "${KEEP:-0}" != 1 ]]; then
    run deployment_stop
fi
