"""The status file: the contract's keys and values, validation of untrusted files, retry intent."""

from __future__ import annotations

import pytest
import yaml

from shipmate.plugin import ActionStatus, ActionStatusInfo, DeploymentState
from shipmate.plugin.errors import StatusFileError


def test_status_file_has_the_contract_keys_and_values(tmp_path) -> None:
    info = ActionStatusInfo(
        ActionStatus.WARN, msg="m", state=DeploymentState.REPLACING_MODEL, data={"k": [1]}
    )
    path = tmp_path / "status.yaml"
    info.write(str(path))
    raw = yaml.safe_load(path.read_text())
    assert list(raw) == ["data", "duration", "msg", "state", "status", "timestamp"]
    assert raw["status"] == "warning" and raw["state"] == "replacingModel"
    assert [s.value for s in ActionStatus] == ["passing", "warning", "failing", "unknown"]
    expected_states = [
        "ready",
        "stopped",
        "errored",
        "launching",
        "replacingModel",
        "shuttingDown",
        "unknown",
    ]
    assert [s.value for s in DeploymentState] == expected_states
    assert ActionStatusInfo.read(str(path)) == info


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("status: [", "not valid YAML"),
        ("- a list", "expected a mapping"),
        ("msg: no status", "missing field 'status'"),
        ("status: great", "field 'status'"),
        ("status: passing\nstate: sleeping", "field 'state'"),
        ("status: passing\nduration: soon", "field 'duration'"),
        ("status: passing\ndata: [1]", "field 'data'"),
        ("status: failing\nretryAfter: soon", "field 'retryAfter'"),
        ("status: failing\nretryAfter: -5", "field 'retryAfter'"),
        ("status: failing\nretryAfter: true", "field 'retryAfter'"),
        ("status: failing\nretryAfter: .inf", "field 'retryAfter'"),
    ],
)
def test_reading_an_untrusted_status_file(tmp_path, text, problem) -> None:
    path = tmp_path / "status.yaml"
    path.write_text(text)
    with pytest.raises(StatusFileError, match=problem):
        ActionStatusInfo.read(str(path))


@pytest.mark.parametrize(("retry_after", "written"), [(30, 30.0), (0.5, 0.5), (False, False)])
def test_a_failing_status_may_state_its_retry_intent(tmp_path, retry_after, written) -> None:
    info = ActionStatusInfo(ActionStatus.ERROR, msg="quota exceeded", retry_after=retry_after)
    path = tmp_path / "status.yaml"
    info.write(str(path))
    raw = yaml.safe_load(path.read_text())
    assert raw["retryAfter"] == written
    back = ActionStatusInfo.read(str(path))
    assert back.retry_after == written and back == info


def test_without_retry_intent_the_status_file_is_the_contracts() -> None:
    info = ActionStatusInfo(ActionStatus.ERROR, msg="broke")
    assert info.retry_after is None
    assert list(info.to_dict()) == ["data", "duration", "msg", "state", "status", "timestamp"]
    assert ActionStatusInfo.from_dict({"status": "failing", "retryAfter": None}).retry_after is None


def test_timestamp_is_set_at_construction() -> None:
    import time

    before = int(time.time() * 1000)
    info = ActionStatusInfo("passing")
    assert before <= info.timestamp <= int(time.time() * 1000)


def test_a_status_file_that_is_not_utf8_is_a_status_file_error(tmp_path) -> None:
    """Not a UnicodeDecodeError escaping the driver (the agent then retried it forever)."""
    path = tmp_path / "status.yaml"
    path.write_bytes(b"status: passing\nmsg: caf\xe9\n")
    with pytest.raises(StatusFileError, match=r"not UTF-8 text \(byte 0xe9 at offset 24\)"):
        ActionStatusInfo.read(str(path))
