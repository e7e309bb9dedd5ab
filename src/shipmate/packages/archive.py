"""Reading ``.mlpkg`` zips safely: the only code that opens a package's members.

A package may come from anywhere, so before anything is read the zip's structure
is checked: member names that would escape the package (``..``, absolute paths,
drive letters, backslashes), links, duplicates, encrypted members, oversized
members and suspicious compression ratios (zip bombs) are refused. Member sizes
declared in the zip bound what is decompressed (``zipfile`` stops there and checks
the CRC), so the declared sizes are what the limits apply to.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from shipmate.packages.errors import PackageError
from shipmate.packages.manifest import MANIFEST_NAME, Manifest

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what a package may contain, on each member and on the whole package; the
    defaults suit models up to a few GB. Every reader (the service, `shipmate serve` uploads
    and ``--model``) applies the same limits, here."""

    max_members: int = 10_000
    max_member_bytes: int = 4 << 30  # uncompressed, per member
    max_total_bytes: int = 8 << 30  # uncompressed, all members
    max_manifest_bytes: int = 8 << 20
    max_compression_ratio: float = 200.0
    """Uncompressed ÷ compressed, for each member and for the whole package, once past
    ``ratio_floor_bytes`` uncompressed (small files of any ratio are harmless)."""
    ratio_floor_bytes: int = 1 << 20


DEFAULT_LIMITS = ReadLimits()


_MAX_NAME_BYTES = 255  # one path component, as Linux file systems allow
_MAX_PATH_BYTES = 4000  # a whole member path, below PATH_MAX with room for the destination


def check_member_name(name: str) -> str | None:
    """Why a member name is unsafe or cannot be extracted, or None when it stays inside the package."""
    if not name or "\x00" in name:
        return "empty name or NUL byte"
    if "\\" in name:
        return "backslash in path"
    if name.startswith("/") or _DRIVE.match(name):
        return "absolute path"
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "path escapes the package ('..', '.' or empty component)"
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES:
        return f"path longer than {_MAX_PATH_BYTES} bytes"
    if any(len(p.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES for p in parts):
        return f"a path component longer than {_MAX_NAME_BYTES} bytes"
    return None


def _is_link(info: zipfile.ZipInfo) -> bool:
    kind = stat.S_IFMT(info.external_attr >> 16)
    return kind not in (0, stat.S_IFREG, stat.S_IFDIR)  # links, devices, fifos


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise PackageError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PackageError(f"{path}: not a valid model package (zip): {exc}") from None


def _checked_members(zf: zipfile.ZipFile, where: str, limits: ReadLimits) -> dict[str, zipfile.ZipInfo]:
    """The package's file members by name, after refusing anything unsafe."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise PackageError(f"{where}: {len(infos)} members, more than the limit of {limits.max_members}")
    files: dict[str, zipfile.ZipInfo] = {}
    seen: set[str] = set()
    total = compressed = 0
    for info in infos:
        name = info.filename
        problem = check_member_name(name)
        if problem:
            raise PackageError(f"{where}: member {name!r} refused: {problem}")
        if name in seen:
            raise PackageError(f"{where}: member {name!r} appears twice")
        seen.add(name)
        if _is_link(info):
            raise PackageError(f"{where}: member {name!r} refused: links are not allowed")
        if info.flag_bits & 0x1:
            raise PackageError(f"{where}: member {name!r} refused: encrypted members are not allowed")
        if info.is_dir():
            continue
        if info.file_size > limits.max_member_bytes:
            raise PackageError(
                f"{where}: member {name!r} is {info.file_size} bytes uncompressed, "
                f"more than the limit of {limits.max_member_bytes}"
            )
        if info.file_size > limits.ratio_floor_bytes:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_compression_ratio:
                raise PackageError(
                    f"{where}: member {name!r} refused: compression ratio {ratio:.0f}:1 "
                    f"exceeds {limits.max_compression_ratio:.0f}:1 (zip bomb?)"
                )
        total += info.file_size
        compressed += info.compress_size
        if total > limits.max_total_bytes:
            raise PackageError(
                f"{where}: members total more than the limit of {limits.max_total_bytes} bytes"
                " uncompressed in all"
            )
        files[name] = info
    if total > limits.ratio_floor_bytes and total / max(compressed, 1) > limits.max_compression_ratio:
        raise PackageError(
            f"{where}: whole package refused: compression ratio {total / max(compressed, 1):.0f}:1 over "
            f"{len(files)} members exceeds {limits.max_compression_ratio:.0f}:1 (zip bomb?)"
        )
    _check_tree(files, where)
    return files


def _check_tree(files: dict[str, zipfile.ZipInfo], where: str) -> None:
    """Refuse a member that would need another member's file as its directory (``a`` and ``a/b``)."""
    for name in files:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in files:
                raise PackageError(f"{where}: member {name!r} refused: {parent!r} is a file")


def _load_manifest(
    zf: zipfile.ZipFile, files: dict[str, zipfile.ZipInfo], where: str, limits: ReadLimits
) -> Manifest:
    info = files.get(MANIFEST_NAME)
    if info is None:
        raise PackageError(f"{where}: no {MANIFEST_NAME} at the root of the package")
    if info.file_size > limits.max_manifest_bytes:
        raise PackageError(f"{where}: {MANIFEST_NAME} is larger than {limits.max_manifest_bytes} bytes")
    try:
        raw = json.loads(zf.read(info))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PackageError(f"{where}: {MANIFEST_NAME} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PackageError(f"{where}: {MANIFEST_NAME} must hold a JSON object")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise PackageError(f"{where}: invalid {MANIFEST_NAME}: {problems}") from None
    listed = set(manifest.files)
    present = set(files) - {MANIFEST_NAME}
    if listed - present:
        raise PackageError(f"{where}: files listed in the manifest are missing: {sorted(listed - present)}")
    if present - listed:
        raise PackageError(f"{where}: members not listed in the manifest: {sorted(present - listed)}")
    return manifest


def read_manifest(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> Manifest:
    """The package's manifest, after checking the zip's structure. Loads no model, runs no code.

    Safe on untrusted input; member checksums are not computed here (see `verify_package`).
    """
    path = Path(path)
    with _open_zip(path) as zf:
        files = _checked_members(zf, str(path), limits)
        return _load_manifest(zf, files, str(path), limits)


def _copy_hashing(src: IO[bytes], dst: IO[bytes] | None) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        if dst is not None:
            dst.write(chunk)
    return digest.hexdigest()


def _walk_members(path: Path, limits: ReadLimits, dest: Path | None) -> Manifest:
    where = str(path)
    with _open_zip(path) as zf:
        files = _checked_members(zf, where, limits)
        manifest = _load_manifest(zf, files, where, limits)
        for name, expected in sorted(manifest.files.items()):
            target = None
            try:
                if dest is not None:
                    target = dest / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(files[name]) as src:
                    if target is None:
                        actual = _copy_hashing(src, None)
                    else:
                        with open(target, "xb") as out:
                            actual = _copy_hashing(src, out)
            except (zipfile.BadZipFile, EOFError) as exc:
                raise PackageError(f"{where}: member {name!r} cannot be read: {exc}") from None
            except OSError as exc:  # the message names the member, never this machine's paths
                reason = exc.strerror or type(exc).__name__
                raise PackageError(f"{where}: member {name!r} cannot be extracted: {reason}") from None
            if actual != expected:
                raise PackageError(
                    f"{where}: checksum mismatch for {name!r}: the package was altered or corrupted"
                )
        if dest is not None:
            (dest / MANIFEST_NAME).write_bytes(zf.read(files[MANIFEST_NAME]))
        return manifest


def verify_package(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> Manifest:
    """`read_manifest` plus the SHA-256 of every member checked against the manifest."""
    return _walk_members(Path(path), limits, None)


def extract_package(
    path: str | os.PathLike[str], dest: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS
) -> Manifest:
    """Verify and unpack a package into ``dest`` (created; must not exist). Nothing is left on failure."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    try:
        return _walk_members(Path(path), limits, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a whole file (what the control plane records for a package)."""
    with open(path, "rb") as f:
        return _copy_hashing(f, None)
