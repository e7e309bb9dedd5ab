"""Wakes long polls and event streams when the event log grows.

Truth lives in the database, so this works across replicas: while anyone waits,
one task per process checks the newest event id every ``poll_interval`` seconds
(a primary-key lookup). A write made by this process wakes the waiters at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from anyio import to_thread

from shipmate.server.db import Database
from shipmate.server.services import events

log = logging.getLogger(__name__)


class ChangeFeed:
    def __init__(self, db: Database, *, poll_interval: float) -> None:
        self._db = db
        self._poll_interval = poll_interval
        self._latest = 0
        self._changed: asyncio.Condition | None = None
        self._nudge: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters = 0
        self._poller: asyncio.Task[None] | None = None

    @property
    def latest(self) -> int:
        """The newest event id this process knows of."""
        return self._latest

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Condition()
        self._nudge = asyncio.Event()
        self._latest = await to_thread.run_sync(self._read_latest)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
            self._poller = None

    def wake_threadsafe(self) -> None:
        """Called after a local write commits (from any thread): check the log now."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._nudge is not None:
            loop.call_soon_threadsafe(self._nudge.set)

    async def wait_beyond(self, mark: int, timeout: float) -> bool:
        """Wait until an event newer than ``mark`` exists (True) or ``timeout`` seconds pass (False)."""
        assert self._changed is not None, "ChangeFeed.start() was not awaited"
        if self._latest > mark:
            return True
        deadline = time.monotonic() + timeout
        self._waiters += 1
        self._ensure_poller()
        try:
            async with self._changed:
                while self._latest <= mark:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    try:
                        await asyncio.wait_for(self._changed.wait(), remaining)
                    except TimeoutError:
                        return self._latest > mark
            return True
        finally:
            self._waiters -= 1

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        assert self._changed is not None and self._nudge is not None
        failing = False
        while self._waiters > 0:
            self._nudge.clear()  # before reading, so a write committed meanwhile is not missed
            try:
                latest = await to_thread.run_sync(self._read_latest)
            except Exception as exc:  # the database may be restarting: keep waiting, try again
                if not failing:  # one line per outage, not one per poll
                    log.warning("could not read the newest event id (%s); retrying", _reason(exc))
                failing = True
                latest = self._latest
            else:
                if failing:
                    log.warning("reading the event log again")
                failing = False
            if latest > self._latest:
                self._latest = latest
                async with self._changed:
                    self._changed.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), self._poll_interval)
        self._poller = None

    def _read_latest(self) -> int:
        with self._db.read() as session:
            return events.latest_id(session)


def _reason(exc: Exception) -> str:
    """The driver's own words for a database error (SQLAlchemy's wrapper adds a page of context)."""
    original = getattr(exc, "orig", None)
    return f"{type(exc).__name__}: {original if original is not None else exc}".strip()
