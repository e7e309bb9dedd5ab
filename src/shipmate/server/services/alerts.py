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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
import orjson
from sqlalchemy import CursorResult, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, lazyload
from sqlalchemy.orm.attributes import set_committed_value

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
from shipmate.server.db import Database
from shipmate.server.errors import InvalidInput, NotFound
from shipmate.server.models import Alert, AlertDelivery, AlertRule, Deployment, utcnow
from shipmate.server.services import accuracy, events
from shipmate.server.services import drift as drift_service
from shipmate.server.services import monitoring as buckets

log = logging.getLogger(__name__)

OPENED_EVENT = EventType.ALERT_OPENED
CLEARED_EVENT = EventType.ALERT_CLEARED
ACTOR = "shipmate-alerts"
PENDING, DELIVERED, DROPPED = "pending", "delivered", "dropped"


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


@dataclass(frozen=True)
class Judged:
    """One rule's signal over its latest finished window, read outside the write transaction;
    `apply` judges it only if the rule is still what it was when the signal was read."""

    deployment_id: str
    rule: Rule
    window: int
    value: float | None


def gather(session: Session, *, now: dt.datetime | None = None) -> list[Judged]:
    """Read every live deployment's due signals (drift, accuracy, service health): the slow part
    of a pass, needing no write lock. Rules not stored yet are judged by their defaults."""
    now = now or utcnow()
    now_minute = int(now.timestamp() // 60)
    judged: list[Judged] = []
    live = session.scalars(
        select(Deployment).where(Deployment.desired_state != DesiredState.DELETED).order_by(Deployment.id)
    ).all()
    stored: dict[str, dict[str, AlertRule]] = {}
    for row in session.scalars(
        select(AlertRule).where(AlertRule.deployment_id.in_([d.id for d in live])).order_by(AlertRule.id)
    ):
        stored.setdefault(row.deployment_id, {})[row.name] = row
    for deployment in live:
        rows = stored.get(deployment.id, {})
        rules = [(to_rule(r), r.last_window) for r in rows.values()]
        rules += [
            (r, None) for r in default_rules(deployment.model_package.target_type) if r.name not in rows
        ]
        for rule, last_window in rules:
            if not rule.enabled:
                continue
            window = now_minute // rule.window_minutes - 1  # the latest finished one
            if last_window is not None and last_window >= window:
                continue
            since = window * rule.window_minutes
            try:
                value = signal(session, deployment, rule, since, since + rule.window_minutes)
            except InvalidInput:  # e.g. a model whose target has no accuracy: never evidence
                value = None
            except Exception:
                log.exception("alerts: the %s signal of deployment %s failed", rule.name, deployment.id)
                value = None
            judged.append(Judged(deployment.id, rule, window, value))
    return judged


def apply(
    session: Session, judged: Sequence[Judged], *, now: dt.datetime | None = None, outbox: bool = False
) -> list[Change]:
    """Step each judged rule and open or clear its alert, with its event and (``outbox``) its
    webhook delivery: the short write. A window already judged (by another evaluator) or a rule
    edited since its signal was read is skipped, so two evaluators give the result of one."""
    now = now or utcnow()
    changes: list[Change] = []
    by_deployment: dict[str, list[Judged]] = {}
    for item in judged:
        by_deployment.setdefault(item.deployment_id, []).append(item)
    ids = list(by_deployment)
    live = {
        d.id: d
        for d in session.scalars(
            select(Deployment)
            .where(Deployment.id.in_(ids), Deployment.desired_state != DesiredState.DELETED)
            .options(lazyload(Deployment.model_package))  # its manifest only for new default rules
        )
    }
    stored: dict[str, dict[str, AlertRule]] = {}
    for each in session.scalars(select(AlertRule).where(AlertRule.deployment_id.in_(ids))):
        stored.setdefault(each.deployment_id, {})[each.name] = each
    open_alerts = {
        (a.deployment_id, a.rule): a
        for a in session.scalars(select(Alert).where(Alert.deployment_id.in_(ids), Alert.state == "open"))
    }
    steps: list[dict[str, Any]] = []
    stepped: list[AlertRule] = []
    for deployment_id, items in by_deployment.items():
        deployment = live.get(deployment_id)
        if deployment is None:
            continue
        rows = stored.get(deployment_id, {})
        if any(item.rule.name not in rows for item in items):  # the defaults, stored on first use
            rows = {r.name: r for r in rules_of(session, deployment)}
        for item in items:
            row = rows.get(item.rule.name)
            if row is None or to_rule(row) != item.rule:
                continue
            if row.last_window is not None and row.last_window >= item.window:
                continue
            rule, value = item.rule, item.value
            open_alert = open_alerts.get((deployment.id, rule.name))
            state = RuleState(row.bad_streak, row.good_streak, open_alert is not None)
            state, transition = step(rule, state, value)
            steps.append(
                {"id": row.id, "bad_streak": state.bad_streak, "good_streak": state.good_streak,
                 "last_window": item.window, "last_value": value}
            )  # fmt: skip
            stepped.append(row)
            if transition is not None:
                change = _record(session, deployment, rule, open_alert, transition, value, now)
                changes.append(change)
                if outbox:
                    enqueue(session, change)
    if steps:  # one statement for every rule stepped, not one each: the write lock is held meanwhile
        session.execute(update(AlertRule), steps)
        for row, values in zip(stepped, steps, strict=True):  # what the rows now hold, not dirty
            for key in ("bad_streak", "good_streak", "last_window", "last_value"):
                set_committed_value(row, key, values[key])
    return changes


def evaluate(session: Session, *, now: dt.datetime | None = None, outbox: bool = False) -> list[Change]:
    """One pass in one session (`gather` then `apply`): each enabled rule of every live
    deployment judges its latest finished window once; alerts open and clear, each with its event."""
    now = now or utcnow()
    return apply(session, gather(session, now=now), now=now, outbox=outbox)


def enqueue(session: Session, change: Change) -> AlertDelivery:
    """The change into the webhook's outbox, in the caller's transaction (the alert's own)."""
    row = AlertDelivery(
        alert_id=change.alert_id,
        deployment_id=change.deployment_id,
        state=PENDING,
        body=orjson.dumps({"alerts": [change.to_json()]}).decode(),
        created_at=change.at,
        attempts=0,
        next_attempt_at=change.at,
    )
    session.add(row)
    return row


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


DELIVERY_HEADER = "X-Shipmate-Delivery"
"""Each POST carries its outbox row's id here: the same change posted twice (at least once) carries
the same id, so a receiver de-duplicates on it."""

CLAIM = dt.timedelta(seconds=60)
"""SQLite's claim on a delivery being posted (longer than the client's timeout): another process
skips the row meanwhile, and takes it over if this one died."""


class Webhook:
    """POSTs alert changes as JSON to one URL; a bearer secret, when set, is sent in the header and
    appears in logs only masked."""

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def post(self, body: str | bytes, delivery_id: int) -> tuple[bool, str | None]:
        """One attempt: (receiver reached, problem); the problem is None once it answered 2xx."""
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: str(delivery_id)}
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, None if response.status_code < 300 else f"HTTP {response.status_code}"

    @property
    def shown_secret(self) -> str:
        return mask(self.secret) if self.secret else "none"

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class OutboxCounts:
    """The outbox's state, for ``/health``: ``failing`` is pending after at least one failed try."""

    pending: int
    failing: int
    dropped: int
    oldest_pending_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "failing": self.failing,
            "dropped": self.dropped,
            "oldestPendingSeconds": self.oldest_pending_seconds,
        }


def outbox_counts(session: Session, *, now: dt.datetime | None = None) -> OutboxCounts:
    now = now or utcnow()
    found: dict[str, int] = {
        state: count
        for state, count in session.execute(
            select(AlertDelivery.state, func.count()).group_by(AlertDelivery.state)
        ).all()
    }
    failing = session.scalar(
        select(func.count()).where(AlertDelivery.state == PENDING, AlertDelivery.attempts > 0)
    )
    oldest = session.scalar(select(func.min(AlertDelivery.created_at)).where(AlertDelivery.state == PENDING))
    return OutboxCounts(
        pending=found.get(PENDING, 0),
        failing=failing or 0,
        dropped=found.get(DROPPED, 0),
        oldest_pending_seconds=None if oldest is None else round((now - oldest).total_seconds(), 3),
    )


def _head() -> Any:
    """Pending rows that are the oldest pending of their deployment (only those may be sent: order)."""
    earlier = aliased(AlertDelivery)
    return ~exists().where(
        earlier.deployment_id == AlertDelivery.deployment_id,
        earlier.state == PENDING,
        earlier.id < AlertDelivery.id,
    )


class Deliverer:
    """Posts the outbox to the webhook from a thread of its own: each deployment's changes in
    order, each until the receiver answers 2xx (capped exponential back-off per row, kept in the
    row, so a restart resumes where it was), dropping what is older than ``retention``.

    Two processes share the work: on PostgreSQL a row is locked (``FOR UPDATE SKIP LOCKED``) while it
    is posted and marked delivered in that transaction, so each change is posted once (twice only if
    a process dies between the receiver's answer and its commit); on SQLite a short write claims the
    row for `CLAIM`, so a second post happens only if a post outlasts the claim. Neither path takes
    the service's write lock while posting, so alert evaluation and ingest never wait for a receiver.
    """

    def __init__(
        self,
        db: Database,
        webhook: Webhook,
        *,
        retention: dt.timedelta = dt.timedelta(days=7),
        backoff: Backoff | None = None,
        idle_seconds: float = 5.0,
    ) -> None:
        self.db = db
        self.webhook = webhook
        self.retention = retention
        self.backoff = backoff or Backoff(initial=1.0, maximum=300.0, jitter=0.2)
        self.idle_seconds = idle_seconds
        self.dropped = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._down = 0  # consecutive rounds the receiver could not be reached

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="alert-webhook", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New changes were committed: look now rather than at the next idle poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.webhook.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self.idle_seconds
            try:
                self.sweep()
                self.run_once()
                if self._down:
                    wait = self.backoff.delay(self._down)
            except Exception as exc:  # the database is away: the next round retries
                log.warning("alert webhook: delivery round failed, retried in %.0f s: %s", wait, exc)
            self._wake.wait(wait)
            self._wake.clear()

    def run_once(self, *, now: Callable[[], dt.datetime] = utcnow) -> int:
        """Post every due head of the outbox once; the number delivered. A receiver that cannot be
        reached ends the round (the loop then waits the back-off); an error answer only that row."""
        delivered = 0
        while not self._stop.is_set():
            outcome = self._deliver_one(now())
            if outcome is None:
                break
            if outcome == "unreachable":
                self._down += 1
                break
            self._down = 0
            delivered += outcome == "delivered"
        return delivered

    def _deliver_one(self, now: dt.datetime) -> str | None:
        due = (
            select(AlertDelivery)
            .where(AlertDelivery.state == PENDING, AlertDelivery.next_attempt_at <= now, _head())
            .order_by(AlertDelivery.id)
            .limit(1)
        )
        if self.db.is_postgres:
            with Session(self.db.engine) as session:  # no service write lock: only this row's
                row = session.scalar(due.with_for_update(skip_locked=True))
                if row is None:
                    return None
                outcome = self._post(row, now)
                session.commit()
                return outcome
        with self.db.write() as session:  # SQLite: one writer; the claim is short
            row = session.scalar(
                due.where(or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until < now))
            )
            if row is None:
                return None
            row.claimed_until = now + CLAIM
            claimed = (row.id, row.body, row.attempts, row.created_at)
        posted = AlertDelivery(id=claimed[0], body=claimed[1], attempts=claimed[2], created_at=claimed[3])
        outcome = self._post(posted, now)
        with self.db.write() as session:
            stored = session.get(AlertDelivery, claimed[0])
            if stored is not None and stored.state == PENDING:
                stored.state, stored.attempts = posted.state, posted.attempts
                stored.next_attempt_at, stored.delivered_at = posted.next_attempt_at, posted.delivered_at
                stored.last_error, stored.claimed_until = posted.last_error, None
        return outcome

    def _post(self, row: AlertDelivery, now: dt.datetime) -> str:
        """Post one row and record the outcome in it (the caller commits)."""
        reached, problem = self.webhook.post(row.body, row.id)
        if problem is None:
            row.state, row.delivered_at, row.last_error = DELIVERED, utcnow(), None
            row.next_attempt_at = now
            return "delivered"
        row.attempts = (row.attempts or 0) + 1
        delay = self.backoff.delay(row.attempts)
        row.next_attempt_at = now + dt.timedelta(seconds=delay)
        row.last_error = problem[:500]
        row.state = PENDING
        log.warning(
            "alert webhook %s (secret %s): delivery %d, attempt %d failed, next in %.1f s: %s",
            self.webhook.url,
            self.webhook.shown_secret,
            row.id,
            row.attempts,
            delay,
            problem,
        )
        return "failed" if reached else "unreachable"

    def sweep(self, *, now: dt.datetime | None = None) -> int:
        """Drop what waited longer than the retention (one log line), forget what was delivered or
        dropped that long ago; the number dropped now."""
        now = now or utcnow()
        cutoff = now - self.retention
        stale = (AlertDelivery.state == PENDING, AlertDelivery.created_at < cutoff)
        with self._session() as session:
            ids = select(AlertDelivery.id).where(*stale)
            if self.db.is_postgres:
                ids = ids.with_for_update(skip_locked=True)
            result = session.execute(
                update(AlertDelivery)
                .where(AlertDelivery.id.in_(ids.scalar_subquery()))
                .values(state=DROPPED, delivered_at=now)
                .execution_options(synchronize_session=False)
            )
            dropped = cast("CursorResult[Any]", result).rowcount
            session.execute(
                delete(AlertDelivery)
                .where(AlertDelivery.state.in_((DELIVERED, DROPPED)), AlertDelivery.delivered_at < cutoff)
                .execution_options(synchronize_session=False)
            )
        if dropped:
            self.dropped += dropped
            log.error(
                "alert webhook %s: dropped %d alert changes never delivered within %s (retention)",
                self.webhook.url,
                dropped,
                self.retention,
            )
        return int(dropped or 0)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A short write outside the service's write lock on PostgreSQL (the outbox is its own)."""
        if not self.db.is_postgres:
            with self.db.write() as session:
                yield session
            return
        with Session(self.db.engine) as session:
            yield session
            session.commit()
