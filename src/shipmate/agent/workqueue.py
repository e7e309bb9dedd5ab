"""A keyed work queue: one deployment's work runs serially, different deployments in parallel.

The pattern of Kubernetes controllers (client-go's workqueue): a key added while
it waits is not queued twice, a key added while it is being processed is
queued again once its handler returns, and a handler may ask to be called
again after a delay (retry back-off) without holding a worker thread. The
number of worker threads is the global concurrency limit.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

Handler = Callable[[str], float | None]
"""Process one key; return None when done, or seconds after which to process it again."""


class KeyedWorkQueue:
    def __init__(self, handler: Handler, workers: int, name: str = "worker") -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        """Workers wait on it for keys."""
        self._timer_cond = threading.Condition(self._lock)
        """The delay thread waits on it for the next due key."""
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._tiebreak = itertools.count()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i + 1}", daemon=True) for i in range(workers)
        ]
        self._timer = threading.Thread(target=self._release_delayed, name=f"{name}-delays", daemon=True)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._timer.start()

    def add(self, key: str) -> None:
        with self._cond:
            self._add_locked(key)

    def add_all(self, keys: list[str]) -> None:
        with self._cond:
            for key in keys:
                self._add_locked(key)

    def _add_locked(self, key: str) -> None:
        if self._closing or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._closing:
                return
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._tiebreak), key))
            self._timer_cond.notify()

    @property
    def depth(self) -> int:
        """Keys waiting for a worker (not counting those being processed or delayed)."""
        with self._cond:
            return len(self._queue)

    @property
    def busy(self) -> int:
        with self._cond:
            return len(self._processing)

    def idle(self) -> bool:
        """Nothing queued, nothing being processed, no retry waiting for its delay."""
        with self._cond:
            return not self._queue and not self._processing and not self._delayed

    def close(self, timeout: float) -> bool:
        """Stop taking work; wait up to ``timeout`` for handlers in progress. True if all finished."""
        with self._cond:
            self._closing = True
            self._queue.clear()
            self._dirty.clear()
            self._delayed.clear()
            self._cond.notify_all()
            self._timer_cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                key = self._queue.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
            again: float | None = None
            try:
                again = self._handler(key)
            except Exception:  # a bug in a handler must not kill the worker
                log.exception("handler for %s raised; retrying it in 5s", key)
                again = 5.0
            with self._cond:
                self._processing.discard(key)
                if key in self._dirty and not self._closing:
                    self._queue.append(key)
                    self._cond.notify()
            if again is not None:
                self.add_after(key, again)

    def _release_delayed(self) -> None:
        with self._cond:
            while not self._closing:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key = heapq.heappop(self._delayed)
                    self._add_locked(key)
                timeout = self._delayed[0][0] - now if self._delayed else None
                self._timer_cond.wait(timeout)
