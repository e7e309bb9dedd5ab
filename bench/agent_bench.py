#!/usr/bin/env python3
"""Agent benchmarks: 1,000 deployments from creation in the service until all are ready, and the
delay from a change in the service to its action starting.

Scenarios, all in one run against one real service (SQLite, its own process):

* ``in-process``   the filesystem plugin inside the agent;
* ``shipmate-cmd`` the same plugin through Shipmate's ``bosun-plugin-runner`` as the external command;
* ``bosun-cmd``    the peer: DataRobot's published ``bosun-plugin-runner`` (datarobot-bosun, in its own
                   virtualenv) as the external command, driven by the same agent;
* ``latency``      single changes to an idle agent: change -> action start (p50, p99);
* ``overhead``     per external-command action, the agent's own cost (config file, process group,
                   status file) beside the command's start-up.

The agent runs in this process (so its change-to-action samples are read exactly, and this process's
CPU time is the agent's, plus the harness's own polling and, for ``latency``, its admin requests,
the same in every run); deployments are
created by a separate loader process with a few threads, so creating them does not compete with the
agent for this interpreter. Loopback only; every wait is bounded.

    python3 bench/agent_bench.py                      # the full run (several minutes)
    python3 bench/agent_bench.py -n 200 --external-n 100 --json /tmp/agent-bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]
BOSUN_VENV = ROOT / ".cache" / "venv-bosun"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the loader (a separate process) -------------------------------------------------------------


def load(url: str, token: str, env_id: str, package_id: str, n: int, threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from shipmate.client.client import ShipmateClient

    clients = [ShipmateClient(url, token) for _ in range(threads)]
    started = time.time()

    def create(i: int) -> str:
        return clients[i % threads].create_deployment(env_id, package_id, name=f"bench-{i}").id

    with ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(create, range(n)))
    print(json.dumps({"started": started, "finished": time.time(), "ids": ids}))


# -- the harness ------------------------------------------------------------------------------------


class Service:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = "bench-admin-" + secrets.token_urlsafe(16)
        self.log = open(folder / "service.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*SHIPMATE, "server", "--data-dir", str(folder / "service"), "--port", str(self.port),
             "--log-level", "warning"],
            env={**os.environ, "SHIPMATE_ADMIN_TOKEN": self.token},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        import httpx

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("the service did not start")
        from shipmate.client.client import ShipmateClient

        self.admin = ShipmateClient(self.url, self.token)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)


def build_package(folder: Path) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipmate.packages import BuildOptions, build_sklearn_package

    X, y = load_iris(return_X_y=True, as_frame=True)
    path = folder / "iris.mlpkg"
    build_sklearn_package(
        LogisticRegression(max_iter=300).fit(X, y),
        X.head(20),
        path,
        name="iris",
        options=BuildOptions(version="1"),
    )
    return path


def new_environment(service: Service, label: str) -> tuple[str, str]:
    env = service.admin.create_environment(f"bench-{label}", "filesystem")
    _, secret = service.admin.create_token(kind="agent", environment_id=env.id)
    return env.id, secret


def start_agent(
    service: Service,
    folder: Path,
    label: str,
    plugin: dict[str, Any],
    concurrency: int,
    environment: tuple[str, str] | None = None,
) -> Any:
    from shipmate.agent.app import build_agent
    from shipmate.agent.config import AgentSettings

    env_id, secret = environment or new_environment(service, label)
    settings = AgentSettings(
        service_url=service.url,
        token=secret,
        environment_id=env_id,
        plugin=plugin,
        work_dir=folder / f"work-{label}",
        concurrency=concurrency,
        metrics={"enabled": False},
        intervals={"pe_status": 3600, "deployment_status": 3600, "resync": 3600, "feed_wait": 25},
        timeouts={"default": 120},
    )
    agent = build_agent(settings)
    keep_samples(agent)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    if not agent.started.wait(120):
        raise SystemExit(f"{label}: the agent did not start")
    return agent, thread, env_id


class Sampled:
    """One of the agent's histograms that also keeps every sample, for exact percentiles here."""

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        self.samples: deque[float] = deque(maxlen=100_000)

    def observe(self, value: float) -> None:
        self.samples.append(value)
        self.histogram.observe(value)


def keep_samples(agent: Any) -> None:
    """Change -> action start and event -> agent read, sample by sample (the agent keeps histograms)."""
    agent.metrics.change_to_action = Sampled(agent.metrics.change_to_action)
    agent.metrics.feed_lag = Sampled(agent.metrics.feed_lag)


def fs_private(folder: Path, label: str) -> Path:
    base = folder / f"fs-{label}"
    base.mkdir()
    path = folder / f"fs-{label}.yaml"
    path.write_text(
        f"baseDir: {base}\ndeploymentDirPrefix: deployment_\ndeploymentInfoFile: config.yml\n"
        "deploymentPredictionBaseUrl: http://127.0.0.1:8080\n"
    )
    return path


def scenario(service: Service, folder: Path, package_id: str, label: str, plugin: dict[str, Any], n: int,
             concurrency: int, timeout: float) -> dict[str, Any]:  # fmt: skip
    from shipmate.agent.model import AppliedState

    cpu = time.process_time()
    agent, thread, env_id = start_agent(service, folder, label, plugin, concurrency)
    loader = subprocess.Popen(
        [sys.executable, __file__, "--load", service.url, service.token, env_id, package_id, str(n)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, _ = loader.communicate(timeout=timeout)
    created = json.loads(out)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = agent.store.all()
        done = sum(1 for r in records.values() if r.state is AppliedState.RUNNING)
        failed = sum(1 for r in records.values() if r.state is AppliedState.FAILED)
        if done + failed >= n and agent.reporter.backlog == 0:
            break
        time.sleep(0.02)
    all_ready = time.time()
    cpu = time.process_time() - cpu
    page = service.admin.list_deployments(environment_id=env_id, limit=1000)
    ready = sum(1 for d in page.items if d.observed.state.value == "ready")
    lags = list(agent.metrics.change_to_action.samples)
    agent.stop()
    thread.join(60)
    total = all_ready - created["started"]
    result = {
        "label": label,
        "deployments": n,
        "ready_in_service": ready,
        "failed": failed,
        "create_seconds": round(created["finished"] - created["started"], 3),
        "all_ready_seconds": round(total, 3),
        "after_last_create_seconds": round(all_ready - created["finished"], 3),
        "deployments_per_second": round(n / total, 1),
        "agent_cpu_ms_per_deployment": round(cpu * 1000 / n, 2),
        "change_to_action_under_load_ms": {
            "p50": round(pct(lags, 50) * 1000, 1),
            "p99": round(pct(lags, 99) * 1000, 1),
        },
    }
    print(json.dumps(result), flush=True)
    return result


def backlog(service: Service, folder: Path, package_id: str, n: int, concurrency: int) -> dict[str, Any]:
    """N deployments already created, then the agent starts: its own throughput, service creation aside."""
    from shipmate.agent.model import AppliedState

    environment = new_environment(service, "backlog")
    loader = subprocess.Popen(
        [sys.executable, __file__, "--load", service.url, service.token, environment[0], package_id, str(n)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    loader.communicate(timeout=1800)
    plugin = {"name": "filesystem", "privateConfig": str(fs_private(folder, "backlog"))}
    started = time.time()
    cpu = time.process_time()
    agent, thread, env_id = start_agent(service, folder, "backlog", plugin, concurrency, environment)
    up = time.time()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        running = sum(1 for r in agent.store.all().values() if r.state is AppliedState.RUNNING)
        if running >= n and agent.reporter.backlog == 0:
            break
        time.sleep(0.02)
    done = time.time()
    cpu = time.process_time() - cpu
    page = service.admin.list_deployments(environment_id=env_id, limit=1000)
    ready = sum(1 for d in page.items if d.observed.state.value == "ready")
    agent.stop()
    thread.join(60)
    result = {
        "label": "in-process backlog",
        "deployments": n,
        "ready_in_service": ready,
        "agent_start_seconds": round(up - started, 3),
        "all_ready_seconds": round(done - started, 3),
        "deployments_per_second": round(n / (done - up), 1),
        "agent_cpu_ms_per_deployment": round(cpu * 1000 / n, 2),
    }
    print(json.dumps(result), flush=True)
    return result


def latency(service: Service, folder: Path, packages: tuple[str, str], changes: int) -> dict[str, Any]:
    plugin = {"name": "filesystem", "privateConfig": str(fs_private(folder, "latency"))}
    agent, thread, env_id = start_agent(service, folder, "latency", plugin, 4)
    dep = service.admin.create_deployment(env_id, packages[0], name="latency")
    deadline = time.monotonic() + 60
    while agent.store.get(dep.id) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    agent.metrics.change_to_action.samples.clear()
    agent.metrics.feed_lag.samples.clear()
    cpu = time.process_time()
    for i in range(changes):
        target = packages[(i + 1) % 2]
        service.admin.replace_model(dep.id, target)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            record = agent.store.get(dep.id)
            if record is not None and record.model_package_id == target and agent.reporter.backlog == 0:
                break
            time.sleep(0.005)
        time.sleep(0.02)
    cpu = time.process_time() - cpu
    lags = [x * 1000 for x in agent.metrics.change_to_action.samples]
    feed = [x * 1000 for x in agent.metrics.feed_lag.samples]
    agent.stop()
    thread.join(60)
    result = {
        "label": "change-to-action (idle agent, single changes)",
        "samples": len(lags),
        "p50_ms": round(pct(lags, 50), 2),
        "p99_ms": round(pct(lags, 99), 2),
        "max_ms": round(max(lags), 2) if lags else None,
        "of_which_event_to_agent_read_p50_ms": round(pct(feed, 50), 2),
        "of_which_event_to_agent_read_p99_ms": round(pct(feed, 99), 2),
        "cpu_ms_per_change": round(cpu * 1000 / max(1, changes), 2),
    }
    print(json.dumps(result), flush=True)
    return result


def overhead(folder: Path, runner: str, rounds: int) -> dict[str, Any]:
    """Per action: the agent's driver around the command vs the same command run bare."""
    import shipmate.agent.drivers as drivers_module
    from shipmate.agent.drivers import CommandDriver, base_plugin_config
    from shipmate.agent.ports import ActionRequest, EnvironmentDescription
    from shipmate.plugin.actions import Action

    # time the command itself (spawn to exit) inside the driver, to isolate what the agent adds
    inner: list[float] = []
    run_command = drivers_module.run_command

    def timed(*a: Any, **k: Any) -> Any:
        outcome = run_command(*a, **k)
        inner.append(outcome.duration)
        return outcome

    drivers_module.run_command = timed  # type: ignore[assignment]

    env = EnvironmentDescription(id="e-bench", name="bench", created_on="2026-01-01T00:00:00+00:00")
    private = fs_private(folder, f"overhead-{Path(runner).parent.parent.name}")
    words = [runner, "--plugin", "filesystem", "--private-config", str(private)]
    driver = CommandDriver(words, base_plugin_config(env, "http://127.0.0.1:9", {}, " ".join(words)), env,
                           folder / "overhead-actions", "bench-token-0123456789")  # fmt: skip
    request = ActionRequest(Action.PLUGIN_START, timeout=60)
    config = folder / "bare-config.yaml"
    config.write_text(
        "pluginConfig: {MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING: false}\npeInfo: {id: e-bench}\n"
    )
    status = folder / "bare-status.yaml"
    via_agent, bare, python_pass = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        outcome = driver.run(request)
        if outcome.status.value != "passing":
            raise SystemExit(f"overhead: {runner} plugin_start failed: {outcome.msg}")
        via_agent.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.Popen([*words, "--config", str(config), "--action", "plugin_start", "--status-file",
                          str(status)], stdout=subprocess.DEVNULL).wait()  # fmt: skip
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.Popen([sys.executable, "-c", "pass"]).wait()
        python_pass.append(time.perf_counter() - t)
    drivers_module.run_command = run_command  # type: ignore[assignment]
    own = [total - command for total, command in zip(via_agent, inner, strict=True)]
    a, b = statistics.median(via_agent), statistics.median(bare)
    result = {
        "label": f"external-command overhead ({runner})",
        "rounds": rounds,
        "through_agent_ms": round(a * 1000, 1),
        "bare_command_ms": round(b * 1000, 1),
        "agent_overhead_ms": round((a - b) * 1000, 1),
        "agent_overhead_share_of_command": round((a - b) / b, 3),
        "agent_own_work_ms": round(statistics.median(own) * 1000, 2),
        "agent_own_work_share_of_command": round(statistics.median(own) / b, 4),
        "python_c_pass_ms": round(statistics.median(python_pass) * 1000, 1),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        url, token, env_id, package_id, n = sys.argv[2:7]
        load(url, token, env_id, package_id, int(n), threads=4)
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=1000, help="deployments, in-process scenario")
    parser.add_argument(
        "--external-n", type=int, default=1000, help="deployments, external-command scenarios"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="agent concurrency, in-process")
    parser.add_argument("--external-concurrency", type=int, default=4, help="agent concurrency, commands")
    parser.add_argument("--changes", type=int, default=200, help="single changes for the latency figure")
    parser.add_argument("--overhead-rounds", type=int, default=30)
    parser.add_argument("--skip", action="append", default=[], help="scenario labels to skip")
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    service = Service(folder)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    try:
        package = service.admin.upload_model_package(build_package(folder))
        other = service.admin.upload_model_package(_second_package(folder))
        runs = []
        if "in-process" not in args.skip:
            plugin = {"name": "filesystem", "privateConfig": str(fs_private(folder, "inproc"))}
            runs.append(
                scenario(service, folder, package.id, "in-process", plugin, args.n, args.concurrency, 600)
            )
        if "backlog" not in args.skip:
            results["backlog"] = backlog(service, folder, package.id, args.n, args.concurrency)
        shipmate_runner = shutil.which("bosun-plugin-runner")
        if "shipmate-cmd" not in args.skip and shipmate_runner:
            command = (
                f"{shipmate_runner} --plugin filesystem --private-config {fs_private(folder, 'shipcmd')}"
            )
            runs.append(scenario(service, folder, package.id, "shipmate-cmd", {"command": command},
                                 args.external_n, args.external_concurrency, 1800))  # fmt: skip
        bosun = BOSUN_VENV / "bin" / "bosun-plugin-runner"
        if "bosun-cmd" not in args.skip and bosun.exists():
            command = f"{bosun} --plugin filesystem --private-config {fs_private(folder, 'bosuncmd')}"
            runs.append(scenario(service, folder, package.id, "bosun-cmd", {"command": command},
                                 args.external_n, args.external_concurrency, 1800))  # fmt: skip
        elif "bosun-cmd" not in args.skip:
            print(
                f"peer skipped: {bosun} missing (python3 -m venv {BOSUN_VENV}; pip install datarobot-bosun)"
            )
        results["scenarios"] = runs
        if "latency" not in args.skip:
            results["latency"] = latency(service, folder, (package.id, other.id), args.changes)
        if "overhead" not in args.skip:
            results["overhead"] = [
                overhead(folder, r, args.overhead_rounds)
                for r in (shipmate_runner, str(bosun))
                if r and Path(r).exists()
            ]
    finally:
        service.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print("\n== summary")
    for run in results.get("scenarios", []):
        print(f"{run['label']:>13}: {run['deployments']} deployments ready in {run['all_ready_seconds']} s "
              f"({run['deployments_per_second']}/s; creating them took {run['create_seconds']} s; "
              f"{run['ready_in_service']} ready in the service)")  # fmt: skip
    if "backlog" in results:
        b = results["backlog"]
        print(
            f"      backlog: {b['deployments']} deployments created beforehand, all ready "
            f"{b['all_ready_seconds']} s after the agent was started "
            f"(start-up {b['agent_start_seconds']} s; {b['deployments_per_second']}/s)"
        )
    if "latency" in results:
        lat = results["latency"]
        print(
            f"change -> action: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms ({lat['samples']} changes); "
            f"of which event -> agent read p50 {lat['of_which_event_to_agent_read_p50_ms']} ms, "
            f"p99 {lat['of_which_event_to_agent_read_p99_ms']} ms"
        )
    for o in results.get("overhead", []):
        print(
            f"overhead: the agent's own work {o['agent_own_work_ms']} ms per action (config file, status "
            f"file, clean-up) vs {o['bare_command_ms']} ms for the bare command; end to end "
            f"{o['through_agent_ms']} ms through the agent ({o['label']})"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _second_package(folder: Path) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipmate.packages import BuildOptions, build_sklearn_package

    X, y = load_iris(return_X_y=True, as_frame=True)
    path = folder / "iris-2.mlpkg"
    build_sklearn_package(LogisticRegression(max_iter=300, C=0.3).fit(X, y), X.head(20), path, name="iris",
                          options=BuildOptions(version="2"))  # fmt: skip
    return path


if __name__ == "__main__":
    main()
