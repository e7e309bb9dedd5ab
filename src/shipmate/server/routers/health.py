"""Liveness and readiness: the only routes that need no token."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from shipmate.server.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(runtime: RuntimeDep) -> dict[str, str]:
    """200 when the process runs and its database answers."""
    with runtime.db.read() as session:
        session.execute(text("SELECT 1"))
    return {"status": "ok"}
