"""The web console in a real headless Chromium against a real `shipmate server` and a real agent:
every page, the actions, a token that may not act, a deployment going from LAUNCHING to READY on an
open page, and a chart filling from monitoring data. The tests run in order and share one world."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from shipmate.monitoring.records import MinuteAggregate
from shipmate.server.testing import TEST_ADMIN_TOKEN

from .conftest import Console, shoot

pytestmark = pytest.mark.browser
WORLD: dict[str, Any] = {}
WAIT = 30_000  # ms: the longest a live change may take to show before the test fails


@pytest.fixture(scope="module")
def admin_page(browser: Any, console: Console) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, timezone_id="Europe/Berlin")
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(f"{console.base_url}/ui")
    page.fill("#token", "smt_not-a-real-token")
    page.click("button[type=submit]")
    assert "unknown or revoked token" in page.inner_text("[role=alert]")
    shoot(page, "sign-in")
    page.fill("#token", TEST_ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#live[data-state=live]")
    yield page
    context.close()


def open_box(page: Any, summary: str, form: str) -> None:
    """Open a folded action box unless it is open already (a live refresh may have just folded it)."""
    page.wait_for_load_state()
    if not page.is_visible(form):
        page.click(f"summary:has-text('{summary}')")
    page.wait_for_selector(form)


def confirm(page: Any) -> None:
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-ok")


def test_an_empty_console_says_what_to_do_and_an_environment_is_created(admin_page: Any, console: Console):
    page = admin_page
    assert "No environments yet" in page.inner_text("#environments")
    assert "No deployments yet" in page.inner_text("#deployments")
    assert TEST_ADMIN_TOKEN not in page.content()
    page.click("text=Create an environment")
    page.fill("form[data-url='/api/v1/environments'] input[name=name]", "dev")
    page.click("form[data-url='/api/v1/environments'] button[type=submit]")
    page.wait_for_selector("#environments a:has-text('dev')")
    assert "Environment created" in page.inner_text("#notice")
    listed = console.api.get("/api/v1/environments").json()["items"]
    WORLD["env"] = next(e for e in listed if e["name"] == "dev")


def test_packages_are_uploaded_and_show_versions_baseline_and_checksums(admin_page: Any, console: Console):
    page = admin_page
    page.click("nav[aria-label=Main] >> text=Models")
    assert "No model packages yet" in page.inner_text("#no-packages")
    for version in ("1", "2"):
        open_box(page, "Upload a package", "#upload-form")
        page.set_input_files("#upload-form input[type=file]", str(console.package("churn", version)))
        page.click("#upload-form button[type=submit]")
        page.wait_for_selector(f"a:has-text('v{version}')")
    shoot(page, "models")
    page.click("a:has-text('v1')")
    page.wait_for_selector("#features .histogram canvas")
    assert "model/payload.bin" in page.inner_text("#files")
    assert "importance 1.00" in page.inner_text("#features")
    shoot(page, "model")


def test_a_deployment_goes_from_launching_to_ready_on_the_open_page(admin_page: Any, console: Console):
    page = admin_page
    env = WORLD["env"]
    page.goto(f"{console.base_url}/ui/environments/{env['id']}")
    page.select_option("#deploy-form select[name=modelPackageId]", label="churn v1 (custom)")
    page.fill("#deploy-form input[name=name]", "churn-prod")
    page.click("#deploy-form button[type=submit]")
    page.click("#deployments a:has-text('churn-prod')")
    page.wait_for_selector("#badge >> text=LAUNCHING")  # no agent yet: the change waits
    WORLD["dep"] = page.url.rsplit("/", 1)[-1]
    console.start_agent(env["id"])  # the agent carries it out; the page hears it from the feed
    page.wait_for_selector("#badge >> text=READY", timeout=WAIT)
    assert "/predict" in page.inner_text("#prediction-url")
    page.click("text=Copy curl command")
    assert page.evaluate("navigator.clipboard.readText()").startswith("curl -X POST")
    shoot(page, "deployment")
    page.click("nav[aria-label=Main] >> text=Overview")
    page.wait_for_selector("#deployments >> text=churn-prod")
    assert "READY" in page.inner_text("#deployments")
    shoot(page, "overview")


def test_actions_on_a_deployment(admin_page: Any, console: Console):
    page = admin_page
    dep = WORLD["dep"]
    page.goto(f"{console.base_url}/ui/deployments/{dep}")
    page.click("#actions >> text=Deactivate")
    assert "stops answering predictions" in page.inner_text("#confirm-text")
    page.click("#confirm >> text=Cancel")
    assert console.api.get(f"/api/v1/deployments/{dep}").json()["desired"]["state"] == "running"
    page.click("#actions >> text=Deactivate")
    confirm(page)
    page.wait_for_selector("#badge >> text=STOPPED", timeout=WAIT)
    page.click("#actions >> text=Activate")
    confirm(page)
    page.wait_for_selector("#badge >> text=READY", timeout=WAIT)
    page.click("#actions >> text=Relaunch")
    confirm(page)
    page.wait_for_selector("#notice >> text=Relaunch requested")
    open_box(page, "Replace the model", "#replace-form")
    page.select_option("#replace-form select", label="churn v2")
    page.click("#replace-form button[type=submit]")
    confirm(page)
    page.wait_for_selector("#desired-applied >> text=churn v2", timeout=WAIT)
    page.wait_for_selector("#badge >> text=READY", timeout=WAIT)
    page.wait_for_selector("#replace-form", state="hidden")  # the page refreshed after the replacement
    open_box(page, "Replace the model", "#replace-form")  # now by uploading a new version
    page.set_input_files("#replace-form input[type=file]", str(console.package("churn", "3")))
    page.click("#replace-form button[type=submit]")
    confirm(page)
    page.wait_for_selector("#desired-applied >> text=churn v3", timeout=WAIT)
    page.wait_for_selector("#badge >> text=READY", timeout=WAIT)
    page.click("nav.tabs >> text=History")
    history = page.inner_text("#history")
    assert "churn v3" in history and "churn v2" in history and "churn v1" in history
    shoot(page, "deployment-history")
    # upload actuals: this server may not have the route yet; the answer is said in words
    open_box(page, "Upload actuals", "#actuals-form")
    (console.work / "actuals.csv").write_text("id,actual\n1,0\n")
    page.set_input_files("#actuals-form input[type=file]", str(console.work / "actuals.csv"))
    page.click("#actuals-form button[type=submit]")
    page.wait_for_function("document.querySelector('#notice').textContent.match(/Actuals|Not found/)")
    said = page.inner_text("#notice")
    assert said == "Actuals uploaded" or said.startswith("Not found")  # in words, not a status code


def test_monitoring_tabs_fill_or_say_they_are_not_available(admin_page: Any, console: Console):
    page = admin_page
    dep = WORLD["dep"]
    page.goto(f"{console.base_url}/ui/deployments/{dep}?tab=health")
    page.wait_for_selector("[data-chart=service-health][data-points='0']")
    minute = int(time.time() // 60)
    records = []
    for offset, count in ((3, 5), (2, 9), (1, 4)):
        record = MinuteAggregate(deployment_id=dep, minute=minute - offset, model_id="m-1")
        for ms in (12.0, 30.0, 80.0):
            record.response_ms.observe(ms)
        record.requests, record.rows = count, count * 10
        records.append(record.to_json())
    assert console.api.post("/api/v1/monitoring/aggregates", json={"records": records}).json()["stored"] == 3
    page.select_option("[data-range]", "1")  # the chart fetches again for the range picked
    page.wait_for_selector("[data-chart=service-health][data-points='3'] canvas")
    shoot(page, "service-health")
    for tab, words in (("drift", "Data drift"), ("accuracy", "Accuracy"), ("alerts", "Alerts")):
        page.click(f"nav.tabs >> text={words}")
        panel = page.wait_for_selector(f"#tab-{tab} p, #tab-{tab} canvas, #tab-{tab} table")
        text = page.inner_text(f"#tab-{tab}")
        assert "not available on this server" in text or panel is not None
        shoot(page, f"deployment-{tab}")


def test_events_filter_page_and_follow(admin_page: Any, console: Console):
    page = admin_page
    page.click("nav[aria-label=Main] >> text=Events")
    page.select_option("#event-filters select[name=type]", "deployment.desired_changed")
    page.click("#event-filters button[type=submit]")
    page.wait_for_url("**type=deployment.desired_changed**")
    types = page.locator("#events tbody tr td:nth-child(2)").all_inner_texts()
    assert types and set(types) == {"deployment.desired_changed"}
    assert page.locator("#events time").first.get_attribute("title")  # the local time, on hover
    page.goto(f"{console.base_url}/ui/events")
    before = page.locator("#events tbody tr").count()
    console.api.post("/api/v1/environments", json={"name": "spare", "platform": "filesystem"})
    page.wait_for_selector("#events >> text=environment.created >> nth=1", timeout=WAIT)  # live follow
    assert page.locator("#events tbody tr").count() > before
    shoot(page, "events")


def test_tokens_are_created_once_shown_and_revoked(admin_page: Any, console: Console):
    page = admin_page
    page.click("nav[aria-label=Main] >> text=Tokens")
    page.fill("#token-form input[name=name]", "release pipeline")
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#secret[open]")
    secret = page.inner_text("#secret-value")
    assert secret.startswith("smt_")
    page.click("#secret >> text=Done")
    row = "#tokens tr:has(td:text-is('release pipeline'))"  # by its whole name: prefixes are random
    page.wait_for_selector(row)
    assert secret not in page.content()  # shown once, never again
    page.locator(row).locator("text=Revoke").click()
    confirm(page)
    page.wait_for_selector(f"{row} >> text=revoked")
    shoot(page, "tokens")


def test_delete_force_delete_and_environment_delete(admin_page: Any, console: Console):
    page = admin_page
    env = WORLD["env"]
    package = console.api.get("/api/v1/model-packages").json()["items"][0]
    other = console.api.post("/api/v1/deployments", json={"environmentId": env["id"],
                             "modelPackageId": package["id"], "name": "scratch"}).json()  # fmt: skip
    page.goto(f"{console.base_url}/ui/deployments/{other['id']}")
    page.click("#actions >> text=Force delete")
    confirm(page)
    page.wait_for_url(f"{console.base_url}/ui")
    assert "scratch" not in page.inner_text("#deployments")
    page.goto(f"{console.base_url}/ui/deployments/{WORLD['dep']}")
    page.click("#actions >> text=Delete")
    confirm(page)
    page.wait_for_selector("#notice >> text=Deletion requested")
    page.wait_for_selector("#main h1 >> text=Not found", timeout=WAIT)  # the agent confirmed the stop
    spare = next(e for e in console.api.get("/api/v1/environments").json()["items"] if e["name"] == "spare")
    page.goto(f"{console.base_url}/ui/environments/{spare['id']}")
    page.click("text=Delete this environment")
    page.click("text=Delete environment")
    confirm(page)
    page.wait_for_url(f"{console.base_url}/ui")
    assert "spare" not in page.inner_text("#environments")


def test_a_lost_connection_says_so_and_resumes_from_its_cursor(admin_page: Any, console: Console):
    page = admin_page
    page.goto(f"{console.base_url}/ui")
    page.wait_for_selector("#live[data-state=live]")
    restart = console.crash_server()
    page.wait_for_selector("#live[data-state=lost]", timeout=WAIT)
    assert "Lost the connection" in page.inner_text("#notice")
    restart()
    console.api.post("/api/v1/environments", json={"name": "while-away", "platform": "filesystem"})
    page.wait_for_selector("#live[data-state=live]", timeout=WAIT)
    page.wait_for_selector("#environments >> text=while-away", timeout=WAIT)  # the event after the cursor


def test_an_agent_token_sees_its_environment_and_may_not_act(browser: Any, console: Console):
    env = WORLD["env"]
    console.api.post("/api/v1/environments", json={"name": "elsewhere", "platform": "docker"})
    secret = console.api.post("/api/v1/tokens", json={"name": "viewer", "kind": "agent",
                              "environmentId": env["id"]}).json()["secret"]  # fmt: skip
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(f"{console.base_url}/ui")
    page.fill("#token", secret)
    page.click("button[type=submit]")
    page.wait_for_selector("#environments")
    assert "dev" in page.inner_text("#environments") and "elsewhere" not in page.inner_text("#environments")
    page.keyboard.press("Tab")  # keyboard: the first stop skips to the content, the next ones are the links
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Shipmate"
    nav = page.inner_text("nav[aria-label=Main]")
    assert "Models" not in nav and "Tokens" not in nav
    assert "Create an environment" not in page.content()
    package = console.api.get("/api/v1/model-packages").json()["items"][0]
    dep = console.api.post("/api/v1/deployments", json={"environmentId": env["id"],
                           "modelPackageId": package["id"], "name": "watched"}).json()["id"]  # fmt: skip
    page.goto(f"{console.base_url}/ui/deployments/{dep}")
    assert page.locator("#actions").count() == 0
    assert page.goto(f"{console.base_url}/ui/tokens").status == 404
    # not possible either: the API refuses the session's change
    answer = page.evaluate(
        """async (url) => {
            const csrf = document.querySelector('meta[name=csrf-token]').content;
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRF-Token': csrf}});
            return r.status;
        }""",
        f"/api/v1/deployments/{dep}/deactivate",
    )
    assert answer == 403
    shoot(page, "agent-view")
    page.click("text=Sign out")
    page.wait_for_selector("#token")
    assert page.goto(f"{console.base_url}/api/v1/environments").status == 401
    context.close()
