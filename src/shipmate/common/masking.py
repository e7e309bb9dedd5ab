"""How a secret appears wherever it could be seen: its first 12 characters and ``*******``.

The same form DataRobot's runner logs tokens in, so a token can be told apart from
another (the service shows the same 12-character prefix) but never read back.
"""

from __future__ import annotations

VISIBLE_CHARS = 12
"""Characters of a secret that may be shown; the service keeps the same prefix to tell tokens apart."""
MASK = "*******"


def mask(secret: object) -> str:
    """``secret``'s first ``VISIBLE_CHARS`` characters followed by ``*******``."""
    return f"{str(secret)[:VISIBLE_CHARS]}{MASK}"
