"""One worker process of the prediction server: what its endpoints share, and its lifecycle.

A worker loads every configured model before it accepts connections (each worker
process does this itself, so a worker that is still loading never receives a
request), then follows the deployments directory, and joins its sibling workers
for fan-out (`shipmate.serving.fanout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from starlette.applications import Starlette

from shipmate.serving.dataplane import DataPlane, ScoreHook
from shipmate.serving.deployments import Failure, Registry, discard, load_deployment
from shipmate.serving.edge import Access
from shipmate.serving.fanout import LoadGauge, Membership
from shipmate.serving.management import Manager
from shipmate.serving.settings import ServeSettings
from shipmate.serving.watcher import DirectoryWatcher

log = logging.getLogger(__name__)


class Worker:
    """State shared by the endpoints of one worker process."""

    def __init__(self, settings: ServeSettings, hooks: Sequence[ScoreHook] = ()) -> None:
        self.settings = settings
        self.registry = Registry()
        self.dataplane = DataPlane(self.registry, hooks)
        self.work_dir = Path(settings.work_dir or tempfile.gettempdir()) / f"shipmate-serve-{os.getpid()}"
        self.watcher: DirectoryWatcher | None = None
        self.manager: Manager | None = None
        if settings.deployments_dir is not None:
            settings.deployments_dir.mkdir(parents=True, exist_ok=True)
            self.watcher = DirectoryWatcher(
                self.registry,
                settings.deployments_dir,
                work_dir=self.work_dir,
                prefix=settings.deployment_dir_prefix,
                info_file=settings.deployment_info_file,
                poll_interval=settings.poll_interval_s,
                unload_after=settings.unload_after_scans,
                compile=settings.compile,
            )
            self.manager = Manager(self.registry, self.watcher, allow_pickled=settings.allow_pickled_uploads)
        key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        self.access = Access(key, for_predictions=settings.require_key_for_predictions)
        self.membership = Membership(LoadGauge())  # until the worker joins its siblings

    @property
    def inflight(self) -> LoadGauge:
        """The prediction requests being scored by this worker (siblings read it)."""
        return self.membership.gauge

    async def load_single(self) -> None:
        model = self.settings.model
        assert model is not None
        self.registry.pending.add("default")
        try:
            dep = await asyncio.to_thread(
                load_deployment,
                model,
                deployment_id=self.settings.deployment_id,
                key="default",
                work_dir=self.work_dir,
                model_id=self.settings.model_id,
                compile=self.settings.compile,
            )
        except Exception as exc:
            log.error("model %s cannot be loaded: %s", model, exc)
            self.registry.fail(Failure(key="default", error=str(exc), fingerprint=""))
        else:
            self.registry.publish(dep)
            log.info(
                "model %s %s ready as deployment %s (%s input, %s scorer: %s)",
                dep.manifest.name,
                dep.manifest.version,
                dep.id,
                dep.model.input_kind,
                dep.model.scoring.scorer,
                dep.model.scoring.note,
            )
        self.registry.initialized = True

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Load every configured model before accepting connections, then follow changes."""
        task: asyncio.Task[None] | None = None
        if self.watcher is not None:
            try:
                await self.watcher.sync()
            except Exception:
                log.exception("the first scan of %s failed", self.watcher.root)
            self.registry.initialized = True
            task = asyncio.create_task(self.watcher.run())
        else:
            await self.load_single()
        gc.freeze()  # what start-up made lives as long as the worker: keep it out of every collection
        peers = self.settings.peer_dir if self.settings.fanout else None
        self.membership = await Membership.join(peers, self.registry, self.dataplane)
        try:
            yield
        finally:
            await self.membership.leave()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for dep in self.registry.all():
                discard(dep)
            with contextlib.suppress(OSError):
                self.work_dir.rmdir()
