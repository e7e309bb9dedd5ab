"""The pure decision behind an agent that stops when the service keeps refusing it."""

from __future__ import annotations

import pytest

from shipmate.agent.refusals import MAX_REFUSALS, explain, give_up, is_final


@pytest.mark.parametrize(
    ("message", "final"),
    [
        ("read the environment: 401: unknown or revoked token", True),
        ("follow the change feed: 403: this token belongs to another environment", True),
        ("read the environment: 404: environment e-1 not found", True),
        ("report: 409: stale generation", False),
        ("follow the change feed: 429: slow down", False),
        ("report: 400: deployment d-404: bad field", False),
    ],
)
def test_only_refusals_waiting_cannot_mend_count(message: str, final: bool):
    assert is_final(message) is final


def test_a_few_tries_then_stop():
    assert [give_up(n) for n in range(MAX_REFUSALS + 1)] == [False] * MAX_REFUSALS + [True]


def test_the_reason_says_what_to_do():
    assert "agent token" in explain("read the environment: 401: unknown token", "e-1")
    assert "another environment than e-1" in explain("x: 403: forbidden", "e-1")
    assert "shipmate env list" in explain("read the environment: 404: not found", "e-1")
