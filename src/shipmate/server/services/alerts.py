"""Alert rules per deployment, their periodic evaluation, the alerts, and the webhook.

The decisions are pure (`shipmate.monitoring.alerts`); this module reads the signals
(service health from the monitoring buckets, accuracy from the predictions with actuals, the
drift status from a pluggable callable), keeps each rule's streaks in its row, writes an
alert and an ``alert.opened`` / ``alert.cleared`` event in one transaction, and hands the
change to the webhook afterwards.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from shipmate.common.backoff import Backoff
from shipmate.common.masking import mask
from shipmate.common.vocabulary import DesiredState, EventType
from shipmate.monitoring import service_health
from shipmate.monitoring.alerts import (
    DRIFT_LEVELS,
    MIN_ACCURACY_ROWS,
    Rule,
    RuleKind,
    RuleState,
    Transition,
    default_rules,
    describe,
    step,
)
from shipmate.server.errors import InvalidInput, NotFound
from shipmate.server.models import Alert, AlertRule, Deployment, utcnow
from shipmate.server.services import accuracy, events
from shipmate.server.services import drift as drift_service
from shipmate.server.services import monitoring as buckets

log = logging.getLogger(__name__)

OPENED_EVENT = EventType.ALERT_OPENED
CLEARED_EVENT = EventType.ALERT_CLEARED
ACTOR = "shipmate-alerts"


def drift_status(session: Session, deployment: Deployment, since: int, until: int) -> str | None:
    """The drift service's status word (``green``, ``yellow``, ``red``) for a deployment over
    [since, until) epoch minutes, None when it holds too few rows to judge (fewer than the
    deployment's ``minRows``) or more than one drift answer reads."""
    start = dt.datetime.fromtimestamp(since * 60, dt.UTC)
    end = dt.datetime.fromtimestamp(until * 60, dt.UTC)
    try:
        result = drift_service.compute(session, deployment, start, end)
    except drift_service.TooManyColumns as exc:
        log.warning("drift rule of deployment %s not judged: %s", deployment.id, exc)
        return None
    if result.rows < result.min_rows:
        return None
    return result.status.value


# ---- rules ---------------------------------------------------------------------------------------


def to_rule(row: AlertRule) -> Rule:
    return Rule(
        name=row.name,
        kind=RuleKind(row.kind),
        threshold=row.threshold,
        clear_threshold=row.clear_threshold,
        window_minutes=row.window_minutes,
        enabled=row.enabled,
        metric=row.metric,
    )


def rules_of(session: Session, deployment: Deployment) -> list[AlertRule]:
    """The deployment's rules, the defaults created on first use."""
    rows = {
        r.name: r for r in session.scalars(select(AlertRule).where(AlertRule.deployment_id == deployment.id))
    }
    for rule in default_rules(deployment.model_package.target_type):
        if rule.name not in rows:
            row = AlertRule(
                deployment_id=deployment.id,
                name=rule.name,
                kind=rule.kind.value,
                metric=rule.metric,
                threshold=rule.threshold,
                clear_threshold=rule.clear_threshold,
                window_minutes=rule.window_minutes,
                enabled=rule.enabled,
                bad_streak=0,
                good_streak=0,
            )
            session.add(row)
            rows[rule.name] = row
    session.flush()
    return sorted(rows.values(), key=lambda r: r.id)


def update_rule(session: Session, deployment: Deployment, name: str, changes: dict[str, Any]) -> AlertRule:
    """Change a rule's threshold, clear threshold, window, metric or switch; checked as a whole.
    A change restarts the rule's streaks (the old evidence was judged by other terms)."""
    row = next((r for r in rules_of(session, deployment) if r.name == name), None)
    if row is None:
        names = ", ".join(r.name for r in rules_of(session, deployment))
        raise NotFound(
            f"deployment {deployment.id} has no alert rule {name!r} (rules: {names})", field="rule"
        )
    for key, value in changes.items():
        if value is not None:
            setattr(row, key, value)
    problem = to_rule(row).problem()
    if problem:
        raise InvalidInput(problem, field="rule")
    row.bad_streak = row.good_streak = 0
    row.last_window = None
    row.updated_at = utcnow()
    return row


# ---- evaluation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """An alert opened or cleared, for the webhook (after the commit)."""

    alert_id: int
    deployment_id: str
    rule: str
    kind: str
    state: str
    message: str
    value: float | None
    at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.alert_id,
            "deploymentId": self.deployment_id,
            "rule": self.rule,
            "kind": self.kind,
            "state": self.state,
            "message": self.message,
            "value": self.value,
            "at": self.at.isoformat(),
        }


def signal(session: Session, deployment: Deployment, rule: Rule, since: int, until: int) -> float | None:
    """The rule's signal over [since, until) epoch minutes, or None when the window holds no evidence."""
    if rule.kind in (RuleKind.ERROR_RATE, RuleKind.LATENCY_P95):
        found = buckets.buckets_between(session, deployment.id, since_minute=since, until_minute=until)
        if not found:
            return None
        summary = service_health.compute(
            found, since_minute=since, until_minute=until, resolution=service_health.Resolution.MINUTE
        ).summary
        if rule.kind is RuleKind.ERROR_RATE:
            return summary.server_error_rate
        return summary.response_time_ms.get("p95")
    if rule.kind is RuleKind.ACCURACY:
        _, stats, _ = accuracy.accuracy(
            session,
            deployment,
            since=dt.datetime.fromtimestamp(since * 60, dt.UTC),
            until=dt.datetime.fromtimestamp(until * 60, dt.UTC),
            period_minutes=until - since,
        )
        if stats.rows < MIN_ACCURACY_ROWS:
            return None
        return accuracy.metrics_of(stats).get(rule.metric or "")
    word = drift_status(session, deployment, since, until)
    return DRIFT_LEVELS.get(word or "")


def evaluate(session: Session, *, now: dt.datetime | None = None) -> list[Change]:
    """One pass over every live deployment's enabled rules: each judges its latest finished
    window once; alerts open and clear, each with its event. The changes, for the webhook."""
    now = now or utcnow()
    now_minute = int(now.timestamp() // 60)
    changes: list[Change] = []
    live = session.scalars(
        select(Deployment).where(Deployment.desired_state != DesiredState.DELETED).order_by(Deployment.id)
    )
    for deployment in live:
        for row in rules_of(session, deployment):
            if not row.enabled:
                continue
            rule = to_rule(row)
            window = now_minute // rule.window_minutes - 1  # the latest finished one
            if row.last_window is not None and row.last_window >= window:
                continue
            since = window * rule.window_minutes
            try:
                value = signal(session, deployment, rule, since, since + rule.window_minutes)
            except InvalidInput:  # e.g. a model whose target has no accuracy: never evidence
                value = None
            except Exception:
                log.exception("alerts: the %s signal of deployment %s failed", rule.name, deployment.id)
                value = None
            open_alert = session.scalar(
                select(Alert).where(
                    Alert.deployment_id == deployment.id, Alert.rule == rule.name, Alert.state == "open"
                )
            )
            state = RuleState(row.bad_streak, row.good_streak, open_alert is not None)
            state, transition = step(rule, state, value)
            row.bad_streak, row.good_streak, row.last_window = state.bad_streak, state.good_streak, window
            row.last_value = value
            if transition is not None:
                changes.append(_record(session, deployment, rule, open_alert, transition, value, now))
    return changes


def _record(
    session: Session,
    deployment: Deployment,
    rule: Rule,
    open_alert: Alert | None,
    transition: Transition,
    value: float | None,
    now: dt.datetime,
) -> Change:
    message = describe(rule, value, transition)
    if transition is Transition.OPENED:
        alert = Alert(
            deployment_id=deployment.id,
            rule=rule.name,
            kind=rule.kind.value,
            state="open",
            opened_at=now,
            message=message,
            value=value,
            threshold=rule.threshold,
        )
        session.add(alert)
    else:
        assert open_alert is not None
        alert = open_alert
        alert.state, alert.cleared_at, alert.value = "cleared", now, value
        alert.message = f"{alert.message}; cleared: {message}"
    session.flush()
    events.append(
        session,
        type=OPENED_EVENT if transition is Transition.OPENED else CLEARED_EVENT,
        actor=ACTOR,
        environment_id=deployment.environment_id,
        deployment_id=deployment.id,
        message=message,
        status="warning" if transition is Transition.OPENED else "ok",
        data={"alertId": alert.id, "rule": rule.name, "kind": rule.kind.value, "value": value},
        timestamp=now,
    )
    return Change(alert.id, deployment.id, rule.name, rule.kind.value, alert.state, message, value, now)


def list_alerts(
    session: Session,
    *,
    deployment_id: str | None = None,
    state: str | None = None,
    environment_id: str | None = None,
    limit: int = 1000,
) -> list[Alert]:
    statement = select(Alert)
    if deployment_id is not None:
        statement = statement.where(Alert.deployment_id == deployment_id)
    if state is not None:
        statement = statement.where(Alert.state == state)
    if environment_id is not None:
        owned = select(Deployment.id).where(Deployment.environment_id == environment_id)
        statement = statement.where(Alert.deployment_id.in_(owned))
    return list(session.scalars(statement.order_by(Alert.id.desc()).limit(limit)))


# ---- the webhook ---------------------------------------------------------------------------------


class Webhook:
    """POSTs each change as JSON to one URL from a thread of its own, retrying with back-off; a
    bearer secret, when set, is sent in the header and appears in logs only masked."""

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        *,
        attempts: int = 5,
        backoff: Backoff | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.attempts = attempts
        self.backoff = backoff or Backoff(initial=1.0, maximum=60.0, jitter=0.2)
        self._client = httpx.Client(timeout=10.0, transport=transport)
        self._stop = threading.Event()

    def send_all(self, changes: Sequence[Change]) -> None:
        """Deliver in the background (an alert never waits for a slow receiver)."""
        if changes:
            threading.Thread(target=self.deliver, args=(list(changes),), daemon=True).start()

    def deliver(self, changes: Sequence[Change]) -> bool:
        """Post the changes as one JSON body, retrying; True once the receiver answered 2xx."""
        body = orjson.dumps({"alerts": [c.to_json() for c in changes]})
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._client.post(self.url, content=body, headers=headers)
                if response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            log.warning(
                "alert webhook %s (secret %s): attempt %d of %d failed: %s",
                self.url,
                mask(self.secret) if self.secret else "none",
                attempt,
                self.attempts,
                problem,
            )
            if attempt < self.attempts and self._stop.wait(self.backoff.delay(attempt)):
                break
        log.error("alert webhook %s: %d alert changes were not delivered", self.url, len(changes))
        return False

    def close(self) -> None:
        self._stop.set()
        self._client.close()
