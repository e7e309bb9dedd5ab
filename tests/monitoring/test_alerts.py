"""Alert decisions: two bad windows open, two good ones past the clear threshold close; no data: no change."""

from __future__ import annotations

from shipmate.monitoring.alerts import Rule, RuleKind, RuleState, Transition, default_rules, step


def run(rule: Rule, values: list[float | None]) -> list[Transition | None]:
    state, out = RuleState(), []
    for value in values:
        state, change = step(rule, state, value)
        out.append(change)
    return out


def test_an_alert_opens_after_two_bad_windows_and_clears_with_hysteresis() -> None:
    rule = Rule("error_rate", RuleKind.ERROR_RATE, threshold=0.05, clear_threshold=0.03, window_minutes=5)
    # one bad window is not enough; a window without traffic neither breaks nor extends a streak
    assert run(rule, [0.2, 0.0, 0.2, None, 0.2]) == [None, None, None, None, Transition.OPENED]
    # hovering between the clear threshold and the threshold keeps it open: no flapping
    opened = [0.2, 0.2, 0.04, 0.04, 0.06, 0.04, 0.01, 0.01, 0.2, 0.2]
    assert run(rule, opened) == [None, Transition.OPENED, None, None, None, None, None, Transition.CLEARED,
                                 None, Transition.OPENED]  # fmt: skip


def test_lower_bound_rules_and_defaults() -> None:
    accuracy = Rule("accuracy", RuleKind.ACCURACY, 0.7, 0.75, 1440, metric="accuracy")
    assert run(accuracy, [0.6, 0.65, 0.8, 0.8]) == [None, Transition.OPENED, None, Transition.CLEARED]
    log_loss = Rule("ll", RuleKind.ACCURACY, 0.5, 0.4, 60, metric="log_loss")
    assert log_loss.higher_is_worse and run(log_loss, [0.6, 0.6])[-1] is Transition.OPENED
    assert Rule("x", RuleKind.ACCURACY, 0.7, 0.6, 60, metric="accuracy").problem() is not None
    assert Rule("x", RuleKind.ACCURACY, 0.7, 0.8, 60, metric="nonsense").problem() is not None
    for target in ("binary", "regression"):
        rules = default_rules(target)
        assert [r.name for r in rules] == ["error_rate", "latency_p95", "accuracy", "drift"]
        assert all(r.problem() is None for r in rules)
    drift = next(r for r in default_rules("binary") if r.kind is RuleKind.DRIFT)
    # red twice opens; yellow keeps it open; green twice clears
    assert run(drift, [2.0, 2.0, 1.0, 0.0, 0.0]) == [None, Transition.OPENED, None, None, Transition.CLEARED]
