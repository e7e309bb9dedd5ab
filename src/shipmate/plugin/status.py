"""The closed vocabularies of the plugin contract and the action result.

``ActionStatus`` and ``DeploymentState`` values are the exact strings that
appear in status files, in the service's database, its API and the web UI.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping

from shipmate.plugin.errors import StatusFileError, describe_yaml_error

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    from typing import Any


class ActionStatus(enum.StrEnum):
    """Outcome of one action. Member names are the documented ones."""

    OK = "passing"
    WARN = "warning"
    ERROR = "failing"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        """The runner's ``--exit-codes`` value: passing 0, failing 1, warning 2, unknown 3."""
        return _EXIT_CODES[self]

    @property
    def severity(self) -> int:
        """Order for "the worst one wins": passing < unknown < warning < failing."""
        return _SEVERITY[self]

    @classmethod
    def parse(cls, value: object) -> ActionStatus:
        """Accept a member, its value, or its documented name (``OK``); case-insensitive."""
        if isinstance(value, ActionStatus):
            return value
        if isinstance(value, str):
            text = value.strip()
            for member in cls:
                if text.lower() in (member.value, member.name.lower()):
                    return member
        raise ValueError(f"Bad Status: {value!r} (expected one of passing, warning, failing, unknown)")

    def __str__(self) -> str:
        return self.value


_EXIT_CODES = {ActionStatus.OK: 0, ActionStatus.ERROR: 1, ActionStatus.WARN: 2, ActionStatus.UNKNOWN: 3}
_SEVERITY = {ActionStatus.OK: 0, ActionStatus.UNKNOWN: 1, ActionStatus.WARN: 2, ActionStatus.ERROR: 3}


def worst(statuses: list[ActionStatus]) -> ActionStatus:
    """The most severe of ``statuses`` (``passing`` for none)."""
    return max(statuses, key=lambda s: s.severity, default=ActionStatus.OK)


class DeploymentState(enum.StrEnum):
    """State of a deployment in its environment, after an action."""

    READY = "ready"
    STOPPED = "stopped"
    ERRORED = "errored"
    LAUNCHING = "launching"
    REPLACING_MODEL = "replacingModel"
    SHUTTING_DOWN = "shuttingDown"
    UNKNOWN = "unknown"
    ERROR = "errored"  # alias of ERRORED: the name DataRobot's package uses

    @classmethod
    def parse(cls, value: object) -> DeploymentState:
        if isinstance(value, DeploymentState):
            return value
        if isinstance(value, str):
            for member in cls:
                if value == member.value or value.lower() == member.value.lower():
                    return member
        allowed = ", ".join(m.value for m in cls)
        raise ValueError(f"Bad state: {value!r} (expected one of {allowed})")

    def __str__(self) -> str:
        return self.value


class DataKey:
    """Well-known keys of ``ActionStatusInfo.data``."""

    PREDICTION_URL = "predictionUrl"
    DASHBOARD_URL = "dashboardUrl"
    OLD_MODEL_IN_USE = "oldModelInUse"
    DEPLOYMENTS_STATUS = "deploymentsStatus"
    CURRENT_MODEL_ID = "currentModelId"


RETRY_AFTER_KEY = "retryAfter"
"""Shipmate's optional status-file key beside the contract's six: a failing action's retry intent."""


class ActionStatusInfo:
    """The result of one plugin action, as written to the YAML status file.

    ``timestamp`` (milliseconds since the epoch) is taken at construction, as the
    contract says; ``duration`` (seconds) is set by whoever ran the action.

    ``retry_after`` is a failing action's retry intent, for the agent's retry policy:
    ``None`` (the default) leaves it to the agent, a number of seconds asks for the next
    attempt after that long, ``False`` asks for no further attempt (the failure is final
    until the deployment changes). It is written as ``retryAfter`` only when set, so a
    status file without it is exactly the contract's.
    """

    __slots__ = ("data", "duration", "msg", "retry_after", "state", "status", "timestamp")

    def __init__(
        self,
        status: ActionStatus | str,
        msg: str | None = None,
        state: DeploymentState | str | None = None,
        duration: float | None = None,
        data: dict[str, Any] | None = None,
        retry_after: float | bool | None = None,
    ) -> None:
        self.status = ActionStatus.parse(status)
        self.msg = msg
        self.state = DeploymentState.parse(state) if state is not None else None
        self.duration = duration
        self.data = data
        self.retry_after = _retry_after(retry_after)
        self.timestamp = int(time.time() * 1000)

    def __repr__(self) -> str:
        return (
            f"ActionStatusInfo(status={self.status.value!r}, msg={self.msg!r}, "
            f"state={self.state.value if self.state else None!r}, "
            f"duration={self.duration!r}, data={self.data!r}"
            + ("" if self.retry_after is None else f", retry_after={self.retry_after!r}")
            + ")"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActionStatusInfo):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def ok(self) -> bool:
        return self.status is ActionStatus.OK

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping with the contract's six keys (enums as their strings), and ``retryAfter`` if set."""
        out = {
            "data": _plain(self.data),
            "duration": None if self.duration is None else round(float(self.duration), 4),
            "msg": None if self.msg is None else str(self.msg),
            "state": None if self.state is None else self.state.value,
            "status": self.status.value,
            "timestamp": self.timestamp,
        }
        if self.retry_after is not None:
            out[RETRY_AFTER_KEY] = self.retry_after
        return out

    def to_yaml(self) -> str:
        """The status file's text: keys sorted, indent 4, as DataRobot's runner writes it."""
        from shipmate.plugin.yamlio import safe_dump

        text: str = safe_dump(self.to_dict(), indent=4, sort_keys=True)
        return text

    def write(self, path: str) -> None:
        """Write the status file (truncating any previous content)."""
        text = self.to_yaml()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "status") -> ActionStatusInfo:
        """Validate a status mapping; raise ``StatusFileError`` naming the bad field."""
        if not isinstance(raw, Mapping):
            raise StatusFileError(f"{source}: expected a mapping, got {type(raw).__name__}")
        if "status" not in raw:
            raise StatusFileError(f"{source}: missing field 'status'")
        try:
            status = ActionStatus.parse(raw["status"])
        except ValueError as exc:
            raise StatusFileError(f"{source}: field 'status': {exc}") from None
        msg = raw.get("msg")
        if msg is not None and not isinstance(msg, str):
            msg = str(msg)
        state = raw.get("state")
        if state is not None:
            try:
                state = DeploymentState.parse(state)
            except ValueError as exc:
                raise StatusFileError(f"{source}: field 'state': {exc}") from None
        duration = raw.get("duration")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int | float)):
            raise StatusFileError(
                f"{source}: field 'duration': expected a number of seconds, got {duration!r}"
            )
        data = raw.get("data")
        if data is not None and not isinstance(data, Mapping):
            raise StatusFileError(f"{source}: field 'data': expected a mapping, got {type(data).__name__}")
        try:
            retry_after = _retry_after(raw.get(RETRY_AFTER_KEY))
        except ValueError as exc:
            raise StatusFileError(f"{source}: field '{RETRY_AFTER_KEY}': {exc}") from None
        info = cls(
            status,
            msg=msg,
            state=state,
            duration=duration,
            data=dict(data) if data is not None else None,
            retry_after=retry_after,
        )
        timestamp = raw.get("timestamp")
        if isinstance(timestamp, int) and not isinstance(timestamp, bool):
            info.timestamp = timestamp
        return info

    @classmethod
    def read(cls, path: str) -> ActionStatusInfo:
        """Read and validate a status file written by any runner."""
        from shipmate.plugin.yamlio import import_yaml, safe_load

        yaml = import_yaml()
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise StatusFileError(f"status file {path} was not written") from None
        except OSError as exc:
            raise StatusFileError(f"status file {path} could not be read: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            byte = exc.object[exc.start]
            raise StatusFileError(
                f"status file {path} is not UTF-8 text (byte {byte:#04x} at offset {exc.start})"
            ) from None
        if not text.strip():
            raise StatusFileError(f"status file {path} is empty")
        try:
            raw = safe_load(text)
        except yaml.YAMLError as exc:
            raise StatusFileError(
                f"status file {path} is not valid YAML: {describe_yaml_error(exc)}"
            ) from None
        return cls.from_dict(raw, source=f"status file {path}")


def _retry_after(value: object) -> float | bool | None:
    """``None``, ``False`` (do not retry) or a finite number of seconds >= 0."""
    if value is None or value is False:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise ValueError(f"expected a number of seconds (>= 0) or false, got {value!r}")
    return float(value)


def _plain(value: Any) -> Any:
    """Turn enums and ActionStatusInfo values nested in ``data`` into plain YAML types."""
    if isinstance(value, ActionStatusInfo):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
