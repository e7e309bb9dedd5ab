"""Run one external plugin command: its own process group, a hard timeout, output to a file.

Timing uses a blocking ``wait()`` with a watchdog timer rather than
``Popen.wait(timeout=...)``, which polls and adds up to 50 ms per action. On
timeout the whole process group gets SIGTERM, then SIGKILL after a grace period,
so a runner that spawned children leaves nothing behind. Output goes to a file,
not a pipe, so a grandchild that keeps the descriptor open cannot hang us.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

KILL_GRACE_SECONDS = 3.0
OUTPUT_TAIL_BYTES = 2000


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    returncode: int | None
    """None when the command could not be started at all."""
    timed_out: bool
    duration: float
    output_tail: str
    start_error: str | None = None


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    output_path: Path,
    cwd: Path | None = None,
    track: Callable[[int, bool], None] | None = None,
) -> CommandOutcome:
    """Run ``argv`` to completion or until ``timeout`` seconds, then kill its process group.

    ``track(pid, running)`` is told when the process starts and ends, so an owner can kill the
    groups still running when it shuts down.
    """
    started = time.perf_counter()
    with open(output_path, "wb") as output:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            return CommandOutcome(
                None,
                False,
                time.perf_counter() - started,
                "",
                start_error=f"cannot run {argv[0]!r}: {exc.strerror}",
            )
        expired = threading.Event()

        def _expire() -> None:
            expired.set()
            _signal_group(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + KILL_GRACE_SECONDS
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    break
                time.sleep(0.05)
            _signal_group(process.pid, signal.SIGKILL)

        if track is not None:
            track(process.pid, True)
        watchdog = threading.Timer(timeout, _expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            returncode = process.wait()
        finally:
            watchdog.cancel()
            if track is not None:
                track(process.pid, False)
        if expired.is_set():
            _signal_group(process.pid, signal.SIGKILL)  # stragglers that ignored SIGTERM
    duration = time.perf_counter() - started
    return CommandOutcome(returncode, expired.is_set(), duration, _tail(output_path))


def kill_groups(pids: Sequence[int], grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM each process group, then SIGKILL whatever is left after ``grace`` seconds."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        _signal_group(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - OUTPUT_TAIL_BYTES))
            return handle.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
