"""One real `shipmate server` process, one real agent (filesystem plugin) and one headless Chromium
(Debian's, through Playwright), shared by the console's browser tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shipmate.server.testing import TEST_ADMIN_TOKEN, write_test_package

CHROMIUM = "/usr/bin/chromium"
SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
WIDTHS = {"desktop": (1280, 860), "phone": (390, 844)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Console:
    """The service under test, its admin API client and the agents started for it."""

    base_url: str
    api: httpx.Client
    work: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def package(self, name: str, version: str) -> Path:
        baseline = {"x": {"bins": {"type": "numeric", "edges": [0, 5, 10], "counts": [0, 3, 7, 0, 0]}}}
        return write_test_package(
            self.work / f"{name}-{version}.mlpkg",
            name=name,
            version=version,
            payload=f"{name} {version}".encode(),
            extra_manifest={"baseline": baseline, "featureImportance": {"x": 1.0}},
        )

    def crash_server(self) -> Callable[[], None]:
        """Kill the service at once; the function returned starts it again on the same port and store."""
        server = self.processes.pop(0)
        server.kill()
        server.wait(timeout=10)
        port = int(self.base_url.rsplit(":", 1)[1])
        return lambda: self.processes.insert(0, _start_server(self.work, port))

    def start_agent(self, environment_id: str) -> None:
        """A real `shipmate agent` for the environment, writing deployments into a directory."""
        token = {"name": f"agent {environment_id}", "kind": "agent", "environmentId": environment_id}
        secret = self.api.post("/api/v1/tokens", json=token).json()["secret"]
        plugin = self.work / f"fs-{environment_id}.yaml"
        (self.work / "deployments").mkdir(exist_ok=True)
        settings = {
            "baseDir": str(self.work / "deployments"),
            "deploymentPredictionBaseUrl": "http://127.0.0.1:9",
        }
        plugin.write_text(yaml.safe_dump(settings))
        config = self.work / f"agent-{environment_id}.yaml"
        config.write_text(yaml.safe_dump({
            "serviceUrl": self.base_url, "environmentId": environment_id, "token": secret,
            "plugin": {"name": "filesystem", "privateConfig": str(plugin)},
            "workDir": str(self.work / f"agent-{environment_id}"), "metrics": {"port": 0},
        }))  # fmt: skip
        log = open(self.work / f"agent-{environment_id}.log", "wb")  # noqa: SIM115 (closed with the process)
        argv = [*SHIPMATE, "agent", "--config", str(config)]
        self.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))


def _start_server(work: Path, port: int) -> subprocess.Popen[bytes]:
    """`shipmate server` on the port, its output appended to server.log; returns once it answers."""
    env = {
        **os.environ,
        "SHIPMATE_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
        "SHIPMATE_PORT": str(port),
        "SHIPMATE_ALERT_INTERVAL_SECONDS": "0",
    }  # the tests run the evaluation at the moments they choose
    with open(work / "server.log", "ab") as log:
        argv = [*SHIPMATE, "server", "--data-dir", str(work / "data")]
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"shipmate server did not start: {(work / 'server.log').read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    work = tmp_path_factory.mktemp("console")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}, timeout=30)
    made = Console(base_url, api, work, [_start_server(work, port)])
    try:
        yield made
    finally:
        api.close()
        for process in reversed(made.processes):
            process.send_signal(signal.SIGTERM)
        for process in made.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser for the module, closed after it: Playwright's sync API keeps an event loop
    running in the main thread while it is open, and every later ``asyncio.run`` would fail."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        yield browser
        browser.close()


def shoot(page: Any, name: str) -> None:
    """The page at both widths, as test artefacts (docs/console.md shows the desktop ones); the phone
    one is loaded afresh at its width, as a phone would lay it out."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    page.screenshot(path=str(ARTIFACTS / f"{name}-desktop.png"), full_page=True)
    width, height = WIDTHS["phone"]
    page.set_viewport_size({"width": width, "height": height})
    url = page.url
    page.goto(url.replace("/ui/login", "/ui"))  # a GET: never a form posted again
    page.wait_for_selector("#live[data-state=live], #token")
    page.wait_for_function("!document.body.innerText.includes('Loading…')")  # charts and alerts drawn
    page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= width, f"{name}: the page is {wide} px wide at {width} px (only tables may scroll)"
    page.set_viewport_size(before)
