"""The filesystem plugin's settings: its documented private config keys, validated once."""

from __future__ import annotations

import os
from collections.abc import Mapping

from shipmate.common.deployments_dir import DEFAULT_INFO_FILE, DEFAULT_PREFIX, directory_name, is_plain_name
from shipmate.plugin.errors import ConfigError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    from typing import Any

DEFAULTS: dict[str, str | None] = {
    "baseDir": ".",
    "deploymentDirPrefix": DEFAULT_PREFIX,
    "deploymentInfoFile": DEFAULT_INFO_FILE,
    "deploymentPredictionBaseUrl": None,
    "deploymentKVFile": None,
}
"""The documented private config keys, with the documentation's example values as defaults."""


class FilesystemSettings:
    """The plugin's validated settings (private config merged over pluginConfig)."""

    __slots__ = ("base_dir", "info_file", "kv_file", "prediction_base_url", "prefix")

    def __init__(
        self,
        base_dir: str = ".",
        prefix: str = "deployment_",
        info_file: str = "config.yml",
        prediction_base_url: str | None = None,
        kv_file: str | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.prefix = prefix
        self.info_file = info_file
        self.prediction_base_url = prediction_base_url
        self.kv_file = kv_file

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "plugin config") -> FilesystemSettings:
        values: dict[str, str | None] = {}
        for key, default in DEFAULTS.items():
            value = config.get(key, default)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{key} in {source}: expected a string, got {type(value).__name__}")
            values[key] = value
        base_dir = values["baseDir"] or ""
        if not base_dir.strip():
            raise ConfigError(f"baseDir in {source}: must not be empty")
        prefix = values["deploymentDirPrefix"] or ""
        if "/" in prefix or prefix.startswith("."):
            raise ConfigError(
                f"deploymentDirPrefix in {source}: {prefix!r} must not contain '/' or start with '.'"
            )
        for key in ("deploymentInfoFile", "deploymentKVFile"):
            name = values[key]
            if key == "deploymentInfoFile" and not name:
                raise ConfigError(f"{key} in {source}: must not be empty")
            if name is not None and not is_plain_name(name):
                raise ConfigError(f"{key} in {source}: {name!r} must be a plain file name")
        base_url = values["deploymentPredictionBaseUrl"]
        return cls(
            base_dir=base_dir,
            prefix=prefix,
            info_file=values["deploymentInfoFile"] or "config.yml",
            prediction_base_url=base_url.rstrip("/") if base_url else None,
            kv_file=values["deploymentKVFile"] or None,
        )

    def deployment_dir(self, deployment_id: str) -> str:
        return os.path.join(self.base_dir, directory_name(self.prefix, deployment_id))

    def prediction_url(self, deployment_id: str) -> str | None:
        """``<deploymentPredictionBaseUrl>/<deployment id>/predict`` (the documented form)."""
        if not self.prediction_base_url:
            return None
        return f"{self.prediction_base_url}/{deployment_id}/predict"
