"""The deployments directory: one directory per deployment, for a prediction server to read.

Written by the filesystem plugin and by the prediction server's upload route, read
by the prediction server's watcher; this module is their one description of it::

    <root>/<prefix><deployment id>/
        <package, basename kept>
        <info file>   # YAML: deployment_id, model_id, model_file, package_sha256 (+ key/values)

One checksum: ``package_sha256``, the SHA-256 of the package. Directories written
before it record ``model_crc32`` (CRC-32 as 8 hex digits) instead, and hand-written
ones may say ``model_package_sha256``; both are still read (`recorded_checksum`).

Names starting with ``.`` are work in progress and every reader skips them: a
deployment is prepared beside its place (``.<dir>.<random>.new``) and renamed in
(`swap_into_place`: one atomic ``renameat2`` exchange where the kernel has it, else
the old one renamed aside as ``.swap`` first), and removed by renaming it aside
(``.old``) before it is deleted (`move_aside`). `leftovers` says what to do with what
an interrupted run left. Standard library only; YAML is the callers' (the plugin
SDK and the server read and write it with their own loaders). Imports nothing the
plugin runner does not load anyway (no ``typing``, ``dataclasses`` or ``shutil`` at
import time): the runner's start-up is measured in milliseconds.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the plugin runner ms
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PREFIX = "deployment_"
DEFAULT_INFO_FILE = "config.yml"

DEPLOYMENT_ID = "deployment_id"
MODEL_ID = "model_id"
MODEL_FILE = "model_file"
PACKAGE_SHA256 = "package_sha256"
"""The one checksum written: SHA-256 of the package, 64 hex digits."""
LEGACY_CRC32 = "model_crc32"
"""Read only: CRC-32 of the package, as the filesystem plugin recorded it before `PACKAGE_SHA256`."""
LEGACY_SHA256 = "model_package_sha256"
"""Read only: an older name of `PACKAGE_SHA256`, documented for hand-written directories."""

RESERVED_KEYS = (DEPLOYMENT_ID, MODEL_ID, MODEL_FILE, PACKAGE_SHA256, LEGACY_CRC32, LEGACY_SHA256)
"""Keys of the info file that belong to the layout; a deployment's key/values never override them."""

STALE_STAGING_SEC = 3600.0
"""A ``.new`` staging directory this old belongs to a run that died; it is swept."""

Discard = Callable[[str], None]
"""Deletes a directory that was renamed aside (at once, or later in the background)."""


def remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- names


def is_plain_name(name: str) -> bool:
    """A name that stays inside its directory: not empty, ``.`` or ``..``, no ``/`` or NUL."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def unsafe_id_reason(deployment_id: str) -> str | None:
    """Why ``deployment_id`` cannot name a directory safely, or None when it can."""
    if not is_plain_name(deployment_id) or deployment_id.startswith("."):
        return f"deployment id {deployment_id!r} cannot be used as a directory name"
    return None


def directory_name(prefix: str, deployment_id: str) -> str:
    return prefix + deployment_id


def deployment_id_of(name: str, prefix: str) -> str:
    """The deployment id a directory's name implies (the info file's ``deployment_id`` wins)."""
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


def is_work_in_progress(name: str) -> bool:
    """Entries starting with ``.`` are being written or removed: readers skip them."""
    return name.startswith(".")


def _aside(target: str, kind: str) -> str:
    """``<parent>/.<name>.<random>.<kind>``: beside ``target``, invisible to readers."""
    parent, name = os.path.split(target)
    return os.path.join(parent, f".{name}.{os.urandom(6).hex()}.{kind}")


# ---------------------------------------------------------------- the info file


def info_record(
    deployment_id: str,
    model_id: str | None,
    model_file: str,
    package_sha256: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the info file holds: ``extra`` key/values, then the layout's own keys (which win)."""
    record = {k: v for k, v in (extra or {}).items() if k not in RESERVED_KEYS}
    record.update(
        {
            DEPLOYMENT_ID: deployment_id,
            MODEL_ID: model_id,
            MODEL_FILE: model_file,
            PACKAGE_SHA256: package_sha256,
        }
    )
    return record


class Checksum:
    """The checksum an info file records for its package."""

    __slots__ = ("algorithm", "value")

    def __init__(self, algorithm: str, value: str) -> None:
        self.algorithm = algorithm  # "sha256" or "crc32"
        self.value = value

    def __repr__(self) -> str:
        return f"Checksum({self.algorithm!r}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checksum) and (self.algorithm, self.value) == (other.algorithm, other.value)

    def __hash__(self) -> int:
        return hash((self.algorithm, self.value))

    def problem(self, path: str, sha256: str | None = None) -> str | None:
        """Why the file at ``path`` does not match, or None. ``sha256``: the file's, when the
        caller has already computed it (then a SHA-256 check does not read the file again)."""
        actual = (sha256 or file_sha256(path)) if self.algorithm == "sha256" else file_crc32(path)
        if actual == self.value.lower():
            return None
        name, algorithm = os.path.basename(path), {"sha256": "SHA-256", "crc32": "CRC-32"}[self.algorithm]
        return f"{name}: {algorithm} {actual[:12]}… differs from the recorded {self.value[:12]}…"


def recorded_checksum(record: Mapping[str, Any]) -> Checksum | None:
    """The package's checksum as ``record`` (an info file) states it, or None when it states none."""
    for key, algorithm in ((PACKAGE_SHA256, "sha256"), (LEGACY_SHA256, "sha256"), (LEGACY_CRC32, "crc32")):
        value = record.get(key)
        if value:
            return Checksum(algorithm, str(value))
    return None


def file_sha256(path: str) -> str:
    import hashlib  # not at import time: the plugin runner starts without it

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_crc32(path: str) -> str:
    import zlib

    checksum = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            checksum = zlib.crc32(block, checksum)
    return f"{checksum:08x}"


def copy_with_sha256(source: str, destination: str) -> str:
    """Copy a file (keeping its mode) and return its SHA-256, reading it once."""
    import hashlib

    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(destination, "wb") as writer:
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
            writer.write(block)
    os.chmod(destination, stat.S_IMODE(os.stat(source).st_mode))
    return digest.hexdigest()


# ---------------------------------------------------------------- atomic replace


def staging_directory(target: str) -> str:
    """Make and return an empty ``.new`` directory beside ``target`` to prepare it in.

    Its name carries the writer's pid (``.<name>.<pid>-<random>.new``), so a sweep can
    tell a killed writer's half-written copy (discarded at once) from one in progress.
    """
    parent, name = os.path.split(target)
    staging = os.path.join(parent, f".{name}.{os.getpid()}-{os.urandom(6).hex()}.new")
    os.mkdir(staging)
    return staging


def _writer_pid(name: str) -> int | None:
    """The pid in a staging directory's name, or None for names written before pids were."""
    token = name.rsplit(".", 2)[-2] if name.count(".") >= 2 else ""
    pid, dash, _ = token.partition("-")
    return int(pid) if dash and pid.isdigit() else None


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (EPERM: it does, as another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def swap_into_place(staging: str, target: str, discard: Discard = remove_tree) -> bool:
    """Put ``staging`` at ``target`` with no moment at which ``target`` is missing; True when it
    replaced a deployment (which is then handed to ``discard``).

    On Linux the two directories are exchanged in one atomic ``renameat2`` call, so a
    reader (or a crash) never sees the deployment gone. Elsewhere the old one is
    renamed aside as ``.swap`` first; a crash in that short window leaves the
    ``.swap`` directory, which `leftovers` puts back.
    """
    try:
        os.rename(staging, target)
        return False
    except OSError:
        if not os.path.isdir(target):
            raise
    if exchange(staging, target):
        discard(staging)  # it now holds the previous deployment
        return True
    aside = _aside(target, "swap")
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(aside, target)  # put the previous deployment back
        raise
    discard(aside)
    return True


def move_aside(target: str, discard: Discard = remove_tree) -> None:
    """Remove a deployment: rename it aside as ``.old`` (atomic, instant), then ``discard`` it."""
    aside = _aside(target, "old")
    os.rename(target, aside)
    discard(aside)


def exchange(first: str, second: str) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # the kernel or file system cannot exchange: take the two-rename path
    raise OSError(code, os.strerror(code), second)


class Leftover:
    """What to do with one entry an interrupted run left: ``discard`` it, or ``restore`` it to ``target``."""

    __slots__ = ("action", "path", "target")

    def __init__(self, path: str, action: str, target: str | None = None) -> None:
        self.path = path
        self.action = action  # "discard" or "restore"
        self.target = target

    def __repr__(self) -> str:
        return f"Leftover({self.path!r}, {self.action!r}, {self.target!r})"


def leftovers(
    root: str,
    names: Iterable[str],
    prefix: str,
    now: float,
    mtime: Callable[[str], float],
    alive: Callable[[int], bool] = lambda pid: True,
) -> list[Leftover]:
    """Decide what to sweep among ``names`` in ``root`` (only the dot-entries of ``prefix``).

    Every ``.old`` (a removed deployment) is discarded; a ``.swap`` (the previous
    deployment of a replacement cut short) is restored when its place is empty,
    discarded otherwise; a ``.new`` (staging) is discarded when the writer its name
    records is no longer ``alive``, or once it is `STALE_STAGING_SEC` old (a writer on
    another machine sharing the directory, or a pid reused).
    """
    marker = "." + prefix
    found: list[Leftover] = []
    for name in names:
        if not name.startswith(marker):
            continue
        path = os.path.join(root, name)
        if name.endswith(".old"):
            found.append(Leftover(path, "discard"))
        elif name.endswith(".swap"):
            target = os.path.join(root, name[1:].rsplit(".", 2)[0])
            found.append(
                Leftover(path, "discard") if os.path.exists(target) else Leftover(path, "restore", target)
            )
        elif name.endswith(".new"):
            writer = _writer_pid(name)
            if writer is not None and not alive(writer):
                found.append(Leftover(path, "discard"))
                continue
            try:
                if now - mtime(path) > STALE_STAGING_SEC:
                    found.append(Leftover(path, "discard"))
            except OSError:
                continue
    return found


def sweep(root: str, prefix: str, discard: Discard = remove_tree, names: Iterable[str] | None = None) -> None:
    """Clear what interrupted runs left in ``root`` (see `leftovers`)."""
    import time

    try:
        names = os.listdir(root) if names is None else names
    except OSError:
        return
    for item in leftovers(root, names, prefix, time.time(), lambda p: os.stat(p).st_mtime, process_alive):
        if item.action == "restore" and item.target is not None:
            try:
                os.rename(item.path, item.target)
                continue
            except OSError:
                pass
        discard(item.path)
