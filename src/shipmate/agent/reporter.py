"""Deliver reports to the service in order, in batches, retrying while it is unreachable.

One thread sends whatever has accumulated as one batch (no fixed delay: a lone
report goes out at once, a burst goes out together), so 1,000 deployments
starting at once cost a handful of requests rather than 2,000.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from shipmate.agent.ports import (
    ControlPlane,
    ControlPlaneRejected,
    ControlPlaneUnavailable,
    Report,
    ReportOutcome,
)
from shipmate.common.backoff import Backoff

log = logging.getLogger(__name__)

MAX_BATCH = 500


class Reporter:
    def __init__(
        self,
        service: ControlPlane,
        environment_id: str,
        on_outcome: Callable[[Sequence[Report], ReportOutcome], None] | None = None,
        backoff: Backoff = Backoff(0.2, 30.0),
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        self._service = service
        self._environment_id = environment_id
        self._on_outcome = on_outcome
        self._on_connection = on_connection
        self._backoff = backoff
        self._pending: deque[Report] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._sending = False
        self._thread = threading.Thread(target=self._loop, name="reporter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, report: Report) -> None:
        with self._cond:
            self._pending.append(report)
            self._cond.notify()

    @property
    def backlog(self) -> int:
        with self._cond:
            return len(self._pending) + (1 if self._sending else 0)

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far was delivered (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._sending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def close(self, timeout: float) -> bool:
        if self._thread.ident is None:  # never started: nothing was sent, nothing to wait for
            return not self._pending
        delivered = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(1.0)
        if not delivered:
            log.warning("%d report(s) could not be delivered before shutdown", self.backlog)
        return delivered

    def _loop(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing and not self._pending:
                    return
                batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
                self._sending = True
            try:
                outcome = self._service.report(self._environment_id, batch)
            except ControlPlaneUnavailable as exc:
                with self._cond:
                    self._pending.extendleft(reversed(batch))
                    self._sending = False
                    closing = self._closing
                if self._on_connection:
                    self._on_connection(False)
                if closing:
                    return
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("service unreachable while reporting (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                continue
            except ControlPlaneRejected as exc:
                log.error("service rejected %d report(s): %s", len(batch), exc)
                outcome = ReportOutcome()
            except Exception:
                log.exception("unexpected error while reporting; dropping %d report(s)", len(batch))
                outcome = ReportOutcome()
            failures = 0
            if self._on_connection:
                self._on_connection(True)
            if self._on_outcome is not None:
                try:
                    self._on_outcome(batch, outcome)
                except Exception:
                    log.exception("report outcome handler failed")
            with self._cond:
                self._sending = False
                self._cond.notify_all()
