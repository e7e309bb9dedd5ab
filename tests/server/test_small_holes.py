"""Smaller findings of the adversarial review: filters that must refuse typos, and a sign-in
page that must not be driven from another site or leak its cookie over plain HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from shipmate.server.testing import TEST_ADMIN_TOKEN

V1 = "/api/v1"


def test_an_unknown_state_filter_is_a_422_not_an_empty_page(api: httpx.Client, world: dict[str, Any]) -> None:
    response = api.get(f"{V1}/deployments", params={"state": "bogus"})
    assert response.status_code == 422 and "state" in response.json()["detail"], response.text
    assert api.get(f"{V1}/deployments", params={"state": "unknown"}).json()["total"] == 1


def test_sign_in_refuses_a_post_from_another_site(server: Any) -> None:
    with httpx.Client(base_url=server.base_url, follow_redirects=False) as browser:
        forged = browser.post(
            "/ui/login", data={"token": TEST_ADMIN_TOKEN}, headers={"Origin": "https://evil.example"}
        )
        assert forged.status_code == 403 and "shipmate_token" not in forged.headers.get("set-cookie", "")
        cross = browser.post(
            "/ui/login", data={"token": TEST_ADMIN_TOKEN}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status_code == 403
        same = browser.post(
            "/ui/login", data={"token": TEST_ADMIN_TOKEN}, headers={"Origin": server.base_url}
        )
        assert same.status_code == 303
        assert "Secure" not in same.headers["set-cookie"]  # plain HTTP on loopback


def test_the_cookie_is_secure_behind_tls(server: Any) -> None:
    """Behind a TLS-terminating proxy (X-Forwarded-Proto), the session cookie is marked Secure."""
    with httpx.Client(base_url=server.base_url, follow_redirects=False) as browser:
        response = browser.post(
            "/ui/login", data={"token": TEST_ADMIN_TOKEN}, headers={"X-Forwarded-Proto": "https"}
        )
        assert response.status_code == 303
        assert "secure" in response.headers["set-cookie"].lower()
