"""The shared words keep the exact strings stored in the database and sent over the API."""

from __future__ import annotations

import json

import pytest

from shipmate.common.vocabulary import (
    AGENT_EVENT_TYPES,
    DesiredState,
    EventType,
    ReportPhase,
    WireFormat,
)


def test_stored_strings_are_unchanged() -> None:
    assert [s.value for s in DesiredState] == ["running", "stopped", "deleted"]
    assert [p.value for p in ReportPhase] == ["started", "finished", "retrying", "observed"]
    assert {e.value for e in EventType} == {
        "deployment.created", "deployment.desired_changed", "deployment.updated", "deployment.removed",
        "deployment.health_changed", "action.started", "action.finished", "action.retrying",
        "environment.created", "environment.updated", "environment.deleted", "environment.health_changed",
        "model_package.created", "token.created", "token.revoked",
        "agent.unknown_deployment", "agent.connected", "agent.disconnected", "alert.opened", "alert.cleared",
    }  # fmt: skip


def test_members_are_their_text() -> None:
    assert EventType.DESIRED_CHANGED == "deployment.desired_changed"
    assert str(DesiredState.RUNNING) == "running"
    assert f"{ReportPhase.OBSERVED}" == "observed"
    assert json.dumps({"type": EventType.TOKEN_CREATED}) == '{"type": "token.created"}'


@pytest.mark.parametrize(
    ("phase", "event"),
    [
        (ReportPhase.STARTED, "action.started"),
        (ReportPhase.FINISHED, "action.finished"),
        (ReportPhase.RETRYING, "action.retrying"),
        (ReportPhase.OBSERVED, "deployment.health_changed"),
    ],
)
def test_each_report_phase_is_logged_as_one_event(phase: ReportPhase, event: str) -> None:
    assert phase.event_type == event


def test_agents_may_post_only_their_own_events() -> None:
    assert {e.value for e in AGENT_EVENT_TYPES} == {
        "agent.unknown_deployment",
        "agent.connected",
        "agent.disconnected",
        "deployment.health_changed",
    }
    assert EventType.AGENT_CONNECTED.agent_may_post
    assert not EventType.DEPLOYMENT_REMOVED.agent_may_post


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", WireFormat.JSON),
        ("Application/JSON; charset=utf-8", WireFormat.JSON),
        ("application/vnd.api+json", WireFormat.JSON),
        ("text/csv", WireFormat.CSV),
        ("text/plain", WireFormat.CSV),
        ("application/csv", WireFormat.CSV),
        ("application/xml", None),
        ("", None),
    ],
)
def test_wire_format_from_content_type(content_type: str, expected: WireFormat | None) -> None:
    assert WireFormat.from_media_type(content_type) is expected


def test_wire_format_media_types() -> None:
    assert WireFormat.JSON.media_type == "application/json"
    assert WireFormat.CSV.media_type == "text/csv"
