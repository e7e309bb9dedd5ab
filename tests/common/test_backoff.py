"""The one back-off rule: start, double, cap."""

from __future__ import annotations

import pytest

from shipmate.common.backoff import Backoff


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 3.0), (6, 3.0), (10_000, 3.0)],
)
def test_doubles_up_to_the_cap(failures: int, expected: float) -> None:
    assert Backoff(0.2, 3.0).delay(failures) == pytest.approx(expected)


def test_a_cap_below_the_start_wins() -> None:
    assert Backoff(1.0, 0.5).delay(1) == 0.5


@pytest.mark.parametrize("bad", [dict(initial=0, maximum=1), dict(initial=1, maximum=-1),
                                 dict(initial=1, maximum=1, factor=0.5)])  # fmt: skip
def test_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid back-off"):
        Backoff(**bad)


def test_failures_count_from_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Backoff(1, 2).delay(0)
