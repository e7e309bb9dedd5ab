"""``shipmate demo``: the whole loop on embedded defaults, in one command.

Starts the service (SQLite), an agent on a filesystem environment and a
prediction server over that environment's directory; builds a small model from
data shipped with scikit-learn (no downloads), registers it, deploys it, shows
progress until it is ready, sends a few predictions and prints the answers and
the service health, then a batch with one feature shifted and the drift the service
found. The prediction server flushes its monitoring every 0.5 s (2 s by default) so
the figures arrive sooner. Then it keeps everything running until interrupted (``--once`` stops after the
demonstration). Each part runs as its own process, as it would in production;
their logs go to ``<data-dir>/logs/``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="where the service, agent and deployments keep their files")
    ] = Path("./shipmate-demo"),
    port: Annotated[int, typer.Option("--port", help="service port (0 = any free port)")] = 8000,
    predict_port: Annotated[
        int, typer.Option("--predict-port", help="prediction server port (0 = any)")
    ] = 8080,
    any_port: Annotated[
        bool, typer.Option("--any-port", help="if a port is busy, use a free one instead of stopping")
    ] = False,
    once: Annotated[bool, typer.Option("--once", help="stop everything after the demonstration")] = False,
    rows: Annotated[int, typer.Option("--rows", min=1, max=50, help="how many predictions to send")] = 3,
    json_output: Annotated[bool, typer.Option("--json", help="print a JSON summary at the end")] = False,
) -> None:
    """Run service + agent + prediction server locally, deploy a sample model and query it.

    Ctrl-C, SIGTERM or SIGHUP stop everything it started. A second run reuses the
    environment, model and deployment of the first (same data directory).
    """
    from rich.console import Console

    console = Console(stderr=json_output)
    runner = _Demo(data_dir.resolve(), console)
    code = 0
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    try:
        runner.lock()
        port = _choose_port(port, any_port, "--port", "service")
        predict_port = _choose_port(predict_port, any_port, "--predict-port", "prediction server")
        summary = runner.run(port, predict_port, rows)
        if json_output:
            import json

            typer.echo(json.dumps(summary, indent=2))
        if not once:
            console.print("\n[bold]Everything keeps running.[/bold] Press Ctrl-C to stop.")
            runner.wait_forever()
    except _DemoFailed as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        if runner.logs.is_dir():
            console.print(f"logs: {runner.logs}")
        code = 1
    except KeyboardInterrupt:
        console.print("\ninterrupted: stopping what the demo started")
    finally:
        for sig in previous:  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        try:
            runner.stop_all()
            runner.unlock()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    raise typer.Exit(code)


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM/SIGHUP take the same path as Ctrl-C, so everything started is stopped."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _choose_port(port: int, any_port: bool, option: str, what: str) -> int:
    """The port to use: as given; a free one for 0 or, with --any-port, when the given one is busy."""
    if port == 0:
        return _free_port()
    if not _busy(port):
        return port
    if any_port:
        return _free_port()
    raise _DemoFailed(
        f"{option} {port}: the port is in use, so the {what} cannot start there (is another demo "
        f"running? stop it first, or pass --any-port to use free ports, or {option} N)"
    )


class _DemoFailed(Exception):
    pass


class _Demo:
    def __init__(self, data_dir: Path, console: Any) -> None:
        self.dir = data_dir
        self.console = console
        self.logs = data_dir / "logs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock: Any = None

    def lock(self) -> None:
        """One demo per data directory: two would share one SQLite file and one deployments directory."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.dir / "demo.lock", "a+")  # noqa: SIM115 - held for the demo's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise _DemoFailed(
                f"another demo (pid {holder}) is running from {self.dir}: stop it first, "
                "or pass --data-dir DIR for a separate one"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- the steps ----------------------------------------------------------------------

    def run(self, port: int, predict_port: int, rows: int) -> dict[str, Any]:
        from rich.table import Table

        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        admin_token = self._admin_token()
        service_url = f"http://127.0.0.1:{port}"
        predict_url = f"http://127.0.0.1:{predict_port}"
        console = self.console

        with console.status("Starting the service (SQLite)…"):
            self._spawn(
                "service",
                [
                    "server",
                    "--data-dir",
                    str(self.dir / "service"),
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                {"SHIPMATE_ADMIN_TOKEN": admin_token},
            )
            self._wait_http(f"{service_url}/api/v1/health", "service", 90)
        console.print(f"[green]✓[/green] service at {service_url}")

        from shipmate.client.client import ShipmateClient

        admin = ShipmateClient(service_url, admin_token)
        env = next((e for e in admin.list_environments() if e.name == "demo-filesystem"), None)
        if env is None:
            env = admin.create_environment(
                "demo-filesystem", "filesystem", description="shipmate demo: deployments as directories"
            )
        agent_token = self._agent_token(admin, env.id)
        console.print(f"[green]✓[/green] prediction environment {env.id} (filesystem)")

        sample = _sample()
        existing = admin.list_model_packages(name="iris-demo", limit=1)
        if existing:
            package = admin.get_model_package(existing[0].id)
            console.print(
                f"[green]✓[/green] model package {package.id} ({package.name} {package.version}) reused"
            )
        else:
            with console.status("Building a sample model (scikit-learn, iris data shipped with it)…"):
                package = admin.upload_model_package(self._build_model())
            console.print(
                f"[green]✓[/green] model package {package.id} ({package.name} {package.version}) registered"
            )

        deployments_dir = self.dir / "deployments"
        deployments_dir.mkdir(exist_ok=True)
        spool = self.dir / "monitoring-spool"
        config = self._agent_config(service_url, env.id, deployments_dir, predict_url)
        monitor_config = self._monitor_config(service_url, spool)
        with console.status("Starting the agent, the prediction server and the monitoring agent…"):
            self._spawn("agent", ["agent", "--config", str(config)], {"MLOPS_API_TOKEN": agent_token})
            self._spawn(
                "prediction-server",
                ["serve", "--deployments-dir", str(deployments_dir), "--port", str(predict_port),
                 "--workers", "1", "--poll-interval", "0.2", "--work-dir", str(self.dir / "serve-work"),
                 "--monitor-settings", f"spooler_type=FILESYSTEM;directory={spool};flush_seconds=0.5"],
                {},
            )  # fmt: skip
            monitor = ["monitor", "--config", str(monitor_config)]
            self._spawn("monitoring-agent", monitor, {"MLOPS_API_TOKEN": agent_token})
            self._wait_http(f"{predict_url}/ping", "prediction server", 90)
        console.print(
            f"[green]✓[/green] agent, prediction server and monitoring agent running (logs in {self.logs})"
        )

        deployment = self._deployment(admin, env.id, package.id, predict_url)
        ready = self._follow(admin, deployment.id)
        console.print(f"[green]✓[/green] deployment {deployment.id} is [bold]ready[/bold]")

        url = ready.observed.prediction_url or f"{predict_url}/{deployment.id}/predict"
        answers = self._predict(url, sample[:rows])
        table = Table(title="Predictions")
        for column in [*sample[0].keys(), "prediction"]:
            table.add_column(column)
        for record, answer in zip(sample[:rows], answers, strict=True):
            table.add_row(*[str(v) for v in record.values()], str(answer))
        console.print(table)
        health = self._health(admin, deployment.id, len(answers))
        drift = self._drift(admin, deployment.id, url)
        console.print(f"prediction URL: [bold]{url}[/bold]")
        console.print(
            f"service URL:    [bold]{service_url}[/bold]  (admin token in {self.dir / 'admin-token'})"
        )
        return {
            "serviceUrl": service_url,
            "predictionUrl": url,
            "environmentId": env.id,
            "deploymentId": deployment.id,
            "modelPackageId": package.id,
            "predictions": answers,
            "serviceHealth": health,
            "drift": drift,
        }

    def _monitor_config(self, service_url: str, spool: Path) -> Path:
        """The monitoring agent's config: the prediction server's spool, forwarded to the service."""
        import yaml

        spool.mkdir(exist_ok=True)
        path = self.dir / "monitoring-agent.yaml"
        channel = {"type": "FS_SPOOL", "details": {"name": "demo", "spoolDirectoryPath": str(spool)}}
        document = {"mlopsUrl": service_url, "channelConfigs": [channel], "agentPendingRecordsTimeoutMs": 500}
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def _health(self, admin: Any, deployment_id: str, rows: int) -> dict[str, Any]:
        """Wait until the service's health figures count the predictions just made, then print them."""
        from shipmate.cli.monitoring import fetch_service_health, render_service_health

        deadline = time.monotonic() + 60
        with self.console.status("Waiting for the predictions to reach the service's health figures…"):
            while True:
                self._check_alive()
                result = fetch_service_health(admin, deployment_id, since="1h")
                if result.summary.total_predictions >= rows or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        render_service_health(result, self.console)
        figures: dict[str, Any] = result.summary.model_dump(mode="json", by_alias=True)
        return figures

    def _drift(self, admin: Any, deployment_id: str, url: str) -> dict[str, Any]:
        """Send a batch whose petal length moved up, wait until the service counted it, print its drift."""
        from shipmate.cli.drift import fetch_drift, render_drift

        before = fetch_drift(admin, deployment_id, since="1h").rows
        batch = _shifted_batch()
        self._predict(url, batch)
        self.console.print(
            f"sent {len(batch)} more rows with [bold]{SHIFTED_FEATURE}[/bold] moved up by {SHIFT_CM} cm"
        )
        deadline = time.monotonic() + 60
        with self.console.status("Waiting for the shifted batch to reach the service's drift figures…"):
            while True:
                self._check_alive()
                result = fetch_drift(admin, deployment_id, since="1h")
                if result.rows >= before + len(batch) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        render_drift(result, self.console)
        columns = [*result.features, *result.predictions]
        return {
            "status": result.status,
            "atRisk": [c.name for c in columns if c.status == "at_risk"],
            "warning": [c.name for c in columns if c.status == "warning"],
        }

    def _admin_token(self) -> str:
        path = self.dir / "admin-token"
        if path.exists():
            return path.read_text().strip()
        token = "adm-" + secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        return token

    def _agent_token(self, admin: Any, env_id: str) -> str:
        """The demo agent's token, kept in the data directory so runs do not pile tokens up."""
        path = self.dir / "agent-token"
        if path.exists():
            return path.read_text().strip()
        _, token = admin.create_token(kind="agent", environment_id=env_id, name="demo agent")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        return str(token)

    def _deployment(self, admin: Any, env_id: str, package_id: str, predict_url: str) -> Any:
        """The demo's deployment: an earlier run's (relaunched if its URL is stale), or a new one."""
        page = admin.list_deployments(environment_id=env_id, name="iris-demo", limit=10)
        mine = [d for d in page.items if d.desired.state != "deleted"]
        if not mine:
            return admin.create_deployment(env_id, package_id, name="iris-demo", description="shipmate demo")
        found = mine[0]
        self.console.print(f"[green]✓[/green] deployment {found.id} reused")
        if found.desired.state == "stopped":
            return admin.activate(found.id)
        url = found.observed.prediction_url or ""
        if not url.startswith(predict_url + "/") or found.observed.state.value != "ready":
            return admin.relaunch(found.id)  # the prediction server moved, or it was not serving
        return found

    def _build_model(self) -> Path:
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        from shipmate.packages import BuildOptions, build_sklearn_package

        X, y = load_iris(return_X_y=True, as_frame=True)
        names = load_iris().target_names
        model = LogisticRegression(max_iter=500).fit(X, names[y])
        path = self.dir / "iris-demo.mlpkg"
        version = time.strftime("%Y%m%d-%H%M%S")
        # all 150 rows: the baseline
        build_sklearn_package(model, X, path, name="iris-demo", options=BuildOptions(version=version))
        return path

    def _agent_config(self, service_url: str, env_id: str, deployments_dir: Path, predict_url: str) -> Path:
        import yaml

        private = self.dir / "plugin.filesystem.conf.yaml"
        private.write_text(
            yaml.safe_dump(
                {
                    "baseDir": str(deployments_dir),
                    "deploymentDirPrefix": "deployment_",
                    "deploymentInfoFile": "config.yml",
                    "deploymentPredictionBaseUrl": predict_url,
                    "waitForPredictionServer": 30,
                }
            )
        )
        config = self.dir / "agent.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "serviceUrl": service_url,
                    "environmentId": env_id,
                    "plugin": {"name": "filesystem", "privateConfig": str(private)},
                    "workDir": str(self.dir / "agent"),
                    "metrics": {"port": 0},
                    "intervals": {"peStatus": 15, "deploymentStatus": 15},
                }
            )
        )
        return config

    def _follow(self, admin: Any, deployment_id: str) -> Any:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        deadline = time.monotonic() + 120
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=self.console, transient=True) as progress:  # fmt: skip
            task = progress.add_task("deploying: waiting for the agent", total=None)
            while time.monotonic() < deadline:
                self._check_alive()
                current = admin.get_deployment(deployment_id)
                observed = current.observed
                progress.update(
                    task, description=f"deploying: {observed.state.value} ({observed.status.value})"
                )
                if observed.state.value == "ready" and observed.generation >= current.generation:
                    return current
                if observed.status.value == "failing" and observed.phase == "finished":
                    raise _DemoFailed(f"the deployment failed: {observed.message}")
                time.sleep(0.1)
        raise _DemoFailed("the deployment did not become ready within 120 s")

    def _predict(self, url: str, records: list[dict[str, Any]]) -> list[Any]:
        import httpx

        deadline = time.monotonic() + 60
        last = ""
        while time.monotonic() < deadline:
            try:
                response = httpx.post(url, json=records, timeout=30)
            except httpx.HTTPError as exc:
                last = str(exc)
            else:
                if response.status_code == 200:
                    body = response.json()
                    return [row.get("prediction") for row in body.get("data", [])]
                last = f"{response.status_code} {response.text[:300]}"
                if response.status_code not in (404, 503):
                    break
            time.sleep(0.2)  # the prediction server picks a new deployment up within its poll interval
        raise _DemoFailed(f"predictions at {url} failed: {last}")

    # -- processes ----------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
        self.processes[name] = subprocess.Popen(
            [*SHIPMATE, *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-1500:]
                raise _DemoFailed(f"the {name} exited with code {process.returncode}:\n{tail}")

    def _wait_http(self, url: str, what: str, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise _DemoFailed(f"the {what} did not answer at {url} within {timeout:.0f} s")

    def wait_forever(self) -> None:
        while True:
            self._check_alive()
            time.sleep(1)

    def stop_all(self) -> None:
        """SIGTERM each part (the agent first, so it stops cleanly; the service last, so the
        monitoring agent can still deliver), then SIGKILL stragglers."""
        first = ("agent", "prediction-server", "monitoring-agent")
        order = [n for n in first if n in self.processes]
        order += [n for n in self.processes if n not in first and n != "service"] + ["service"]
        for name in order:
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        self.processes.clear()


def _sample() -> list[dict[str, Any]]:
    """Rows to send for predictions (iris, shipped with scikit-learn: no download)."""
    from sklearn.datasets import load_iris

    X = load_iris(as_frame=True).data
    sample = X.sample(n=min(50, len(X)), random_state=7).to_dict(orient="records")
    return [{str(k): float(v) for k, v in row.items()} for row in sample]


SHIFTED_FEATURE = "petal length (cm)"
SHIFT_CM = 2.5


def _shifted_batch(rows: int = 300) -> list[dict[str, Any]]:
    """Iris rows drawn again, with one feature moved: the drift the demo shows."""
    from sklearn.datasets import load_iris

    X = load_iris(as_frame=True).data.sample(n=rows, replace=True, random_state=11)
    X[SHIFTED_FEATURE] += SHIFT_CM
    return [{str(k): float(v) for k, v in row.items()} for row in X.to_dict(orient="records")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _busy(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
