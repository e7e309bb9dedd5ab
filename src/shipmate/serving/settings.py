"""Settings of the prediction server, grouped and documented; built once at start and passed in.

Environment variables: ``SHIPMATE_SERVE_<FIELD>``, and the DataRobot PPS names where
they mean the same thing (``PREDICTION_API_MODEL_REPOSITORY_PATH``,
``MLOPS_DEPLOYMENT_ID``, ``MLOPS_MODEL_ID``, ``PREDICTION_API_WORKERS``), so the
server drops into a PPS container set-up unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1 << 20


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPMATE_SERVE_", populate_by_name=True, extra="forbid")

    # -- what to serve (exactly one of model / deployments_dir)
    model: Path | None = Field(default=None, description="A .mlpkg to serve alone (single-model mode).")
    deployments_dir: Path | None = Field(
        default=None, description="A directory in the filesystem plugin's layout (multi-model mode)."
    )
    model_repository: Path | None = Field(
        default=None,
        validation_alias=_env(
            "model_repository", "SHIPMATE_SERVE_MODEL_REPOSITORY", "PREDICTION_API_MODEL_REPOSITORY_PATH"
        ),
        description="PPS-style path: a .mlpkg file, a directory holding one (single mode), "
        "or a directory of deployment directories (multi mode).",
    )
    deployment_id: str | None = Field(
        default=None,
        validation_alias=_env("deployment_id", "SHIPMATE_SERVE_DEPLOYMENT_ID", "MLOPS_DEPLOYMENT_ID"),
        description="Single mode: the deployment id to report (default: the package's name).",
    )
    model_id: str | None = Field(
        default=None, validation_alias=_env("model_id", "SHIPMATE_SERVE_MODEL_ID", "MLOPS_MODEL_ID")
    )
    deployment_dir_prefix: str = Field(default="deployment_", description="Prefix of deployment directories.")
    deployment_info_file: str = Field(
        default="config.yml", description="Per-deployment YAML with deployment_id."
    )

    # -- HTTP
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        validation_alias=_env("workers", "SHIPMATE_SERVE_WORKERS", "PREDICTION_API_WORKERS"),
        description="Server processes sharing the port (default: one per CPU; see docs/serving.md).",
    )
    max_body_bytes: int = Field(default=50 * MIB, ge=1, description="Largest request body accepted, bytes.")
    fanout: bool = Field(
        default=True,
        description="With several workers, score a large batch on idle sibling workers too "
        "(cut into chunks of whole rows; see docs/serving.md).",
    )
    fanout_min_bytes: int = Field(
        default=128 * 1024, ge=1, description="Smallest request body worth cutting across workers, bytes."
    )
    association_id_column: str | None = Field(
        default=None,
        description="Internal: the request column monitoring records as association ids (set from "
        "the monitoring settings); decoders keep it beside the features.",
    )
    peer_dir: Path | None = Field(
        default=None, description="Internal: where workers find each other (made by the parent process)."
    )
    max_package_bytes: int = Field(default=2048 * MIB, ge=1, description="Largest package upload, bytes.")

    # -- access
    api_key: SecretStr | None = Field(
        default=None,
        description="Enables upload/delete and then requires it (header 'Authorization: Bearer <key>' "
        "or 'X-API-Key'). Without it those endpoints are disabled.",
    )
    require_key_for_predictions: bool = Field(
        default=False, description="Also require the API key on prediction and info endpoints."
    )
    allow_pickled_uploads: bool = Field(
        default=False,
        description="Accept uploads of packages whose models execute code when loaded (sklearn, MLflow, "
        "custom). Off: only ONNX, XGBoost and LightGBM packages can be uploaded over HTTP.",
    )

    # -- model lifecycle
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often the deployments dir is scanned, s."
    )
    unload_after_scans: int = Field(
        default=2, ge=1, description="Scans a deployment must be absent from before it is unloaded."
    )
    work_dir: Path | None = Field(
        default=None, description="Where packages are unpacked (default: a temp dir)."
    )
    log_level: str = "info"
    compile: bool = Field(
        default=True,
        description="Serve scikit-learn models through a compiled scorer once it is proven to give "
        "the model's own results (see docs/serving.md); off: always the model's own methods.",
    )

    # -- monitoring (shipmate.monitoring.settings reads the MLOPS_* variables and the PPS names)
    monitor_settings: str | None = Field(
        default=None,
        description="Monitoring settings string, e.g. 'spooler_type=FILESYSTEM;directory=/tmp/ta'.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ServeSettings:
        if self.model is None and self.deployments_dir is None and self.model_repository is not None:
            repo = self.model_repository
            packages = sorted(repo.glob("*.mlpkg")) if repo.is_dir() else []
            if repo.is_file():
                self.model = repo
            elif len(packages) == 1:
                self.model = packages[0]
            else:
                self.deployments_dir = repo
        if (self.model is None) == (self.deployments_dir is None):
            raise ValueError(
                "give exactly one of --model (single-model mode) or --deployments-dir (multi-model mode)"
            )
        if self.require_key_for_predictions and self.api_key is None:
            raise ValueError("require_key_for_predictions needs an api_key")
        if self.api_key is not None and len(self.api_key.get_secret_value()) < 16:
            raise ValueError("api_key must be at least 16 characters")
        return self

    @property
    def multi_model(self) -> bool:
        return self.deployments_dir is not None

    def effective_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)
