"""The documentation's sample plugin, written as the documentation describes it.

Each deployment is a small YAML record in ``stateDir`` (from the private config);
the model file named by ``modelArtifact`` must exist. It shows every action of
the contract and nothing else; see ``examples/custom_plugin`` for a plugin
written against DataRobot's package paths.
"""

from __future__ import annotations

import os

import yaml

from shipmate.plugin import ActionStatus, ActionStatusInfo, BosunPluginBase, DeploymentState


class SamplePlugin(BosunPluginBase):
    def __init__(self, plugin_config, private_config_file=None, pe_info=None, dry_run=False):
        super().__init__(plugin_config, private_config_file, pe_info, dry_run)
        settings = {}
        if private_config_file:
            with open(private_config_file, encoding="utf-8") as handle:
                settings = yaml.safe_load(handle) or {}
        self.state_dir = os.path.abspath(settings.get("stateDir", "./sample_state"))

    def _record(self, deployment_id):
        return os.path.join(self.state_dir, f"{deployment_id}.yaml")

    def plugin_start(self):
        os.makedirs(self.state_dir, exist_ok=True)
        return ActionStatusInfo(ActionStatus.OK, msg=f"state kept in {self.state_dir}")

    def plugin_stop(self):
        return ActionStatusInfo(ActionStatus.OK)

    def deployment_list(self):
        deployments = {}
        if os.path.isdir(self.state_dir):
            for name in sorted(os.listdir(self.state_dir)):
                if name.endswith(".yaml"):
                    with open(os.path.join(self.state_dir, name), encoding="utf-8") as handle:
                        record = yaml.safe_load(handle)
                    deployments[record["id"]] = record
        return ActionStatusInfo(ActionStatus.OK, msg=f"{len(deployments)} deployments", data=deployments)

    def deployment_start(self, deployment_info):
        if not deployment_info.model_artifact or not os.path.isfile(deployment_info.model_artifact):
            return ActionStatusInfo(
                ActionStatus.ERROR,
                msg=f"model artifact {deployment_info.model_artifact} not found",
                state=DeploymentState.ERRORED,
            )
        os.makedirs(self.state_dir, exist_ok=True)
        record = {
            "id": deployment_info.id,
            "modelId": deployment_info.current_model_id,
            "modelArtifact": str(deployment_info.model_artifact),
            "keyValueConfig": deployment_info.key_value_config,
        }
        with open(self._record(deployment_info.id), "w", encoding="utf-8") as handle:
            yaml.safe_dump(record, handle)
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=f"deployment {deployment_info.id} started",
            state=DeploymentState.READY,
            data={"currentModelId": deployment_info.current_model_id},
        )

    def deployment_stop(self, deployment_info):
        if os.path.exists(self._record(deployment_info.id)):
            os.remove(self._record(deployment_info.id))
        return ActionStatusInfo(ActionStatus.OK, msg="stopped", state=DeploymentState.STOPPED)

    def deployment_replace_model(self, deployment_info):
        if not os.path.exists(self._record(deployment_info.id)):
            return ActionStatusInfo(ActionStatus.ERROR, msg="not running", state=DeploymentState.ERRORED)
        return self.deployment_start(deployment_info)

    def pe_status(self):
        if not os.path.isdir(self.state_dir):
            return ActionStatusInfo(ActionStatus.ERROR, msg=f"{self.state_dir} is missing: run plugin_start")
        statuses = {}
        for deployment_id in self.pe_info.deployment_ids if self.pe_info else []:
            statuses[deployment_id] = self._status(deployment_id).to_dict()
        return ActionStatusInfo(
            ActionStatus.OK, msg="environment is fine", data={"deploymentsStatus": statuses}
        )

    def deployment_status(self, deployment_info):
        return self._status(deployment_info.id)

    def _status(self, deployment_id):
        if not os.path.exists(self._record(deployment_id)):
            return ActionStatusInfo(ActionStatus.ERROR, msg="not running", state=DeploymentState.ERRORED)
        with open(self._record(deployment_id), encoding="utf-8") as handle:
            record = yaml.safe_load(handle)
        return ActionStatusInfo(
            ActionStatus.OK,
            msg="running",
            state=DeploymentState.READY,
            data={"currentModelId": record["modelId"]},
        )
