"""Tokens: every route but health needs one; stored hashed; shown once; revocable."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from shipmate.server.settings import ServerSettings
from shipmate.server.testing import TEST_ADMIN_TOKEN, live_server

V1 = "/api/v1"


def test_every_route_but_health_needs_a_token(server: Any):
    with httpx.Client(base_url=server.base_url) as anonymous:
        assert anonymous.get(f"{V1}/health").status_code == 200
        spec = anonymous.get(f"{V1}/openapi.json").json()
        checked = 0
        for path, operations in spec["paths"].items():
            if path.endswith("/health"):
                continue
            for method in operations:
                url = path.replace("{", "").replace("}", "")
                response = anonymous.request(method.upper(), url)
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.headers["WWW-Authenticate"] == "Bearer"
                checked += 1
        assert checked > 20
        bad = anonymous.get(f"{V1}/environments", headers={"Authorization": "Bearer smt_wrong"})
        assert bad.status_code == 401


def test_tokens_are_stored_as_hashes_and_shown_once(api: httpx.Client, world: dict[str, Any], settings: Any):
    created = api.post(f"{V1}/tokens", json={"name": "ci", "kind": "admin"}).json()
    secret = created["secret"]
    assert created["token"]["prefix"] == secret[:12]
    listing = api.get(f"{V1}/tokens").text
    assert secret not in listing and "secretHash" not in listing
    engine = create_engine(settings.resolved_database_url())
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT prefix, secret_hash FROM api_tokens")).all()
    engine.dispose()
    assert (secret[:12], hashlib.sha256(secret.encode()).hexdigest()) in rows
    assert all(secret not in str(row) for row in rows)
    with httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {secret}"}) as ci:
        assert ci.get(f"{V1}/tokens").status_code == 200
    assert api.delete(f"{V1}/tokens/{created['token']['id']}").status_code == 200
    assert api.delete(f"{V1}/tokens/{created['token']['id']}").status_code == 409
    with httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {secret}"}) as ci:
        assert ci.get(f"{V1}/tokens").status_code == 401
    assert secret not in api.get(f"{V1}/events", params={"limit": 1000}).text


def test_token_validation(api: httpx.Client, world: dict[str, Any]):
    no_env = api.post(f"{V1}/tokens", json={"name": "a", "kind": "agent"})
    assert no_env.status_code == 422 and no_env.json()["field"] == "environmentId"
    admin_env = api.post(
        f"{V1}/tokens", json={"name": "a", "kind": "admin", "environmentId": world["env"]["id"]}
    )
    assert admin_env.status_code == 422
    assert api.post(f"{V1}/tokens", json={"name": "a", "environmentId": "e-nope"}).status_code == 404
    agent = {"Authorization": f"Bearer {world['agent_token']}"}
    assert api.post(f"{V1}/tokens", json={"name": "b", "kind": "admin"}, headers=agent).status_code == 403


def test_a_generated_admin_token_is_written_0600(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    settings = ServerSettings(data_dir=tmp_path / "data")
    settings = settings.model_copy(update={"admin_token": None})
    from shipmate.server.app import _ensure_admin_token
    from shipmate.server.db import Database

    settings.data_dir.mkdir(parents=True)
    db = Database(settings.resolved_database_url())
    db.migrate()
    with caplog.at_level("WARNING"):
        _ensure_admin_token(settings, db)
    token_file = settings.data_dir / "admin-token"
    secret = token_file.read_text().strip()
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert str(token_file) in caplog.text and secret not in caplog.text
    _ensure_admin_token(settings, db)  # a second start keeps the first token
    assert token_file.read_text().strip() == secret
    db.dispose()
    with live_server(settings.model_copy(update={"admin_token": None})) as running:
        # live_server configures the test admin token; the generated one still works too
        with httpx.Client(base_url=running.base_url, headers={"Authorization": f"Bearer {secret}"}) as client:
            assert client.get(f"{V1}/tokens").status_code == 200
        assert running.admin_token == TEST_ADMIN_TOKEN


def test_placeholder_admin_tokens_stop_start_up():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="placeholder"):
        ServerSettings(admin_token="changeme")  # type: ignore[arg-type]


def test_the_last_admin_token_cannot_be_revoked(api: httpx.Client, server: Any):
    admins = [t for t in api.get(f"{V1}/tokens").json()["items"] if t["kind"] == "admin"]
    for token in admins[1:]:  # leave one
        assert api.delete(f"{V1}/tokens/{token['id']}").status_code == 200
    last = admins[0]
    response = api.delete(f"{V1}/tokens/{last['id']}")
    assert response.status_code == 409, response.text
    assert "last admin token" in response.json()["detail"]
    assert api.get(f"{V1}/tokens").status_code == 200
    other = api.post(f"{V1}/tokens", json={"name": "second", "kind": "admin"}).json()
    assert api.delete(f"{V1}/tokens/{last['id']}").status_code == 200
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {other['secret']}"}
    ) as second:
        assert second.delete(f"{V1}/tokens/{other['token']['id']}").status_code == 409


def test_the_configured_admin_token_is_ensured_at_start_even_after_a_revocation(tmp_path: Path):
    from pydantic import SecretStr

    settings = ServerSettings(data_dir=tmp_path / "data", admin_token=SecretStr(TEST_ADMIN_TOKEN))
    with (
        live_server(settings) as running,
        httpx.Client(
            base_url=running.base_url, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
        ) as api,
    ):
        other = api.post(f"{V1}/tokens", json={"name": "other", "kind": "admin"}).json()
        configured = next(
            t for t in api.get(f"{V1}/tokens").json()["items"] if t["name"] == "admin (configured)"
        )
        assert api.delete(f"{V1}/tokens/{configured['id']}").status_code == 200
        assert api.get(f"{V1}/tokens").status_code == 401
        assert other["secret"]
    with (
        live_server(settings) as running,
        httpx.Client(
            base_url=running.base_url, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
        ) as api,
    ):
        assert api.get(f"{V1}/tokens").status_code == 200


def test_reset_admin_token_recovers_a_lost_admin(tmp_path: Path):
    import subprocess
    import sys

    data = tmp_path / "data"
    command = [sys.executable, "-c", "from shipmate.cli.main import main; main()", "reset-admin-token"]
    missing = subprocess.run([*command, "--data-dir", str(data)], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no Shipmate store" in missing.stderr
    assert "Traceback" not in missing.stderr
    settings = ServerSettings(data_dir=data)
    settings = settings.model_copy(update={"admin_token": None})
    with live_server(settings):
        pass  # creates the store; its admin token is "lost"
    (data / "admin-token").unlink(missing_ok=True)
    result = subprocess.run([*command, "--data-dir", str(data)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    secret = (data / "admin-token").read_text().strip()
    assert secret not in result.stdout and stat.S_IMODE(os.stat(data / "admin-token").st_mode) == 0o600
    with (
        live_server(settings) as running,
        httpx.Client(base_url=running.base_url, headers={"Authorization": f"Bearer {secret}"}) as api,
    ):
        assert api.get(f"{V1}/tokens").status_code == 200
