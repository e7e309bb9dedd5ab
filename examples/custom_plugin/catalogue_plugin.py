"""A custom plugin written for DataRobot's ``datarobot-bosun`` package, run unchanged by Shipmate.

It imports the SDK from the package's module paths and takes the deployment id in
``deployment_stop``, as that package's base class declares. Shipmate's runner
answers those imports with its own SDK when the package is not installed, and
passes the id string because the parameter is named ``deployment_id``.

What it does: keeps a JSON catalogue of deployments (one file, replaced
atomically) that a home-grown serving layer could read. Private config::

    catalogueFile: /var/lib/models/catalogue.json   # required
    predictionUrlTemplate: "http://127.0.0.1:8080/{deployment_id}/predict"   # optional
"""

import json
import os
import tempfile

import yaml
from bosun.plugin.action_status import ActionDataFields, ActionStatus, ActionStatusInfo
from bosun.plugin.bosun_plugin_base import BosunPluginBase
from bosun.plugin.constants import DeploymentState
from bosun.plugin.deployment_info import DeploymentInfo


class CataloguePlugin(BosunPluginBase):
    def __init__(self, plugin_config, private_config_file, pe_info, dry_run):
        super().__init__(plugin_config, private_config_file, pe_info, dry_run)
        with open(private_config_file, encoding="utf-8") as handle:
            settings = yaml.safe_load(handle) or {}
        if not settings.get("catalogueFile"):
            raise ValueError(f"catalogueFile is required in {private_config_file}")
        self.catalogue_file = settings["catalogueFile"]
        self.url_template = settings.get("predictionUrlTemplate")

    # -- the catalogue --------------------------------------------------------------

    def _load(self):
        try:
            with open(self.catalogue_file, encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return {}

    def _save(self, catalogue):
        directory = os.path.dirname(os.path.abspath(self.catalogue_file))
        fd, aside = tempfile.mkstemp(dir=directory, prefix=".catalogue-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(catalogue, handle, indent=2, sort_keys=True)
        os.replace(aside, self.catalogue_file)

    def _entry_status(self, deployment_id, catalogue):
        entry = catalogue.get(deployment_id)
        if entry is None:
            return ActionStatusInfo(
                ActionStatus.ERROR, msg="not in the catalogue", state=DeploymentState.ERROR
            )
        if not os.path.isfile(entry["model"]):
            return ActionStatusInfo(
                ActionStatus.ERROR, msg=f"model file {entry['model']} is gone", state=DeploymentState.ERROR
            )
        return ActionStatusInfo(
            ActionStatus.OK,
            msg="in the catalogue",
            state=DeploymentState.READY,
            data={ActionDataFields.CURRENT_MODEL_ID: entry["modelId"]},
        )

    # -- actions --------------------------------------------------------------------

    def plugin_start(self):
        directory = os.path.dirname(os.path.abspath(self.catalogue_file))
        if not os.access(directory, os.W_OK):
            return ActionStatusInfo(ActionStatus.ERROR, msg=f"cannot write in {directory}")
        if not os.path.exists(self.catalogue_file):
            self._save({})
        return ActionStatusInfo(ActionStatus.OK, msg=f"catalogue {self.catalogue_file}")

    def plugin_stop(self):
        return ActionStatusInfo(ActionStatus.OK)

    def pe_status(self):
        catalogue = self._load()
        statuses = {}
        for deployment in self._pe_info.deployments if self._pe_info else []:
            deployment_id = deployment if isinstance(deployment, str) else deployment.id
            statuses[deployment_id] = self._entry_status(deployment_id, catalogue).to_dict()
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=f"{len(catalogue)} deployments in the catalogue",
            data={ActionDataFields.DEPLOYMENTS_STATUS: statuses},
        )

    def deployment_list(self):
        catalogue = self._load()
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=f"Number of deployments: {len(catalogue)}",
            data={dep_id: self._entry_status(dep_id, catalogue).to_dict() for dep_id in catalogue},
        )

    def deployment_start(self, deployment_info: DeploymentInfo):
        if not deployment_info.model_artifact or not os.path.isfile(deployment_info.model_artifact):
            return ActionStatusInfo(
                ActionStatus.ERROR,
                msg=f"model artifact {deployment_info.model_artifact} does not exist",
                state=DeploymentState.ERROR,
            )
        catalogue = self._load()
        catalogue[deployment_info.id] = {
            "modelId": deployment_info.current_model_id,
            "model": os.path.abspath(str(deployment_info.model_artifact)),
            "settings": deployment_info.kv_config,
        }
        self._save(catalogue)
        data = {ActionDataFields.CURRENT_MODEL_ID: deployment_info.current_model_id}
        if self.url_template:
            data[ActionDataFields.PREDICTION_URL] = self.url_template.format(deployment_id=deployment_info.id)
        return ActionStatusInfo(ActionStatus.OK, state=DeploymentState.READY, data=data)

    def deployment_stop(self, deployment_id: str):
        catalogue = self._load()
        if catalogue.pop(deployment_id, None) is not None:
            self._save(catalogue)
        return ActionStatusInfo(
            ActionStatus.OK, msg=f"{deployment_id} removed", state=DeploymentState.STOPPED
        )

    def deployment_replace_model(self, deployment_info: DeploymentInfo):
        if deployment_info.id not in self._load():
            return ActionStatusInfo(
                ActionStatus.ERROR, msg="not in the catalogue", state=DeploymentState.ERROR
            )
        return self.deployment_start(deployment_info)

    def deployment_status(self, deployment_info: DeploymentInfo):
        return self._entry_status(deployment_info.id, self._load())
