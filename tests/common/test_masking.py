"""One masking rule for every place a secret could be seen."""

from __future__ import annotations

from shipmate.client.client import ShipmateClient
from shipmate.common.masking import mask
from shipmate.plugin.config import mask_secret, sanitized


def test_keeps_twelve_characters_and_hides_the_rest() -> None:
    assert mask("smt_abcdefghijklmnop") == "smt_abcdefgh*******"
    assert mask("short") == "short*******"


def test_the_sdk_and_the_client_use_it() -> None:
    token = "smt_0123456789abcdefghij"
    assert mask_secret(token) == mask(token)
    assert sanitized({"apiToken": token}) == {"apiToken": mask(token)}
    with ShipmateClient("http://127.0.0.1:9", token) as client:
        assert repr(client) == f"ShipmateClient('http://127.0.0.1:9', token={mask(token)!r})"
        assert "0123456789abcdefghij" not in repr(client)
