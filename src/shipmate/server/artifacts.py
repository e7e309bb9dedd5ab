"""Content-addressed artifact store on local disk.

Uploads are streamed chunk by chunk into a temporary file beside the store while
their SHA-256 is computed, then renamed to ``sha256/<ab>/<digest>``: a package is
never whole in memory, and a reader never sees a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from shipmate.server.errors import InvalidInput, PayloadTooLarge


@dataclass(frozen=True)
class StagedUpload:
    """An upload written to a temporary file, hashed and measured, not yet in the store."""

    path: Path
    sha256: str
    size: int


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging = root / "staging"
        self._staging.mkdir(parents=True, exist_ok=True)
        (root / "sha256").mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    async def stage(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> StagedUpload:
        """Write ``chunks`` to a staging file; raise ``PayloadTooLarge`` once ``max_bytes`` is passed."""
        digest = hashlib.sha256()
        size = 0
        fd, name = tempfile.mkstemp(dir=self._staging, suffix=".upload")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(
                            f"model package is larger than the limit of {max_bytes} bytes", field="body"
                        )
                    digest.update(chunk)
                    handle.write(chunk)
            if size == 0:
                raise InvalidInput(
                    "the upload is empty; send the package bytes as the request body", field="body"
                )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedUpload(path=path, sha256=digest.hexdigest(), size=size)

    def commit(self, staged: StagedUpload) -> Path:
        """Move a staged upload into the store (a no-op if the same content is already there)."""
        target = self.path_for(staged.sha256)
        if target.exists():
            staged.path.unlink(missing_ok=True)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(staged.path, 0o640)
        os.replace(staged.path, target)
        return target

    def discard(self, staged: StagedUpload) -> None:
        staged.path.unlink(missing_ok=True)
