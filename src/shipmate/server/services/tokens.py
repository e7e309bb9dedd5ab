"""API tokens: created (secret shown once), listed, revoked, and resolved to a caller."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipmate.server import security
from shipmate.server.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from shipmate.server.models import ApiToken, TokenKind, utcnow
from shipmate.server.services import environments, events
from shipmate.server.services.ids import new_id


def create(
    session: Session,
    *,
    name: str,
    kind: TokenKind,
    environment_id: str | None,
    actor: str,
    secret: str | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; returns the record and the secret, which is not kept anywhere."""
    if kind is TokenKind.AGENT and environment_id is None:
        raise InvalidInput("an agent token must name the environment it is bound to", field="environmentId")
    if kind is TokenKind.ADMIN and environment_id is not None:
        raise InvalidInput(
            "an admin token is not bound to an environment; omit environmentId", field="environmentId"
        )
    if environment_id is not None:
        environments.get(session, environment_id)
    secret = secret or security.new_secret()
    token = ApiToken(
        id=new_id("t"),
        name=name,
        kind=kind,
        environment_id=environment_id,
        prefix=security.visible_prefix(secret),
        secret_hash=security.hash_secret(secret),
        created_by=actor,
    )
    session.add(token)
    events.append(
        session,
        type=events.EventType.TOKEN_CREATED,
        actor=actor,
        environment_id=environment_id,
        message=f"{kind.value} token {name} ({token.prefix}*******) created",
        data={"tokenId": token.id},
    )
    return token, secret


def list_all(session: Session, *, include_revoked: bool = False) -> list[ApiToken]:
    statement = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
    if not include_revoked:
        statement = statement.where(ApiToken.revoked_at.is_(None))
    return list(session.scalars(statement))


def revoke(session: Session, *, token_id: str, actor: str) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"token {token_id} not found", field="tokenId")
    if token.revoked_at is not None:
        raise Conflict(f"token {token_id} is already revoked", field="tokenId")
    if token.kind is TokenKind.ADMIN and _other_admins(session, token.id) == 0:
        raise Conflict(
            f"token {token_id} is the last admin token: create another admin token first"
            " (lost every admin token? `shipmate reset-admin-token --data-dir DIR` makes a new one)",
            field="tokenId",
        )
    token.revoked_at = utcnow()
    events.append(
        session,
        type=events.EventType.TOKEN_REVOKED,
        actor=actor,
        environment_id=token.environment_id,
        message=f"token {token.name} ({token.prefix}*******) revoked",
        data={"tokenId": token.id},
    )
    return token


def authenticate(session: Session, secret: str) -> security.Principal:
    """The caller behind a secret; unknown or revoked secrets are refused alike."""
    digest = security.hash_secret(secret)
    token = session.scalar(select(ApiToken).where(ApiToken.secret_hash == digest))
    if token is None or not security.hashes_match(secret, token.secret_hash) or token.revoked_at is not None:
        raise Unauthenticated("unknown or revoked API token")
    return security.Principal(
        token_id=token.id, kind=token.kind, environment_id=token.environment_id, name=token.name
    )


def has_admin(session: Session) -> bool:
    statement = select(ApiToken.id).where(ApiToken.kind == TokenKind.ADMIN, ApiToken.revoked_at.is_(None))
    return session.scalar(statement.limit(1)) is not None


def _other_admins(session: Session, token_id: str) -> int:
    statement = select(func.count(ApiToken.id)).where(
        ApiToken.kind == TokenKind.ADMIN, ApiToken.revoked_at.is_(None), ApiToken.id != token_id
    )
    return session.scalar(statement) or 0


def ensure_admin(session: Session, *, secret: str) -> bool:
    """Make sure ``secret`` is a valid admin token (used for a configured admin token): created
    if unknown, enabled again if it was revoked. True if anything changed."""
    digest = security.hash_secret(secret)
    existing = session.scalar(select(ApiToken).where(ApiToken.secret_hash == digest))
    if existing is not None:
        if existing.kind is not TokenKind.ADMIN:
            raise InvalidInput("the configured admin token is stored as an agent token", field="adminToken")
        if existing.revoked_at is None:
            return False
        existing.revoked_at = None
        events.append(
            session,
            type=events.EventType.TOKEN_CREATED,
            actor="system",
            message=f"admin token {existing.name} ({existing.prefix}*******) enabled again: it is configured",
            data={"tokenId": existing.id},
        )
        return True
    create(
        session,
        name="admin (configured)",
        kind=TokenKind.ADMIN,
        environment_id=None,
        actor="system",
        secret=secret,
    )
    return True


def reset_admin(session: Session) -> str:
    """Recovery when every admin token is lost: a new admin token; returns its secret."""
    _, secret = create(
        session, name="admin (recovered)", kind=TokenKind.ADMIN, environment_id=None, actor="system"
    )
    return secret
