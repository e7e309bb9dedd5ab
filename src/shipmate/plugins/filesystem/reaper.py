"""Deleting renamed-aside directories in one background thread, so stop and replace return at once."""

from __future__ import annotations

import _thread

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    import queue


class Reaper:
    """Deletes directories in one background thread, so stop and replace return at once.

    Whatever is still queued when the interpreter exits is deleted then (the runner
    writes its status file first), so nothing is left behind; what a killed process
    leaves stays under a dot-name, invisible to readers, and is swept later.
    """

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()  # threading and queue are imported on first use only
        self._busy = _thread.allocate_lock()
        self._queue: queue.SimpleQueue[str] | None = None

    def discard(self, path: str) -> None:
        with self._lock:
            if self._queue is None:
                import atexit
                import queue
                import threading

                self._queue = queue.SimpleQueue()
                worker = threading.Thread(target=self._run, name="fs-plugin-reaper", daemon=True)
                worker.start()
                atexit.register(self.drain)
        self._queue.put(path)

    def drain(self) -> None:
        """Delete everything queued, now, and wait for the deletion under way."""
        if self._queue is None:
            return
        import queue
        import shutil

        while True:
            try:
                path = self._queue.get_nowait()
            except queue.Empty:
                break
            shutil.rmtree(path, ignore_errors=True)
        with self._busy:
            pass

    def _run(self) -> None:
        import shutil

        assert self._queue is not None
        while True:
            path = self._queue.get()
            with self._busy:
                shutil.rmtree(path, ignore_errors=True)


REAPER = Reaper()
