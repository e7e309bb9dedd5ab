"""Resource ids: a type letter and 16 random hex digits (``d-3f2a…``): safe in file and k8s names."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"
