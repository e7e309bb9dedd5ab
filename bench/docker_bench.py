#!/usr/bin/env python3
"""Docker plugin benchmark, on the local engine with the locally built images.

Measures, in one run (medians with min/max over --rounds):

1. ``deployment_start`` → ready with a cached base image: first with a new package
   (the model image is built: base + package), then with the model image cached
   (a new container only);
2. ``deployment_replace_model`` (zero downtime), --replacements times in a row, while a
   client sends requests through the proxy without pause: duration, and every failed
   request (none is retried);
3. requests per second of single-row predictions through the reverse proxy,
   compared with the same container directly (its port published on 127.0.0.1),
   driven by ``wrk`` at concurrency 1 and 8, with the CPU time the proxy container and
   the prediction server container used meanwhile (from the engine's cgroup counters).

Usage: python3 bench/docker_bench.py [--rounds 3] [--duration 5] [--replacements 10] [--json out.json]
Everything it creates carries a unique environment id and is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ROW = {"a": 0.5, "b": 1.0, "c": -0.25}
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '[{"a": 0.5, "b": 1.0, "c": -0.25}]'
"""


def make_packages(folder: Path) -> list[Path]:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from shipmate.packages import build_sklearn_package

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=list("abc"))
    paths = []
    for index in range(4):
        model = LinearRegression().fit(frame, frame["a"] * (index + 1) + index)
        path = folder / f"bench_{index}_{uuid.uuid4().hex[:6]}.mlpkg"
        build_sklearn_package(model, frame.head(20), path, name=f"bench-{index}")
        paths.append(path)
    return paths


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def wrk(url: str, connections: int, duration: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    errors = sum(int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line)
    p50 = next((line.split()[1] for line in out.splitlines() if line.strip().startswith("50%")), "?")
    return {"rps": rps, "non2xx": errors, "p50": p50}  # type: ignore[dict-item]


def cpu_seconds(container: Any) -> float:
    """CPU time the container has used so far (its cgroup's counter, through the engine)."""
    return float(container.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk step")
    parser.add_argument("--replacements", type=int, default=10, help="model replacements under load")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-build", action="store_true", help="assume `make -C images` already ran")
    args = parser.parse_args()

    import docker
    import httpx

    from shipmate import __version__
    from shipmate.plugin.actions import Action, invoke
    from shipmate.plugins.docker.plugin import DockerPlugin

    if subprocess.run(["bash", str(REPO / "images/scripts/ensure-dockerd.sh")], check=False).returncode:
        print("no Docker engine here; nothing measured", file=sys.stderr)
        return 1
    if not args.skip_build:
        subprocess.run(["make", "-s", "-C", str(REPO / "images"), "all"], check=True, capture_output=True)
    tag = uuid.uuid4().hex[:6]
    config = {
        "dockerNetwork": f"shipmate-bench-{tag}",
        "traefikImage": f"shipmate/traefik:{__version__}",
        "ppsBaseImage": f"shipmate/prediction-server:{__version__}",
        "containerNamePrefix": f"bench{tag}_",
        "generatedImagePrefix": f"shipmate-bench-{tag}-",
        "traefikPortMapping": {80: 0},
        "drainSeconds": 0.5,
        "predictionServerWorkers": 1,
    }
    env_id = f"bench-{tag}"
    plugin = DockerPlugin(config, pe_info={"id": env_id})
    client = docker.from_env(version="auto")
    results: dict[str, Any] = {"engine": client.version()["Version"], "cpus": client.info()["NCPU"]}
    folder = Path(tempfile.mkdtemp(prefix="docker-bench-"))
    try:
        packages = make_packages(folder)
        assert invoke(plugin, Action.PLUGIN_START).ok
        fresh = [make_packages(folder)[0] for _ in range(args.rounds)]
        first, cached = [], []
        for round_, package in enumerate(fresh):
            info = {"id": f"start{round_}", "modelId": f"m{round_}", "modelArtifact": str(package)}
            for timings in (first, cached):  # a package never seen (image built), then the same again
                began = time.perf_counter()
                result = invoke(plugin, Action.DEPLOYMENT_START, info)
                timings.append(time.perf_counter() - began)
                assert result.ok, result.msg
                assert invoke(plugin, Action.DEPLOYMENT_STOP, info).ok
        results["start_to_ready_new_package_s"] = summary(first)
        results["start_to_ready_cached_model_image_s"] = summary(cached)

        dep = "replace"
        info = {"id": dep, "modelId": "r0", "modelArtifact": str(packages[0])}
        started = invoke(plugin, Action.DEPLOYMENT_START, info)
        assert started.ok, started.msg
        url = started.data["predictionUrl"]  # type: ignore[index]
        # One client sends requests without pause across every replacement; each failure
        # counts (nothing is retried), so "failed" is what a client would have seen.
        answers: list[int] = []
        errors: list[str] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(timeout=10) as http:
                while not stop.is_set():
                    try:
                        http.post(url, json=[ROW]).raise_for_status()
                        answers.append(1)
                    except Exception as exc:  # counted, reported
                        errors.append(repr(exc))

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        durations = []
        try:
            for round_ in range(args.replacements):
                old, new = f"r{round_}", f"r{round_ + 1}"
                began = time.perf_counter()
                replaced = invoke(
                    plugin,
                    Action.DEPLOYMENT_REPLACE_MODEL,
                    {
                        "id": dep,
                        "modelId": old,
                        "newModelId": new,
                        "modelArtifact": str(packages[(round_ + 1) % 2 + 2]),
                    },
                )
                durations.append(time.perf_counter() - began)
                assert replaced.ok, replaced.msg
        finally:
            stop.set()
            thread.join()
        results["replace_zero_downtime_s"] = summary(durations)
        results["replace_requests_during"] = {
            "replacements": args.replacements,
            "served": len(answers),
            "failed": len(errors),
            "first_failures": errors[:5],
        }

        container = client.containers.get(
            invoke(plugin, Action.DEPLOYMENT_STATUS, {"id": dep, "modelId": "x"}).data["container"]  # type: ignore[index]
        )
        proxy = client.containers.get(plugin.proxy.name)
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        direct = f"http://127.0.0.1:{port}/predictions"
        if shutil.which("wrk"):
            for connections in (1, 8):
                # Interleaved, so drift in the machine's load hits both alike.
                runs: dict[str, list[dict[str, float]]] = {"direct": [], "proxy": []}
                for _ in range(args.rounds):
                    for name, target in (("direct", direct), ("proxy", url)):
                        before = {c.name: cpu_seconds(c) for c in (container, proxy)}
                        measured = wrk(target, connections, args.duration)
                        for c in (container, proxy):
                            role = "server" if c is container else "proxy"
                            measured[f"cpu_{role}_s"] = round(cpu_seconds(c) - before[c.name], 2)
                        runs[name].append(measured)
                for name, measured in runs.items():
                    results[f"rps_{name}_c{connections}"] = summary([r["rps"] for r in measured])
                    for role in ("server", "proxy"):
                        results[f"cpu_{role}_s_{name}_c{connections}"] = [
                            r[f"cpu_{role}_s"] for r in measured
                        ]
                    results[f"p50_{name}_c{connections}"] = [r["p50"] for r in measured]
                    results[f"non2xx_{name}_c{connections}"] = sum(r["non2xx"] for r in measured)
                ratio = (
                    results[f"rps_proxy_c{connections}"]["median"]
                    / results[f"rps_direct_c{connections}"]["median"]
                )
                results[f"proxy_over_direct_c{connections}"] = round(ratio, 3)
        else:
            results["rps"] = "wrk is not installed (apt-get install wrk): throughput not measured"
    finally:
        with contextlib.suppress(Exception):
            label = f"org.shipmate.environment={env_id}"
            for item in client.containers.list(all=True, filters={"label": label}):
                item.remove(force=True)
            for network in client.networks.list(names=[config["dockerNetwork"]]):
                network.remove()
            for image in client.images.list():
                for image_tag in image.tags:
                    if image_tag.startswith(config["generatedImagePrefix"]):
                        client.images.remove(image_tag, force=True)
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
