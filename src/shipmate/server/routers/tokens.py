"""API tokens: created (the secret shown once), listed, revoked. Admin only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from shipmate.server import schemas
from shipmate.server.deps import AdminDep, RuntimeDep
from shipmate.server.services import tokens
from shipmate.server.views import token_out

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_token(runtime: RuntimeDep, caller: AdminDep, body: schemas.TokenCreate) -> schemas.TokenCreated:
    with runtime.db.write() as session:
        token, secret = tokens.create(
            session, name=body.name, kind=body.kind, environment_id=body.environment_id, actor=caller.actor
        )
        session.flush()
        return schemas.TokenCreated(token=token_out(token), secret=secret)


@router.get("")
def list_tokens(
    runtime: RuntimeDep,
    caller: AdminDep,
    include_revoked: Annotated[bool, Query(alias="includeRevoked")] = False,
) -> schemas.TokenList:
    with runtime.db.read() as session:
        return schemas.TokenList(
            items=[token_out(t) for t in tokens.list_all(session, include_revoked=include_revoked)]
        )


@router.delete("/{token_id}")
def revoke_token(runtime: RuntimeDep, caller: AdminDep, token_id: str) -> schemas.TokenOut:
    with runtime.db.write() as session:
        return token_out(tokens.revoke(session, token_id=token_id, actor=caller.actor))
