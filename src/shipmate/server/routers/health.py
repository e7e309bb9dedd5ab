"""Liveness and readiness: the only routes that need no token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from shipmate.server.deps import RuntimeDep
from shipmate.server.services import alerts

router = APIRouter(tags=["health"])


@router.get("/health")
def health(runtime: RuntimeDep) -> dict[str, Any]:
    """200 when the process runs and its database answers; with a webhook set, its outbox
    (``alertWebhook``: pending, failing, dropped, the oldest pending change's age)."""
    with runtime.db.read() as session:
        session.execute(text("SELECT 1"))
        if runtime.webhook is None:
            return {"status": "ok"}
        return {"status": "ok", "alertWebhook": alerts.outbox_counts(session).to_json()}
