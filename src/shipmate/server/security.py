"""API tokens: generated here, stored only as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from shipmate.common.masking import VISIBLE_CHARS
from shipmate.server.models import TokenKind

TOKEN_PREFIX = "smt_"


def new_secret() -> str:
    """A fresh token secret: 32 random bytes, URL-safe, with a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def visible_prefix(secret: str) -> str:
    """The part of a secret that may be shown and logged, to tell tokens apart."""
    return secret[:VISIBLE_CHARS]


def hashes_match(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an admin, or an agent bound to one environment."""

    token_id: str
    kind: TokenKind
    environment_id: str | None
    name: str

    @property
    def is_admin(self) -> bool:
        return self.kind is TokenKind.ADMIN

    @property
    def actor(self) -> str:
        """What the event log records as the author of a change (cut to the column's 100 characters)."""
        return f"{self.kind.value}:{self.name}"[:100]

    def may_access_environment(self, environment_id: str) -> bool:
        return self.is_admin or self.environment_id == environment_id
