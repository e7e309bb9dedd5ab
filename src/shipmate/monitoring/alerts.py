"""Alert rules and the decision whether an alert opens or clears (pure; the service does the I/O).

A rule watches one signal of a deployment over consecutive windows of ``window_minutes``:
the server error rate, the p95 response time, an accuracy metric, or the drift status. It
**opens** an alert after two consecutive bad windows (worse than ``threshold``) and
**clears** it after two consecutive windows better than ``clear_threshold``, which lies on
the good side of ``threshold`` (hysteresis: a value hovering at the threshold neither floods
nor flaps). A window without data (no traffic, no actuals, too few rows) is no evidence
either way: the streaks stay as they were. One rule has at most one open alert.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from shipmate.monitoring.accuracy import CLASSIFICATION_METRICS, LOWER_IS_BETTER, REGRESSION_METRICS

STREAK = 2
"""Consecutive windows needed to open, and to clear, an alert."""
DRIFT_LEVELS = {"green": 0.0, "yellow": 1.0, "red": 2.0}
"""The drift status word as a number, so the drift rule compares like the others."""
MIN_ACCURACY_ROWS = 30
"""An accuracy window with fewer predictions that have actuals is no evidence."""


class RuleKind(enum.StrEnum):
    ERROR_RATE = "error_rate"
    """Share of prediction requests answered 5xx."""
    LATENCY_P95 = "latency_p95"
    """95th percentile response time, ms."""
    ACCURACY = "accuracy"
    """An accuracy metric (``metric``) over the predictions made in the window that have actuals."""
    DRIFT = "drift"
    """The deployment's drift status (green 0, yellow 1, red 2)."""


@dataclass(frozen=True)
class Rule:
    name: str
    kind: RuleKind
    threshold: float
    clear_threshold: float
    window_minutes: int
    enabled: bool = True
    metric: str | None = None

    @property
    def higher_is_worse(self) -> bool:
        if self.kind is RuleKind.ACCURACY:
            return (self.metric or "") in LOWER_IS_BETTER
        return True

    def is_bad(self, value: float) -> bool:
        return value > self.threshold if self.higher_is_worse else value < self.threshold

    def is_good(self, value: float) -> bool:
        return value < self.clear_threshold if self.higher_is_worse else value > self.clear_threshold

    def problem(self) -> str | None:
        """Why the rule is inconsistent, or None."""
        if self.window_minutes < 1 or self.window_minutes > 7 * 1440:
            return "windowMinutes must be between 1 and 10080"
        if self.kind is RuleKind.ACCURACY and self.metric not in (
            *CLASSIFICATION_METRICS,
            *REGRESSION_METRICS,
        ):
            return f"metric must be one of {', '.join(CLASSIFICATION_METRICS + REGRESSION_METRICS)}"
        if self.higher_is_worse and self.clear_threshold > self.threshold:
            return "clearThreshold must not be above threshold (a lower value is better for this rule)"
        if not self.higher_is_worse and self.clear_threshold < self.threshold:
            return "clearThreshold must not be below threshold (a higher value is better for this rule)"
        return None


def default_rules(target_type: str | None) -> list[Rule]:
    """Every deployment's rules until they are edited."""
    if target_type == "regression":
        # R² below 0: worse than always predicting the mean, whatever the target's scale
        accuracy = Rule("accuracy", RuleKind.ACCURACY, 0.0, 0.1, 1440, metric="r2")
    else:
        accuracy = Rule("accuracy", RuleKind.ACCURACY, 0.7, 0.75, 1440, metric="accuracy")
    return [
        Rule("error_rate", RuleKind.ERROR_RATE, 0.05, 0.03, 5),
        Rule("latency_p95", RuleKind.LATENCY_P95, 1000.0, 800.0, 5),
        accuracy,
        Rule("drift", RuleKind.DRIFT, DRIFT_LEVELS["yellow"], DRIFT_LEVELS["green"] + 0.5, 60),
    ]


@dataclass(frozen=True)
class RuleState:
    bad_streak: int = 0
    good_streak: int = 0
    open: bool = False


class Transition(enum.StrEnum):
    OPENED = "opened"
    CLEARED = "cleared"


def step(rule: Rule, state: RuleState, value: float | None) -> tuple[RuleState, Transition | None]:
    """The state after one more window with ``value`` (None: no evidence), and what changed."""
    if value is None:
        return state, None
    bad, good = rule.is_bad(value), rule.is_good(value)
    state = replace(
        state,
        bad_streak=state.bad_streak + 1 if bad else 0,
        good_streak=state.good_streak + 1 if good else 0,
    )
    if not state.open and state.bad_streak >= STREAK:
        return replace(state, open=True, good_streak=0), Transition.OPENED
    if state.open and state.good_streak >= STREAK:
        return replace(state, open=False, bad_streak=0), Transition.CLEARED
    return state, None


def describe(rule: Rule, value: float | None, transition: Transition) -> str:
    """The alert's one-line message."""
    what = {
        RuleKind.ERROR_RATE: "server error rate",
        RuleKind.LATENCY_P95: "p95 response time (ms)",
        RuleKind.ACCURACY: rule.metric or "accuracy",
        RuleKind.DRIFT: "drift status (green 0, yellow 1, red 2)",
    }[rule.kind]
    shown = "no data" if value is None else f"{value:.4g}"
    if transition is Transition.OPENED:
        side = "above" if rule.higher_is_worse else "below"
        return (
            f"{what} {shown} is {side} {rule.threshold:g} for {STREAK} consecutive "
            f"{rule.window_minutes}-minute windows"
        )
    side = "below" if rule.higher_is_worse else "above"
    return f"{what} {shown} is back {side} {rule.clear_threshold:g} for {STREAK} consecutive windows"
