"""Commented sample action configs, for ``bosun-plugin-runner --gen-config ACTION``.

Each sample is a complete config that runs as is against the ``test`` plugin,
and shows every field the action reads, with a comment saying what it is for.
"""

from __future__ import annotations

from shipmate.plugin.actions import Action

_HEADER = """\
# Sample action config for {action}, written by bosun-plugin-runner --gen-config.
# The management agent writes this file itself; write one by hand to run an action
# while developing a plugin:
#   bosun-plugin-runner --plugin P --config THIS_FILE --action {action} --status-file S
"""

_PLUGIN_CONFIG = """
# General information about the plugin and its prediction environment (passed to the constructor).
pluginConfig:
  MLOPS_BOSUN_PRED_ENV_TYPE: "ExternalCommand"     # the environment's type
  MLOPS_BOSUN_PRED_ENV_PLATFORM: "os"              # the environment's platform
  MLOPS_BOSUN_PRED_ENV_ID: "pe-1"                  # id of the prediction environment
  MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING: false    # whether deployments report monitoring data
  MLOPS_BOSUN_MONITORING_URL: "http://127.0.0.1:8000"  # the control-plane service's URL
  # the API token is not written here: the runner reads it from $MLOPS_API_TOKEN (mlopsApiToken)
"""

_PE_INFO = """
# The prediction environment this action refers to.
peInfo:
  id: "pe-1"
  name: "sample-environment"
  description: "a sample prediction environment"
  createdOn: "2024-01-01T00:00:00+00:00"   # ISO-8601
  createdBy: "someone"
  # deployments whose status pe_status should report too: ids, or full deploymentInfo mappings
  deployments: {deployments}
  keyValueConfig: {{}}
"""

_PE_INFO_NULL = """
# The prediction environment; may be null for {action}.
peInfo: null
"""

_DEPLOYMENT_INFO = """
# The deployment this action works on.
deploymentInfo:
  id: "deployment-1"
  name: "deployment-1"
  description: "a sample deployment"
  modelId: "model-A"                     # the model the deployment serves
  modelExecutionType: "dedicated"        # dedicated | custom_inference_model | external
  modelFormat: "datarobot"               # datarobot (.mlpkg) | datarobotScoringCode (.jar)
  # where the agent has placed the model package before the action runs
  modelArtifact: "/tmp/model-A.mlpkg"{new_model}
  keyValueConfig:                        # deployment settings, free-form (e.g. replicas, port)
    key1: "some-value-for-key-1"
"""

_NEW_MODEL = """
  newModelId: "model-B"                  # the model that replaces modelId"""

_ENDPOINT_INFO = """
# The endpoint this action works on.
endpointInfo:
  id: "endpoint-1"
  name: "endpoint-1"
  endpointType: "online"
  predictionEnvironmentId: "pe-1"
  authType: "key"
  tags: {}
  trafficSplit:
    deployment-1: 100
"""


def sample_config(action: Action | str) -> str:
    """The commented sample config text for ``action``."""
    from shipmate.plugin.actions import parse_action

    parsed = parse_action(str(action))
    parts = [_HEADER.format(action=parsed.value), _PLUGIN_CONFIG]
    if parsed in (Action.PLUGIN_START, Action.PLUGIN_STOP):
        parts.append(_PE_INFO_NULL.format(action=parsed.value))
    else:
        deployments = '["deployment-1"]' if parsed is Action.PE_STATUS else "[]"
        parts.append(_PE_INFO.format(deployments=deployments))
    if parsed.needs_deployment_info:
        new_model = _NEW_MODEL if parsed is Action.DEPLOYMENT_REPLACE_MODEL else ""
        parts.append(_DEPLOYMENT_INFO.format(new_model=new_model))
    if parsed.needs_endpoint_info:
        parts.append(_ENDPOINT_INFO)
    return "".join(parts)
