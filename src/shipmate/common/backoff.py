"""Capped exponential back-off: the one rule for "how long before trying again".

The agent uses it to reconnect to the service, to deliver reports, to retry a
failing plugin action and to retry ``plugin_start``; each passes its own start
and cap from its settings.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_EXPONENT = 64
"""Beyond this many doublings every delay is the cap anyway (and ``2.0 ** 1100`` would overflow)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Wait ``initial`` seconds after the first failure, twice as long after each next one, never more
    than ``maximum``."""

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.0
    """Up to this share is taken off each delay at random, so many clients cut off at once
    (e.g. by a service restart) do not all come back at the same moment."""

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum <= 0 or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid back-off: {self}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (1 for the first)."""
        if failures < 1:
            raise ValueError(f"failures must be at least 1, not {failures}")
        exponent = min(failures - 1, _MAX_EXPONENT)
        base = float(min(self.initial * self.factor**exponent, self.maximum))
        return base * (1.0 - self.jitter * random.random()) if self.jitter else base
