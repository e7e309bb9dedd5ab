"""The pure planning step of the deployments-directory watcher, as a table of cases."""

from __future__ import annotations

import pytest

from shipmate.serving.watcher import Change, ChangeKind, plan

L, R, U = ChangeKind.LOAD, ChangeKind.RELOAD, ChangeKind.UNLOAD


@pytest.mark.parametrize(
    ("observed", "loaded", "failed", "absent", "expected", "still_absent"),
    [
        ({"a": "1"}, {}, {}, {}, [(L, "a")], {}),
        ({"a": "1"}, {"a": "1"}, {}, {}, [], {}),
        ({"a": "2"}, {"a": "1"}, {}, {}, [(R, "a")], {}),
        ({}, {"a": "1"}, {}, {}, [], {"a": 1}),  # first scan without it: wait (a rename may be under way)
        ({}, {"a": "1"}, {}, {"a": 1}, [(U, "a")], {}),
        ({"a": "1"}, {"a": "1"}, {}, {"a": 1}, [], {}),  # back again: the count resets
        ({"a": "1"}, {}, {"a": "1"}, {}, [], {}),  # failed with this content: not retried
        ({"a": "2"}, {}, {"a": "1"}, {}, [(L, "a")], {}),  # changed since it failed: retried
        ({"a": "2"}, {"a": "1"}, {"a": "2"}, {}, [], {}),  # replacement failed: keep serving the old one
        ({}, {}, {"a": "1"}, {"a": 1}, [(U, "a")], {}),  # a failed one that disappeared is forgotten
        ({"b": "1", "a": "1"}, {}, {}, {}, [(L, "a"), (L, "b")], {}),
    ],
)
def test_plan(
    observed: dict[str, str],
    loaded: dict[str, str],
    failed: dict[str, str],
    absent: dict[str, int],
    expected: list[tuple[ChangeKind, str]],
    still_absent: dict[str, int],
) -> None:
    changes, counts = plan(observed, loaded, failed, absent, unload_after=2)
    assert [(c.kind, c.key) for c in changes] == expected
    assert counts == still_absent
    assert all(isinstance(c, Change) and c.reason for c in changes)
