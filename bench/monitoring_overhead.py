#!/usr/bin/env python3
"""What monitoring costs `shipmate serve`: throughput and CPU with it on against off, in one run.

Two servers of the shared benchmark GBC (20 numeric features) run at once, one with
monitoring off and one recording into a FILESYSTEM spool with default flush settings; each
pair measures them in turn (alternating which goes first) with the shared load generator:
single-row JSON requests at concurrency 8 and 1,000-row JSON batches at concurrency 1. The
ratio on ÷ off is taken within each pair and the median over pairs reported, beside the
servers' CPU time per request (or per 1,000 rows) read from /proc for each measurement.

Then, in this process: the size of one aggregate record for 1,000 rows x 20 features, the
flush cost, and a 1,000-feature model (flush time and record size for 1,000 rows).

    python3 bench/monitoring_overhead.py                      # 3 pairs of 3 s per load
    python3 bench/monitoring_overhead.py --pairs 5 --duration 4 --workers 2
    python3 bench/monitoring_overhead.py --skip-servers        # only the in-process figures
    python3 bench/monitoring_overhead.py --skip-servers --sequential   # one client, CPU per request
    python3 bench/monitoring_overhead.py --skip-servers --app --pairs 6  # the app in-process, CPU per request

Every run also prints monitoring's own CPU per single-row request and per 1,000-row batch
(`own_cost`: request path and flusher thread, in µs, around an app that only answers).

Needs the model package `serve_bench.py` prepares (built here if missing).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_duel import start
from serve_bench import CACHE, free_port, log, measure, prepare, serve_command, stop

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in the server's process group."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: the process group
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


@contextlib.contextmanager
def serving(package: Path, workers: int, monitor: str | None, logfile: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    cmd = serve_command(package, port, workers)
    if monitor:
        cmd += ["--monitor-settings", monitor]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PREDICTION_API_", "MONITOR"))}
    proc = start(cmd, f"http://127.0.0.1:{port}/ping", logfile, env)
    try:
        yield f"http://127.0.0.1:{port}/predictions", proc.pid
    finally:
        stop(proc)


def measured(url: str, pgid: int, models: Path, duration: int, load: str, conc: int) -> tuple[float, float]:
    """Throughput (req/s or rows/s) and the servers' CPU seconds during the measurement."""
    before = cpu_seconds(pgid)
    rate = measure(url, "json", models, duration, load, conc)
    return rate, cpu_seconds(pgid) - before


def servers(args: argparse.Namespace, package: Path) -> None:
    logs = Path(tempfile.mkdtemp(prefix="monitoring-overhead-"))
    spool = logs / "spool"
    loads = [("single", 8, "req/s", 1), ("batch", 1, "rows/s", 1000)]
    with contextlib.ExitStack() as both:
        sides = {
            "off": both.enter_context(serving(package, args.workers, None, logs / "off.log")),
            "on": both.enter_context(
                serving(package, args.workers, f"spooler_type=FILESYSTEM;directory={spool}", logs / "on.log")
            ),
        }
        for load, conc, _, _ in loads:  # settle both: caches, first flushes
            for url, _ in sides.values():
                measure(url, "json", args.models, 1, load, conc)
        for load, conc, unit, per in loads:
            ratios: list[float] = []
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            rate: dict[str, list[float]] = {"off": [], "on": []}
            for p in range(args.pairs):
                order = ["off", "on"] if p % 2 == 0 else ["on", "off"]
                got = {side: measured(*sides[side], args.models, args.duration, load, conc) for side in order}
                for side, (r, c) in got.items():
                    rate[side].append(r)
                    units = r * args.duration / per  # requests, or thousands of rows
                    cpu[side].append(1000 * c / units if units else float("nan"))
                ratios.append(got["on"][0] / got["off"][0])
                log(f"{load} c={conc} pair {p + 1}: off {got['off'][0]:,.0f} {unit}, on {got['on'][0]:,.0f}, "
                    f"on/off {ratios[-1]:.3f}")  # fmt: skip
            what = "ms CPU per request" if per == 1 else "ms CPU per 1,000 rows"
            off, on = statistics.median(rate["off"]), statistics.median(rate["on"])
            print(
                f"{load} JSON c={conc}, {args.workers} worker(s): "
                f"off {off:,.0f} {unit} ({statistics.median(cpu['off']):.3f} {what}), "
                f"on {on:,.0f} {unit} ({statistics.median(cpu['on']):.3f} {what}); "
                f"on/off median {statistics.median(ratios):.3f} "
                f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} pairs)",
                flush=True,
            )
    spooled = sum(p.stat().st_size for p in spool.glob("fs_spool.*"))
    print(f"spool written during the run: {spooled:,} bytes in {len(list(spool.glob('fs_spool.*')))} files")


def sequential(args: argparse.Namespace, package: Path) -> None:
    """One client posting back to back (no load generator): CPU per request of each server."""
    import httpx

    logs = Path(tempfile.mkdtemp(prefix="monitoring-sequential-"))
    bodies = {
        "batch": ((args.models / "records_1000.json").read_bytes(), 200, 1000),
        "single": ((args.models / "records_1.json").read_bytes(), 2000, 1),
    }
    cpu: dict[tuple[str, str], list[float]] = {}
    with contextlib.ExitStack() as both:
        sides = {
            "off": both.enter_context(serving(package, args.workers, None, logs / "off.log")),
            "on": both.enter_context(
                serving(
                    package,
                    args.workers,
                    f"spooler_type=FILESYSTEM;directory={logs / 'spool'}",
                    logs / "on.log",
                )
            ),
        }
        headers = {"content-type": "application/json"}
        for r in range(args.pairs):
            for side in ["off", "on"] if r % 2 == 0 else ["on", "off"]:
                url, pgid = sides[side]
                with httpx.Client() as client:
                    for load, (body, count, _) in bodies.items():
                        for _ in range(count // 10):
                            client.post(url, content=body, headers=headers)
                        before = cpu_seconds(pgid)
                        for _ in range(count):
                            client.post(url, content=body, headers=headers).raise_for_status()
                        cpu.setdefault((side, load), []).append((cpu_seconds(pgid) - before) / count * 1000)
    for load, (_, count, per) in bodies.items():
        off, on = statistics.median(cpu[("off", load)]), statistics.median(cpu[("on", load)])
        what = "1,000-row batch" if per == 1000 else "single-row request"
        print(f"sequential {what} ({count} per side and round, {args.pairs} rounds): server CPU "
              f"off {off:.3f} ms, on {on:.3f} ms per request (on/off {on / off:.3f})")  # fmt: skip


# ---- in-process figures ----------------------------------------------------------------------


class _Rows:
    def __init__(self, columns: tuple[str, ...], rows: Any) -> None:
        self.columns, self.rows, self.frame = columns, rows, None


class _Deployment:
    def __init__(self, manifest: Any) -> None:
        self.id, self.model_id, self.manifest, self.package_sha256 = "bench", "m", manifest, "0" * 64


def _synthetic_manifest(features: int, rows: int = 2000) -> Any:
    import numpy as np

    from shipmate.packages import Feature, FeatureType, Manifest
    from shipmate.packages.baseline import feature_bins, output_bins

    rng = np.random.default_rng(0)
    sample = rng.normal(size=(rows, features))
    import pandas as pd

    names = [f"f{i}" for i in range(features)]
    manifest = Manifest(
        name="wide",
        framework="sklearn",
        target_type="binary",
        class_labels=[0, 1],
        features=[Feature(name=n, type=FeatureType.NUMERIC) for n in names],
        baseline={
            n: {"bins": feature_bins(pd.Series(sample[:, i]), FeatureType.NUMERIC)}
            for i, n in enumerate(names)
        },
        created_at=datetime.now(UTC),
        model_path="m",
        files={"m": "0" * 64},
    )
    p = rng.uniform(size=rows)
    return manifest.model_copy(
        update={"prediction_baseline": output_bins(manifest, np.column_stack([1 - p, p]), None)}
    )


def flush_figures(manifest: Any, rows: int, requests: int, repeats: int = 20) -> tuple[float, int, int]:
    """Median flush time (ms), aggregate size as JSON and as spooled (compressed frame), in bytes,
    for ``rows`` rows in ``requests`` requests."""
    import numpy as np
    import orjson

    from shipmate.monitoring.recorder import Recorder
    from shipmate.monitoring.settings import MonitorSettings, SpoolerType
    from shipmate.monitoring.spool import NoSpool
    from shipmate.packages import Scores

    dep = _Deployment(manifest)
    names = tuple(manifest.feature_names)
    rng = np.random.default_rng(1)
    per = rows // requests
    batches = [
        (_Rows(names, rng.normal(size=(per, len(names)))), Scores(probabilities=np.full((per, 2), 0.5)))
        for _ in range(requests)
    ]
    recorder = Recorder(
        MonitorSettings(enabled=True, spooler_type=SpoolerType.NONE), NoSpool(), clock=lambda: 6000.0
    )
    times = []
    latency = rng.lognormal(0.5, 0.6, size=requests)  # spread over a few dozen histogram buckets
    for _ in range(repeats):
        for i, (request, scores) in enumerate(batches):
            recorder.on_scored(dep, request, scores)
            ms = float(latency[i])
            recorder.on_request(
                dep, rows=per, response_ms=ms, execution_ms=ms / 2, status=200, consumer=f"c{i % 3}"
            )
        started = time.perf_counter()
        (record,) = recorder.flush()
        times.append(time.perf_counter() - started)
        payload = orjson.dumps(record.to_json())
    from shipmate.monitoring.fs_spool import encode_frame

    return 1000 * statistics.median(times), len(payload), len(encode_frame(payload))


def in_process(package: Path) -> None:
    from shipmate.packages import read_manifest

    gbc = read_manifest(package)
    ms, size, spooled = flush_figures(gbc, 1000, 1)
    print(
        f"aggregate for 1,000 rows x {len(gbc.features)} features (one 1,000-row request): {size:,} bytes "
        f"of JSON, {spooled:,} bytes spooled; flush {ms:.2f} ms"
    )
    ms, size, spooled = flush_figures(gbc, 1000, 1000, repeats=5)
    print(
        f"aggregate for 1,000 single-row requests x {len(gbc.features)} features: {size:,} bytes of JSON, "
        f"{spooled:,} spooled; flush {ms:.2f} ms"
    )
    wide = _synthetic_manifest(1000)
    ms, size, spooled = flush_figures(wide, 1000, 1, repeats=5)
    print(f"1,000 features, 1,000 rows in one request: flush {ms:.1f} ms, aggregate {size:,} bytes of JSON, "
          f"{spooled:,} spooled")  # fmt: skip


# ---- the app driven in-process (no network, no load generator) --------------------------------


async def _post(app: Any, body: bytes, path: str = "/predictions", consumer: bytes | None = None) -> int:
    """One POST through the ASGI app; its status."""
    import asyncio

    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if consumer is not None:
        headers.append((b"x-consumer-id", consumer))
    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080), "scheme": "http",
        "http_version": "1.1", "root_path": "", "asgi": {"version": "3.0"},
    }  # fmt: skip
    await app(scope, receive, send)
    return status[0]


async def _app_cpu(package: Path, monitor: str | None, body: bytes, count: int) -> float:
    """CPU time (ms, every thread of this process) per request through a fresh app, after a warm-up."""
    import asyncio

    from shipmate.serving.server import build_app
    from shipmate.serving.settings import ServeSettings

    for name in ("MONITOR_SETTINGS", "PREDICTION_API_MONITORING_SETTINGS", "MLOPS_SPOOLER_TYPE"):
        os.environ.pop(name, None)
    if monitor:
        os.environ["MONITOR_SETTINGS"] = monitor
    app = build_app(ServeSettings(model=package, log_level="warning"))
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def life_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await events.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    lifespan = asyncio.create_task(app(scope, events.get, life_send))
    await started.wait()
    for _ in range(max(20, count // 10)):
        assert await _post(app, body) == 200
    before = time.process_time()
    for _ in range(count):
        await _post(app, body)
    spent = time.process_time() - before
    await events.put({"type": "lifespan.shutdown"})
    await lifespan
    return 1000 * spent / count


def app_figures(args: argparse.Namespace, package: Path) -> None:
    """The prediction server's app called in this process, off and on in turns: CPU per request."""
    import asyncio

    spool = Path(tempfile.mkdtemp(prefix="monitoring-app-"))
    loads = {
        "1,000-row batch": ((args.models / "records_1000.json").read_bytes(), 300),
        "single-row request": ((args.models / "records_1.json").read_bytes(), 3000),
    }
    for what, (body, count) in loads.items():
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        for r in range(args.pairs):
            for side in ["off", "on"] if r % 2 == 0 else ["on", "off"]:
                # a directory per app: each opens a spool file of its own, and nothing consumes them
                where = spool / f"{len(cpu['on'])}-{what[0]}"
                monitor = f"spooler_type=FILESYSTEM;directory={where}" if side == "on" else None
                cpu[side].append(asyncio.run(_app_cpu(package, monitor, body, count)))
        off, on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
        rounds = {side: [round(c, 3) for c in values] for side, values in cpu.items()}
        print(f"app in-process, {what} ({count} per side and round, {args.pairs} rounds): CPU off "
              f"{off:.3f} ms, on {on:.3f} ms per request (off/on {off / on:.3f}; rounds {rounds})",
              flush=True)  # fmt: skip


def own_cost(package: Path, rows: int, n: int) -> tuple[float, float]:
    """Monitoring's own CPU per request of ``rows`` rows, in µs: the request path (the middleware,
    the score hook and the recorder's calls in the serving thread) and the flusher thread's share
    (binning, aggregating, metrics; its flushes triggered as in the server, by rows or time),
    measured around an app that only answers, apart from any model or network. The requests
    carry distinct random rows and three consumers."""
    import asyncio

    import numpy as np

    from shipmate.monitoring.asgi import MonitoringMiddleware, ServeMetrics
    from shipmate.monitoring.recorder import Recorder
    from shipmate.monitoring.settings import MonitorSettings, SpoolerType
    from shipmate.monitoring.spool import NoSpool
    from shipmate.packages import Scores, read_manifest

    manifest = read_manifest(package)
    deployment = _Deployment(manifest)
    names = tuple(manifest.feature_names)
    rng = np.random.default_rng(2)
    distinct = 20 if rows >= 100 else 2000
    requests = [
        (_Rows(names, rng.normal(size=(rows, len(names)))), Scores(probabilities=rng.dirichlet((1, 1), rows)))
        for _ in range(distinct)
    ]
    hook: list[Any] = []
    count = 0

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        request, scores = requests[count % distinct]
        for h in hook:
            h(deployment, _Rows(names, request.rows), scores)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    class Registry:
        def all(self) -> list[Any]:
            return [deployment]

    async def loop(app: Any) -> float:
        nonlocal count
        before = time.thread_time()
        for count in range(n):
            await _post(app, b"", consumer=f"c{count % 3}".encode())
        return time.thread_time() - before

    bare, path, flusher = [], [], []
    for _ in range(5):
        hook.clear()
        bare.append(asyncio.run(loop(answer)))
        recorder = Recorder(MonitorSettings(enabled=True, spooler_type=SpoolerType.NONE), NoSpool())
        middleware = MonitoringMiddleware(answer, recorder, ServeMetrics(SpoolerType.NONE), Registry(), bool)
        hook.append(middleware.score_hook)
        recorder.start()
        process, thread = time.process_time(), time.thread_time()
        path.append(asyncio.run(loop(middleware)))
        recorder.stop()  # the last flush, on the flusher thread
        flusher.append((time.process_time() - process) - (time.thread_time() - thread))
    per = 1e6 / n
    return (statistics.median(path) - statistics.median(bare)) * per, statistics.median(flusher) * per


def own_cost_figures(package: Path) -> None:
    single = own_cost(package, 1, 20_000)
    batch = own_cost(package, 1000, 400)
    print(f"monitoring's own CPU (median of 5 runs, FILESYSTEM spool replaced by none): single-row request: "
          f"request path {single[0]:.1f} µs, flusher {single[1]:.1f} µs, total {sum(single):.1f} µs; "
          f"1,000-row batch: request path {batch[0]:.0f} µs, flusher {batch[1]:.0f} µs, "
          f"total {sum(batch):.0f} µs", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3, help="off/on measurements per load")
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--models", type=Path, default=CACHE / "models")
    ap.add_argument("--skip-servers", action="store_true")
    ap.add_argument(
        "--app", action="store_true", help="also the app driven in this process: CPU per request, off and on"
    )
    ap.add_argument(
        "--sequential", action="store_true", help="also one client posting back to back: CPU per request"
    )
    args = ap.parse_args()
    package = args.models / "gbc.mlpkg"
    if not package.exists():
        args.models.mkdir(parents=True, exist_ok=True)
        package = prepare(args.models, Path(sys.executable))
    if not args.skip_servers:
        servers(args, package)
    if args.sequential:
        sequential(args, package)
    if args.app:
        app_figures(args, package)
    own_cost_figures(package)
    in_process(package)
    subprocess.run(["uptime"], check=False)


if __name__ == "__main__":
    main()
