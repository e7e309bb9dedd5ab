"""The words the service, the client and the agent share: one closed list for each.

Each value is the exact string stored in the service's database and sent over
its API (``docs/agent-api.md``), so a member compares equal to the text and
serialises as it. The plugin contract's own words (``ActionStatus``,
``DeploymentState``, ``Action``) live in the SDK, ``shipmate.plugin``.
"""

from __future__ import annotations

import enum


class DesiredState(enum.StrEnum):
    """What the user asked for one deployment (``desired.state``); the agent makes the environment match."""

    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"

    def __str__(self) -> str:
        return self.value


class EventType(enum.StrEnum):
    """Every event type in the service's event log (documented in ``docs/agent-api.md``)."""

    DEPLOYMENT_CREATED = "deployment.created"
    DESIRED_CHANGED = "deployment.desired_changed"
    DEPLOYMENT_UPDATED = "deployment.updated"
    DEPLOYMENT_REMOVED = "deployment.removed"
    DEPLOYMENT_HEALTH_CHANGED = "deployment.health_changed"
    ACTION_STARTED = "action.started"
    ACTION_FINISHED = "action.finished"
    ACTION_RETRYING = "action.retrying"
    ENVIRONMENT_CREATED = "environment.created"
    ENVIRONMENT_UPDATED = "environment.updated"
    ENVIRONMENT_DELETED = "environment.deleted"
    ENVIRONMENT_HEALTH_CHANGED = "environment.health_changed"
    MODEL_PACKAGE_CREATED = "model_package.created"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    AGENT_UNKNOWN_DEPLOYMENT = "agent.unknown_deployment"
    AGENT_CONNECTED = "agent.connected"
    AGENT_DISCONNECTED = "agent.disconnected"
    ALERT_OPENED = "alert.opened"
    ALERT_CLEARED = "alert.cleared"

    @property
    def agent_may_post(self) -> bool:
        """True for the events an agent may post itself (``POST /environments/{id}/events``)."""
        return self in AGENT_EVENT_TYPES

    def __str__(self) -> str:
        return self.value


AGENT_EVENT_TYPES = frozenset(
    {
        EventType.AGENT_UNKNOWN_DEPLOYMENT,
        EventType.AGENT_CONNECTED,
        EventType.AGENT_DISCONNECTED,
        EventType.DEPLOYMENT_HEALTH_CHANGED,
    }
)
"""Events an agent may post outside its reports."""


class ReportPhase(enum.StrEnum):
    """Where an agent's report stands in one action (``phase`` of a report)."""

    STARTED = "started"
    FINISHED = "finished"
    RETRYING = "retrying"
    OBSERVED = "observed"
    """Not an action of the agent's: what the plugin said when asked (health checks)."""

    @property
    def event_type(self) -> EventType:
        """The event the service logs for a report in this phase."""
        return _PHASE_EVENTS[self]

    def __str__(self) -> str:
        return self.value


_PHASE_EVENTS = {
    ReportPhase.STARTED: EventType.ACTION_STARTED,
    ReportPhase.FINISHED: EventType.ACTION_FINISHED,
    ReportPhase.RETRYING: EventType.ACTION_RETRYING,
    ReportPhase.OBSERVED: EventType.DEPLOYMENT_HEALTH_CHANGED,
}


class WireFormat(enum.StrEnum):
    """The body formats of the prediction API, by their short names (``?format=``, logs, metrics)."""

    JSON = "json"
    CSV = "csv"

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]

    @classmethod
    def from_media_type(cls, content_type: str) -> WireFormat | None:
        """The format a ``Content-Type`` names (parameters ignored; ``*/*+json`` is JSON), or None."""
        base = content_type.split(";", 1)[0].strip().lower()
        if base == _MEDIA_TYPES[WireFormat.JSON] or base.endswith("+json"):
            return WireFormat.JSON
        if base in CSV_MEDIA_TYPES:
            return WireFormat.CSV
        return None

    def __str__(self) -> str:
        return self.value


_MEDIA_TYPES = {WireFormat.JSON: "application/json", WireFormat.CSV: "text/csv"}
CSV_MEDIA_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "text/x-csv"})
"""Content types read as CSV (clients send CSV under each of these)."""
