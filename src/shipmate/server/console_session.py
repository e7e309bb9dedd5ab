"""The web console's session: what its cookie holds, when it expires, and its CSRF token (pure).

The cookie holds ``<issued unix seconds>.<API token>``: the console signs in with an API token and
keeps no state on the server, so any replica accepts the session. It is ``HttpOnly`` (page scripts
cannot read it), ``SameSite=Strict`` and ``Secure`` behind TLS. Whoever holds the cookie already
holds the token, so the issue time needs no signature: expiry protects a forgotten browser, not
against the token's holder. Every request that changes something with the cookie (instead of an
``Authorization`` header) must carry ``X-CSRF-Token``: an HMAC of the issue time keyed by the
token, which only a page the service rendered for this session knows.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

COOKIE = "shipmate_session"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_LIFETIME_S = 8 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Session:
    token: str
    issued_at: int

    def cookie_value(self) -> str:
        return f"{self.issued_at}.{self.token}"

    @property
    def csrf(self) -> str:
        return hmac.new(self.token.encode(), f"csrf:{self.issued_at}".encode(), hashlib.sha256).hexdigest()

    def expired(self, now: float, lifetime_s: float) -> bool:
        return not (self.issued_at - 60 <= now < self.issued_at + lifetime_s)

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)


def parse(value: str | None) -> Session | None:
    """A cookie's session, or ``None`` for a missing or malformed one."""
    if not value or "." not in value:
        return None
    issued, _, token = value.partition(".")
    if not issued.isdigit() or not token or len(token) > 200:
        return None
    return Session(token=token, issued_at=int(issued))
