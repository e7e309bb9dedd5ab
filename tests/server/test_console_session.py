"""The console's session: the REST API takes its cookie for reading, a change also needs the
session's CSRF token, and a session ends (plain HTTP: no browser needed)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipmate.server.console_session import CSRF_HEADER, Session, parse
from shipmate.server.settings import ServerSettings
from shipmate.server.testing import TEST_ADMIN_TOKEN, LiveServer, live_server


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None


@contextlib.contextmanager
def _signed_in(server: LiveServer, token: str = TEST_ADMIN_TOKEN) -> Iterator[tuple[httpx.Client, str]]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert client.post("/ui/login", data={"token": token}).status_code == 303
        page = client.get("/ui").text
        found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
        assert found, "the page carries the session's CSRF token"
        yield client, found.group(1)


def test_the_api_reads_with_the_cookie_and_changes_only_with_its_csrf_token(
    server: LiveServer, world: dict[str, Any]
) -> None:
    dep = world["deployment"]["id"]
    with _signed_in(server) as (client, csrf):
        assert client.get(f"/api/v1/deployments/{dep}").status_code == 200
        refused = client.post(f"/api/v1/deployments/{dep}/deactivate")
        assert refused.status_code == 403 and CSRF_HEADER in refused.json()["detail"]
        forged = client.post(f"/api/v1/deployments/{dep}/deactivate", headers={CSRF_HEADER: "0" * 64})
        assert forged.status_code == 403
        done = client.post(f"/api/v1/deployments/{dep}/deactivate", headers={CSRF_HEADER: csrf})
        assert done.status_code == 200, done.text


def test_the_cookie_is_httponly_strict_and_holds_no_more_than_the_session(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        answer = client.post("/ui/login", data={"token": TEST_ADMIN_TOKEN})
        header = answer.headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=strict" in header and "path=/" in header
        assert "secure" not in header  # plain HTTP here; behind TLS it is (test_small_holes.py)


def test_sign_out_needs_the_session_csrf_token(server: LiveServer) -> None:
    with _signed_in(server) as (client, csrf):
        client.post("/ui/logout", data={"csrf": "forged"})
        assert 'name="csrf-token"' in client.get("/ui").text  # a page elsewhere cannot sign us out
        client.post("/ui/logout", data={"csrf": csrf})
        assert 'name="token"' in client.get("/ui").text
        assert client.get("/api/v1/environments").status_code == 401


def test_a_session_expires(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path, console_session_s=2)
    with live_server(settings) as server, _signed_in(server) as (client, _):
        time.sleep(2.5)  # past the session's lifetime: the event under test, not a timing limit
        assert "Your session has ended" in client.get("/ui").text
        answer = client.get("/api/v1/environments")
        assert answer.status_code == 401 and "expired" in answer.json()["detail"]


def test_a_malformed_cookie_is_no_session() -> None:
    assert parse(None) is None and parse("") is None and parse("nodot") is None
    assert parse("12x.smt_a") is None and parse("12.") is None
    session = parse("1700000000.smt_token.with.dots")
    assert session == Session(token="smt_token.with.dots", issued_at=1700000000)
    assert session.csrf_matches(session.csrf) and not session.csrf_matches(None)
    assert Session("smt_other", 1700000000).csrf != session.csrf
    assert session.expired(1700000000 + 10, lifetime_s=5) and not session.expired(1700000001, lifetime_s=5)
