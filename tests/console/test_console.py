"""The web console in a real headless Chromium against a real `shipmate server` and a real agent:
every page, the actions, a token that may not act, a deployment going from LAUNCHING to READY on an
open page, and a chart filling from monitoring data. The tests run in order and share one world."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shipmate.monitoring.records import BinCounts, MinuteAggregate
from shipmate.server.db import Database
from shipmate.server.services import alerts
from shipmate.server.testing import TEST_ADMIN_TOKEN, write_test_package

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
    # actuals are read in the browser: a file without the id column is refused there, in words
    open_box(page, "Upload actuals", "#actuals-form")
    (console.work / "actuals.csv").write_text("id,actual\n1,0\n")
    page.set_input_files("#actuals-form input[type=file]", str(console.work / "actuals.csv"))
    page.click("#actuals-form button[type=submit]")
    page.wait_for_selector("#notice.notice-error")
    said = 'actuals.csv: The file has no column "associationId" (its columns: id, actual)'
    assert page.inner_text("#notice") == said


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
    empty = (("drift", "Data drift", "Overall: green"),
             ("accuracy", "Accuracy", "No accuracy yet: upload actuals"),
             ("alerts", "Alerts", "No alerts for this deployment."))  # fmt: skip
    for tab, words, said in empty:
        page.click(f"nav.tabs >> text={words}")
        page.wait_for_selector(f"#tab-{tab} >> text={said}")


def drift_record(dep: str, minute: int, x: list[int], server_errors: int) -> dict[str, Any]:
    """A minute of 300 rows: feature x in the package's 10 bins (plus under, over, missing), c as
    in the baseline, and 3 requests of which ``server_errors`` failed."""
    aggregate = MinuteAggregate(deployment_id=dep, minute=minute, model_id="m-1", rows=300, requests=3)
    aggregate.server_errors = server_errors
    for ms in (12.0, 30.0, 80.0):
        aggregate.response_ms.observe(ms)
    aggregate.features = {
        "x": BinCounts(counts=x, count=sum(x)),
        "c": BinCounts(counts=[180, 120, 0, 0], count=300),
    }
    return aggregate.to_json()


def test_drift_accuracy_alerts_and_actuals_from_real_data(admin_page: Any, console: Console):
    """A binary model's deployment in an environment without an agent: drift from aggregates an
    agent token posts, accuracy from prediction records and actuals uploaded through the form,
    and an error-rate alert opened by the service's own evaluation."""
    page, api = admin_page, console.api
    env = api.post("/api/v1/environments", json={"name": "monitored", "platform": "filesystem"}).json()
    edges = [float(i) for i in range(11)]
    manifest = {
        "classLabels": ["no", "yes"],
        "features": [{"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical"}],
        "baseline": {
            "x": {"bins": {"type": "numeric", "edges": edges, "counts": [0, *[100] * 10, 0, 0]}},
            "c": {"bins": {"type": "categorical", "values": ["a", "b"], "counts": [600, 400, 0, 0]}},
        },
        "featureImportance": {"x": 1.0, "c": 0.3},
    }
    path = write_test_package(console.work / "scorer.mlpkg", name="scorer", target_type="binary",
                              extra_manifest=manifest)  # fmt: skip
    octets = {"Content-Type": "application/octet-stream"}
    package = api.post("/api/v1/model-packages", params={"filename": path.name}, content=path.read_bytes(),
                       headers=octets).json()  # fmt: skip
    body = {"environmentId": env["id"], "modelPackageId": package["id"], "name": "scorer"}
    dep = api.post("/api/v1/deployments", json=body).json()["id"]
    token = {"name": "monitor", "kind": "agent", "environmentId": env["id"]}
    agent = {"Authorization": f"Bearer {api.post('/api/v1/tokens', json=token).json()['secret']}"}

    now = int(time.time() // 60)
    base = now - now % 15 - 45  # three whole 15-minute slots ago: clean, then shifted twice
    clean, shifted = [0, *[30] * 10, 0, 0], [0, *[0] * 7, 100, 100, 100, 0, 0]
    records = [
        drift_record(dep, base, clean, 0),
        drift_record(dep, base + 15, shifted, 2),
        drift_record(dep, base + 20, shifted, 2),
        drift_record(dep, base + 30, shifted, 0),
    ]
    stored = api.post("/api/v1/monitoring/aggregates", json={"records": records}, headers=agent).json()
    assert stored["stored"] == 4, stored
    probs = [0.9, 0.8, 0.3, 0.6, 0.2, 0.7]
    predictions = {
        "v": 1, "kind": "predictions", "id": "p-scorer", "deploymentId": dep, "modelId": "m-1",
        "minute": base + 30, "flushedAt": (base + 30) * 60.0, "associationIds": [f"a{i}" for i in range(6)],
        "classLabels": ["no", "yes"], "labels": ["yes" if p >= 0.5 else "no" for p in probs],
        "probabilities": [[1 - p, p] for p in probs], "values": None,
    }  # fmt: skip
    answer = api.post("/api/v1/monitoring/predictions", json={"records": [predictions]}, headers=agent)
    assert answer.json()["stored"] == 1, answer.text

    page.goto(f"{console.base_url}/ui/deployments/{dep}")
    open_box(page, "Upload actuals", "#actuals-form")  # columns named in the form, one row refused
    csv = console.work / "scorer-actuals.csv"
    csv.write_text('id,truth\na0,yes\na1,no\n"a2",no\na3,yes\na4,no\na5,yes\nzz,yes\n')
    page.set_input_files("#actuals-form input[type=file]", str(csv))
    page.fill("#actuals-form input[name=idColumn]", "id")
    page.fill("#actuals-form input[name=valueColumn]", "truth")
    page.click("#actuals-form button[type=submit]")
    page.wait_for_selector("#notice >> text=actuals stored")
    said = page.inner_text("#notice").splitlines()
    assert said[0] == "6 of 7 actuals stored, 0 duplicates, 1 refused" and len(said) == 2
    assert said[1].startswith("Row 8: rejected: no prediction with association id 'zz'")

    page.click("nav.tabs >> text=Accuracy")
    page.wait_for_selector("[data-chart=accuracy][data-rows='6'] canvas")
    metrics = page.inner_text("[data-chart=accuracy] table")
    assert "balanced accuracy" in metrics and "auc" in metrics
    assert "\taccuracy\t" not in metrics and "accuracy\t0.8333" in metrics  # 5 of 6 right at 0.5
    shoot(page, "deployment-accuracy")

    page.click("nav.tabs >> text=Data drift")
    page.wait_for_selector("[data-chart=drift] .chart canvas")
    assert "Overall: red: important features drift" in page.inner_text("[data-chart=drift]")
    rows = page.locator("[data-chart=drift] table tbody tr").all_inner_texts()
    assert rows[0].startswith("x (important)\t1\t") and rows[0].endswith("at risk")  # most important first
    assert rows[1].startswith("c\t0.3\t") and rows[1].endswith("no drift")
    assert int(page.get_attribute("[data-chart=drift] .chart", "data-points") or 0) >= 2  # windows over time
    shoot(page, "deployment-drift")

    db = Database(f"sqlite:///{(console.work / 'data' / 'shipmate.db').resolve()}")
    try:  # the error rate was bad in two 5-minute windows running: judged as the server's loop would
        for minute in (base + 20, base + 25):
            with db.write() as session:
                alerts.evaluate(session, now=dt.datetime.fromtimestamp(minute * 60 + 5, dt.UTC))
    finally:
        db.dispose()
    page.click("nav.tabs >> text=Alerts")
    page.wait_for_selector("[data-alerts] >> text=error_rate")
    listed = page.inner_text("[data-alerts] tbody")
    assert "open" in listed and "above 0.05 for 2 consecutive 5-minute windows" in listed
    shoot(page, "deployment-alerts")
    page.click("nav[aria-label=Main] >> text=Overview")
    page.wait_for_selector(f"#main [data-alerts] a[href$='/deployments/{dep}?tab=alerts']")
    assert "error_rate" in page.inner_text("[data-alerts]")


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
    created = page.locator("#events >> text=environment.created").count()
    console.api.post("/api/v1/environments", json={"name": "spare", "platform": "filesystem"})
    # live follow: one more environment.created than before
    page.wait_for_selector(f"#events >> text=environment.created >> nth={created}", timeout=WAIT)
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
