"""The read-only web UI, driven by a real browser (Debian's chromium through Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shipmate.server.testing import TEST_ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None  # the UI reads through the same services as the API; one store is enough here


def test_sign_in_and_see_environments_deployments_and_events(
    browser: Any, server: LiveServer, api: httpx.Client, world: dict[str, Any]
):
    dep_id = world["deployment"]["id"]
    api.post(f"/api/v1/deployments/{dep_id}/deactivate")
    page = browser.new_page()
    page.goto(f"{server.base_url}/ui")
    page.fill("input[name=token]", "smt_wrong-token")
    page.click("button[type=submit]")
    assert "unknown or revoked token" in page.inner_text("[role=alert]")

    page.fill("input[name=token]", TEST_ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#deployments")
    assert "dev" in page.inner_text("#environments")
    row = page.inner_text(f"#deployments tr:has-text('{dep_id}')")
    assert "churn" in row and "STOPPING" in row  # deactivated; no agent has carried it out
    events = page.inner_text("#events")
    assert "deployment.desired_changed" in events and "deactivated" in events
    assert TEST_ADMIN_TOKEN not in page.content()

    page.click("text=sign out")
    page.wait_for_selector("input[name=token]")
    page.close()


def test_an_agent_token_sees_only_its_environment(
    browser: Any, server: LiveServer, api: httpx.Client, world: dict[str, Any]
):
    api.post("/api/v1/environments", json={"name": "elsewhere", "platform": "docker"})
    page = browser.new_page()
    page.goto(f"{server.base_url}/ui")
    page.fill("input[name=token]", world["agent_token"])
    page.click("button[type=submit]")
    page.wait_for_selector("#environments")
    environments = page.inner_text("#environments")
    assert "dev" in environments and "elsewhere" not in environments
    page.close()


def test_the_api_docs_render_offline_and_the_root_leads_to_the_ui(browser: Any, server: LiveServer):
    """Every request the docs page makes stays on the service: no CDN, so it works without internet."""
    page = browser.new_page()
    elsewhere: list[str] = []

    def only_loopback(route: Any) -> None:
        if route.request.url.startswith(server.base_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(f"{server.base_url}/api/v1/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    assert "/api/v1/deployments" in page.inner_text("#swagger-ui")
    assert elsewhere == []
    page.goto(server.base_url + "/")
    assert page.url.rstrip("/").endswith("/ui")
    page.wait_for_selector("input[name=token]")
    page.close()


def test_environment_health_agrees_with_the_deployments_shown(
    browser: Any, server: LiveServer, api: httpx.Client, world: dict[str, Any]
):
    """The agent's stale message said one of them failed; the health shown follows the deployments."""
    env_id, dep_id = world["env"]["id"], world["deployment"]["id"]
    headers = {"Authorization": f"Bearer {world['agent_token']}"}
    report = {"deploymentId": dep_id, "generation": 1, "action": "deployment_start", "phase": "finished",
              "status": "passing", "state": "ready"}  # fmt: skip
    assert api.post(f"/api/v1/environments/{env_id}/reports", json={"reports": [report]},
                    headers=headers).status_code == 200  # fmt: skip
    health = {"status": "passing", "message": "1 of 1 deployments failing"}
    assert api.post(f"/api/v1/environments/{env_id}/health", json=health, headers=headers).status_code == 200
    page = browser.new_page()
    page.goto(f"{server.base_url}/ui")
    page.fill("input[name=token]", TEST_ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#environments")
    row = page.inner_text("#environments tr:has-text('dev')")
    assert "passing 1 deployment: 1 ready" in row
    api.post(f"/api/v1/deployments/{dep_id}/deactivate")  # generation 2, not carried out yet
    page.reload()
    assert "1 deployment: 1 pending" in page.inner_text("#environments tr:has-text('dev')")
    page.close()
