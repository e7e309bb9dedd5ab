"""Typed views of the action config's ``deploymentInfo``, ``peInfo`` and ``endpointInfo``.

Validated at the edge: a missing or wrongly typed field raises ``ConfigError``
naming the field and the file it came from. Unknown keys are kept in ``extra``
so that nothing the agent sent is lost.

Plain slotted classes rather than dataclasses: ``dataclasses`` imports
``inspect``, which alone costs the runner several milliseconds per action.
"""

from __future__ import annotations

from collections.abc import Mapping

from shipmate.plugin.errors import ConfigError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    import datetime as _dt
    from typing import Any


class _Fields:
    """Reads typed fields out of one mapping, with errors that name the field and source."""

    def __init__(self, raw: object, section: str, source: str | None) -> None:
        where = f" in {source}" if source else ""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{section}{where}: expected a mapping, got {type(raw).__name__}")
        self.raw = raw
        self.section = section
        self.where = where
        self.used: set[str] = set()

    def _fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.section}.{key}{self.where}: {problem}")

    def required_str(self, key: str) -> str:
        self.used.add(key)
        if key not in self.raw or self.raw[key] is None:
            raise self._fail(key, "missing required field")
        value = self.raw[key]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self._fail(key, f"expected a string, got {type(value).__name__}")
        text = str(value)
        if not text.strip():
            raise self._fail(key, "must not be empty")
        return text

    def optional_str(self, key: str, *, non_empty: bool = False) -> str | None:
        self.used.add(key)
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self._fail(key, f"expected a string, got {type(value).__name__}")
        text = str(value)
        if non_empty and not text.strip():
            raise self._fail(key, "must not be empty")
        return text

    def optional_bool(self, key: str) -> bool | None:
        self.used.add(key)
        value = self.raw.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise self._fail(key, f"expected true or false, got {value!r}")

    def mapping(self, key: str) -> dict[str, Any]:
        self.used.add(key)
        if key not in self.raw:
            return {}
        value = self.raw[key]
        if value is None:
            raise self._fail(key, "expected a mapping, got null (leave it out or write {})")
        if not isinstance(value, Mapping):
            raise self._fail(key, f"expected a mapping, got {type(value).__name__}")
        return {str(k): v for k, v in value.items()}

    def extra(self) -> dict[str, Any]:
        return {str(k): v for k, v in self.raw.items() if k not in self.used}


class _Record:
    """Equality and repr over ``__slots__``, what ``@dataclass`` would give."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        names: tuple[str, ...] = self.__slots__
        return all(getattr(self, n) == getattr(other, n) for n in names)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        slots: tuple[str, ...] = self.__slots__
        names = sorted(slots, key=lambda n: (n != "id", n.lstrip("_")))
        fields = ", ".join(f"{n.lstrip('_')}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__name__}({fields})"


class DeploymentInfo(_Record):
    """One deployment, as the agent describes it to the plugin."""

    __slots__ = (
        "description",
        "extra",
        "feature_types",
        "id",
        "is_prediction_explanations_supported",
        "key_value_config",
        "model_artifact",
        "model_description",
        "model_execution_type",
        "model_format",
        "model_id",
        "model_name",
        "model_package_details",
        "name",
        "new_model_id",
        "settings",
    )

    def __init__(
        self,
        id: str,
        model_id: str,
        model_execution_type: str = "dedicated",
        name: str | None = None,
        description: str | None = None,
        model_artifact: str | None = None,
        model_format: str | None = None,
        model_name: str | None = None,
        model_description: str | None = None,
        new_model_id: str | None = None,
        key_value_config: dict[str, Any] | None = None,
        feature_types: str | None = None,
        settings: str | None = None,
        model_package_details: str | None = None,
        is_prediction_explanations_supported: bool | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.model_id = model_id
        self.model_execution_type = model_execution_type
        self.name = name
        self.description = description
        self.model_artifact = model_artifact
        self.model_format = model_format
        self.model_name = model_name
        self.model_description = model_description
        self.new_model_id = new_model_id
        self.key_value_config: dict[str, Any] = dict(key_value_config or {})
        self.feature_types = feature_types
        self.settings = settings
        self.model_package_details = model_package_details
        self.is_prediction_explanations_supported = is_prediction_explanations_supported
        self.extra: dict[str, Any] = dict(extra or {})

    @property
    def current_model_id(self) -> str:
        """The model that should be serving: ``newModelId`` during a replacement, else ``modelId``."""
        return self.new_model_id or self.model_id

    # camelCase aliases, for plugins written against the published package
    @property
    def modelId(self) -> str:
        return self.model_id

    @property
    def modelArtifact(self) -> str | None:
        return self.model_artifact

    @property
    def newModelId(self) -> str | None:
        return self.new_model_id

    @property
    def keyValueConfig(self) -> dict[str, Any]:
        return self.key_value_config

    @property
    def modelExecutionType(self) -> str:
        return self.model_execution_type

    # names DataRobot's package uses
    @property
    def kv_config(self) -> dict[str, Any]:
        return self.key_value_config

    @property
    def feature_types_path(self) -> str | None:
        return self.feature_types

    @property
    def settings_path(self) -> str | None:
        return self.settings

    @property
    def model_package_details_path(self) -> str | None:
        return self.model_package_details

    def to_yaml(self) -> str:
        from shipmate.plugin.yamlio import safe_dump

        text: str = safe_dump(self.to_dict(), sort_keys=False)
        return text

    @classmethod
    def from_dict(cls, raw: object, source: str | None = None) -> DeploymentInfo:
        f = _Fields(raw, "deploymentInfo", source)
        info = cls(
            id=f.required_str("id"),
            model_id=f.required_str("modelId"),
            model_execution_type=f.optional_str("modelExecutionType", non_empty=True) or "dedicated",
            name=f.optional_str("name"),
            description=f.optional_str("description"),
            model_artifact=f.optional_str("modelArtifact", non_empty=True),
            model_format=f.optional_str("modelFormat"),
            model_name=f.optional_str("modelName"),
            model_description=f.optional_str("modelDescription"),
            new_model_id=f.optional_str("newModelId", non_empty=True),
            key_value_config=f.mapping("keyValueConfig"),
            feature_types=f.optional_str("featureTypes"),
            settings=f.optional_str("settings"),
            model_package_details=f.optional_str("modelPackageDetails"),
            is_prediction_explanations_supported=f.optional_bool("isPredictionExplanationsSupported"),
        )
        info.extra = f.extra()
        return info

    def to_dict(self) -> dict[str, Any]:
        """The wire form (camelCase keys), leaving out unset optional fields."""
        out: dict[str, Any] = {
            "id": self.id,
            "modelId": self.model_id,
            "modelExecutionType": self.model_execution_type,
            "keyValueConfig": dict(self.key_value_config),
        }
        optional = {
            "name": self.name,
            "description": self.description,
            "modelArtifact": self.model_artifact,
            "modelFormat": self.model_format,
            "modelName": self.model_name,
            "modelDescription": self.model_description,
            "newModelId": self.new_model_id,
            "featureTypes": self.feature_types,
            "settings": self.settings,
            "modelPackageDetails": self.model_package_details,
            "isPredictionExplanationsSupported": self.is_prediction_explanations_supported,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update(self.extra)
        return out


class PEInfo(_Record):
    """The prediction environment an action refers to.

    ``deployments`` accepts plain ids (as documented) or full deploymentInfo
    mappings (as the published package's samples use); ``deployment_ids`` gives
    the ids either way.
    """

    __slots__ = (
        "_created_on",
        "created_by",
        "deployments",
        "description",
        "extra",
        "id",
        "key_value_config",
        "name",
    )

    def __init__(
        self,
        id: str,
        name: str | None = None,
        description: str | None = None,
        created_on: _dt.datetime | str | None = None,
        created_by: str | None = None,
        deployments: list[DeploymentInfo | str] | None = None,
        key_value_config: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.name = name
        self.description = description
        self._created_on = created_on
        self.created_by = created_by
        self.deployments: list[DeploymentInfo | str] = list(deployments or [])
        self.key_value_config: dict[str, Any] = dict(key_value_config or {})
        self.extra: dict[str, Any] = dict(extra or {})

    @property
    def created_on(self) -> _dt.datetime | str | None:
        """``createdOn`` as a datetime when it is ISO-8601, else the text as given (the seed's example)."""
        value = self._created_on
        if isinstance(value, str) and value:
            import datetime

            try:
                value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return value
            self._created_on = value
        return value

    @created_on.setter
    def created_on(self, value: _dt.datetime | str | None) -> None:
        self._created_on = value

    @property
    def deployment_ids(self) -> list[str]:
        return [d if isinstance(d, str) else d.id for d in self.deployments]

    @property
    def keyValueConfig(self) -> dict[str, Any]:
        return self.key_value_config

    @property
    def kv_config(self) -> dict[str, Any]:
        return self.key_value_config

    @classmethod
    def from_dict(cls, raw: object, source: str | None = None) -> PEInfo:
        f = _Fields(raw, "peInfo", source)
        created_on = f.optional_str("createdOn")  # parsed on first use of .created_on
        f.used.add("deployments")
        raw_deployments = f.raw.get("deployments", [])
        if raw_deployments is None:
            raw_deployments = []
        if not isinstance(raw_deployments, list):
            raise f._fail("deployments", f"expected a list, got {type(raw_deployments).__name__}")
        deployments: list[DeploymentInfo | str] = []
        for index, entry in enumerate(raw_deployments):
            if isinstance(entry, str | int) and not isinstance(entry, bool):
                deployments.append(str(entry))
            elif isinstance(entry, Mapping):
                deployments.append(
                    DeploymentInfo.from_dict(
                        entry, source=f"{source or 'config'} (peInfo.deployments[{index}])"
                    )
                )
            else:
                raise f._fail(
                    f"deployments[{index}]", f"expected an id or a deploymentInfo mapping, got {entry!r}"
                )
        info = cls(
            id=f.required_str("id"),
            name=f.optional_str("name"),
            description=f.optional_str("description"),
            created_on=created_on,
            created_by=f.optional_str("createdBy"),
            deployments=deployments,
            key_value_config=f.mapping("keyValueConfig"),
        )
        info.extra = f.extra()
        return info

    def to_dict(self) -> dict[str, Any]:
        created = (
            self._created_on if isinstance(self._created_on, str | None) else self._created_on.isoformat()
        )
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "createdOn": created,
            "createdBy": self.created_by,
            "deployments": [d if isinstance(d, str) else d.to_dict() for d in self.deployments],
            "keyValueConfig": dict(self.key_value_config),
        }
        out.update(self.extra)
        return out


class EndpointInfo(_Record):
    """Optional ``endpointInfo`` section (used by the endpoint_* extras)."""

    __slots__ = (
        "auth_type",
        "description",
        "endpoint_type",
        "id",
        "name",
        "prediction_environment_id",
        "tags",
        "traffic_split",
        "traffic_updated_at",
    )

    def __init__(
        self,
        name: str,
        endpoint_type: str,
        prediction_environment_id: str,
        id: str | None = None,
        description: str | None = None,
        auth_type: str | None = None,
        tags: dict[str, Any] | None = None,
        traffic_split: dict[str, Any] | None = None,
        traffic_updated_at: str | None = None,
    ) -> None:
        self.name = name
        self.endpoint_type = endpoint_type
        self.prediction_environment_id = prediction_environment_id
        self.id = id
        self.description = description
        self.auth_type = auth_type
        self.tags: dict[str, Any] = dict(tags or {})
        self.traffic_split: dict[str, Any] = dict(traffic_split or {})
        self.traffic_updated_at = traffic_updated_at

    @classmethod
    def from_dict(cls, raw: object, source: str | None = None) -> EndpointInfo:
        f = _Fields(raw, "endpointInfo", source)
        return cls(
            name=f.required_str("name"),
            endpoint_type=f.required_str("endpointType"),
            prediction_environment_id=f.required_str("predictionEnvironmentId"),
            id=f.optional_str("id"),
            description=f.optional_str("description"),
            auth_type=f.optional_str("authType"),
            tags=f.mapping("tags"),
            traffic_split=f.mapping("trafficSplit"),
            traffic_updated_at=f.optional_str("trafficUpdatedAt"),
        )
