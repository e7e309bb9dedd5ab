"""Web console benchmark: is the overview interactive in under a second with 1,000 deployments and
10,000 events, and how soon does a status change reach an open page?

Measured in Debian's headless Chromium (Playwright) against `shipmate server` run as a separate
process on SQLite, all on 127.0.0.1:
  * the overview page, loaded again and again: time to first byte (the server's render), DOM
    interactive, DOMContentLoaded (the console's script has run: times local, charts drawn) and
    "live" (the change feed connected), from the browser's own Navigation Timing;
  * the same page of an empty store on a second server in the same run (the peer: what the
    1,000 deployments and 10,000 events cost over the page itself);
  * a status change: the deployment page open, the service told to deactivate / activate it, until
    the page shows the new badge (through the SSE feed and a partial refresh).
CPU time of each server process (user + system, from /proc) is printed beside the page figures.

    python3 bench/console_bench.py [--deployments 1000] [--events 10000] [--repeat 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

TOKEN = "smt_bench-admin-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"


def seed(url: str, data_dir: Path, deployments: int, events_wanted: int) -> None:
    """Fill the store through the service layer, then pad the log with agent events to the count asked."""
    from shipmate.packages import read_manifest
    from shipmate.server.artifacts import StagedUpload
    from shipmate.server.db import Database
    from shipmate.server.models import Platform
    from shipmate.server.services import deployments as deployment_service
    from shipmate.server.services import environments, events, packages
    from shipmate.server.testing import write_test_package

    db = Database(url)
    db.migrate()
    path = write_test_package(data_dir / "bench.mlpkg", name="bench")
    manifest = read_manifest(path)
    with db.write() as session:
        env_ids = [
            environments.create(session, name=f"bench-{n}", platform=Platform.FILESYSTEM, description="",
                                config={}, plugin_config={}, actor="bench").id
            for n in range(4)
        ]  # fmt: skip
        metadata = packages.PackageMetadata(
            name=manifest.name, version=manifest.version, framework=manifest.framework.value,
            target_type=manifest.target_type.value,
        )  # fmt: skip
        staged = StagedUpload(path=path, sha256="0" * 64, size=path.stat().st_size)
        package, _ = packages.register(
            session, staged=staged, metadata=metadata, filename="b.mlpkg", actor="bench"
        )
        package_id = package.id
    made: list[tuple[str, str]] = []
    for start in range(0, deployments, 500):
        with db.write() as session:
            for n in range(start, min(start + 500, deployments)):
                d = deployment_service.create(
                    session, environment_id=env_ids[n % 4], model_package_id=package_id, name=f"dep-{n}",
                    description="", key_value_config={}, active=True, actor="bench",
                )  # fmt: skip
                made.append((d.environment_id, d.id))
    with db.read() as session:
        have = events.latest_id(session)
    for start in range(have, events_wanted, 2000):
        rows = [
            events.row(type="action.finished", actor="agent:bench", environment_id=made[n % len(made)][0],
                       deployment_id=made[n % len(made)][1], generation=1, status="passing",
                       message="deployment_start finished")
            for n in range(start, min(start + 2000, events_wanted))
        ]  # fmt: skip
        with db.write() as session:
            events.append_many(session, rows)
    db.dispose()


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "SHIPMATE_ADMIN_TOKEN": TOKEN}
    command = [sys.executable, "-c", "from shipmate.cli.main import main; main()", "server",
               "--data-dir", str(data_dir), "--port", str(port), "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("server did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def overview(browser: Any, base: str, pid: int, repeat: int) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(f"{base}/ui")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#live[data-state=live]")
    figures: dict[str, list[float]] = {"ttfb": [], "interactive": [], "content_loaded": [], "live": []}
    cpu_before = cpu_seconds(pid)
    for _ in range(repeat):
        page.goto(f"{base}/ui")
        page.wait_for_selector("#live[data-state=live]")
        timing = page.evaluate(
            """() => { const n = performance.getEntriesByType('navigation')[0];
                       return {ttfb: n.responseStart, interactive: n.domInteractive,
                               content_loaded: n.domContentLoadedEventEnd, live: performance.now()}; }"""
        )
        for key in figures:
            figures[key].append(timing[key])
    cpu = cpu_seconds(pid) - cpu_before
    rows = page.locator("#deployments tbody tr").count()
    context.close()
    return {
        **{key: summary(values) for key, values in figures.items()},
        "server_cpu_ms_per_load": round(cpu / repeat * 1000, 1),
        "rows_shown": rows,
    }


def status_change(browser: Any, base: str, repeat: int) -> dict[str, Any]:
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"})
    dep = api.get("/api/v1/deployments", params={"limit": 1}).json()["items"][0]["id"]
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(f"{base}/ui")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.goto(f"{base}/ui/deployments/{dep}")
    page.wait_for_selector("#live[data-state=live]")
    samples = []
    for n in range(repeat):
        command, badge = ("deactivate", "STOPPING") if n % 2 == 0 else ("activate", "LAUNCHING")
        start = time.perf_counter()
        assert api.post(f"/api/v1/deployments/{dep}/{command}").status_code == 200
        page.wait_for_selector(f"#badge >> text={badge}", timeout=10_000)
        samples.append((time.perf_counter() - start) * 1000)
    context.close()
    api.close()
    return summary(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    results: dict[str, Any] = {"deployments": args.deployments, "events": args.events}
    with tempfile.TemporaryDirectory() as full_dir, tempfile.TemporaryDirectory() as empty_dir:
        started = time.perf_counter()
        seed(f"sqlite:///{full_dir}/shipmate.db", Path(full_dir), args.deployments, args.events)
        took = time.perf_counter() - started
        print(f"seeded {args.deployments} deployments, {args.events} events in {took:.1f} s")
        full, full_base = start_server(Path(full_dir))
        empty, empty_base = start_server(Path(empty_dir))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
                )
                results["overview_full"] = overview(browser, full_base, full.pid, args.repeat)
                results["overview_empty_peer"] = overview(browser, empty_base, empty.pid, args.repeat)
                results["status_change_to_page"] = status_change(browser, full_base, args.repeat)
                browser.close()
        finally:
            for process in (full, empty):
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
    print(f"load average: {os.getloadavg()[0]:.1f}")
    for name in ("overview_full", "overview_empty_peer"):
        r = results[name]
        print(
            f"{name:20} ttfb {r['ttfb']['median_ms']:6.1f} ms"
            f"  interactive {r['interactive']['median_ms']:6.1f} ms"
            f"  DOMContentLoaded {r['content_loaded']['median_ms']:6.1f} ms"
            f" (p90 {r['content_loaded']['p90_ms']})"
            f"  live {r['live']['median_ms']:6.1f} ms"
            f"  server CPU {r['server_cpu_ms_per_load']} ms/load  rows {r['rows_shown']}"
        )
    change = results["status_change_to_page"]
    print(
        f"status change → open page: median {change['median_ms']} ms,"
        f" p90 {change['p90_ms']} ms, max {change['max_ms']} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
