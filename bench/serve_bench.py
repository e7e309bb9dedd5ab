#!/usr/bin/env python3
"""Benchmark `shipmate serve` against MLflow's and DRUM's scoring servers, in one run.

Same model for everyone (the shared harness's 100-tree GradientBoostingClassifier on
20 numeric features), same load generator (/work/shared/bench/serve_bench.py, wrk),
same machine and minutes. Measures single-row requests/s and p50/p99 latency at
concurrency 1, 8 and 32, rows/s for 1,000-row batches (JSON records and CSV), and the
in-process predict() floor taken just before, then prints one comparison table.

    python3 bench/serve_bench.py                       # everything (about 15 minutes)
    python3 bench/serve_bench.py --skip-peers          # only ours (reuses peer results if present)
    python3 bench/serve_bench.py --workers 1,2 --duration 5 --repeats 3

Peer venvs are created under .cache/bench/ on first use (`pip install mlflow
scikit-learn`, `pip install datarobot-drum scikit-learn`); results go to
.cache/bench/results/ (JSON per run, plus summary.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED_BENCH", "/work/shared/bench"))
CACHE = REPO / ".cache" / "bench"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def venv(name: str, packages: list[str]) -> Path:
    path = CACHE / name
    if not (path / "bin" / "python").exists():
        log(f"creating {path} with {packages}")
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", *packages], check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


def prepare(models: Path, mlflow_python: Path) -> Path:
    """The shared harness's models and payloads, plus our .mlpkg of the same GBC pickle."""
    if not (models / "gbc.pkl").exists():
        log("training the benchmark models (shared make_models.py)")
        subprocess.run([str(mlflow_python), str(SHARED / "make_models.py"), "--out", str(models)], check=True)
    package = models / "gbc.mlpkg"
    if not package.exists():
        import pickle

        import pandas as pd

        from shipmate.packages import build_sklearn_package

        with open(models / "gbc.pkl", "rb") as f:
            model = pickle.load(f)  # our own file, written by make_models.py just above
        sample = (
            pd.read_csv(models / "data" / "train.csv").drop(columns="target").sample(2000, random_state=0)
        )
        build_sklearn_package(model, sample, package, name="gbc", description="shared benchmark GBC")
    rows = pd_rows(models / "data" / "rows_1000.csv")
    (models / "records_1.json").write_text(json.dumps(rows[:1]))
    (models / "records_1000.json").write_text(json.dumps(rows))
    return package


def pd_rows(path: Path) -> list[dict[str, float]]:
    import csv

    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def run_ours(
    package: Path, models: Path, workers: int, args: argparse.Namespace, out: Path
) -> dict[str, Path]:
    port = free_port()
    cmd = [
        "shipmate",
        "serve",
        "--model",
        str(package),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    logf = open(out / f"server_shipmate-w{workers}.log", "wb")  # noqa: SIM115 - lives as long as the server
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    results: dict[str, Path] = {}
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/ping", proc)
        log(
            f"shipmate (workers={workers}) ready after {ready:.1f} s "
            f"(since spawn {time.monotonic() - t0:.1f} s)"
        )
        url = f"http://127.0.0.1:{port}/predictions"
        common = [
            "--duration",
            str(args.duration),
            "--repeats",
            str(args.repeats),
            "--conc",
            args.conc,
            "--floor-json",
            str(out / "floor_shipmate.json"),
            "--floor-case",
            "sk.predict_proba(df)",
        ]
        for fmt in ("json", "csv"):
            label = f"shipmate-w{workers}-{fmt}"
            target = out / f"serve_{label}.json"
            extra = (
                [
                    "--format",
                    "custom",
                    "--single-body",
                    str(models / "records_1.json"),
                    "--batch-body",
                    str(models / "records_1000.json"),
                    "--content-type",
                    "application/json",
                ]
                if fmt == "json"
                else ["--format", "csv", "--data", str(models / "data" / "rows_1000.csv")]
            )
            subprocess.run(
                [
                    sys.executable,
                    str(SHARED / "serve_bench.py"),
                    "--url",
                    url,
                    "--label",
                    label,
                    "--json",
                    str(target),
                    *extra,
                    *common,
                ],
                check=False,
            )
            results[label] = target
    finally:
        stop(proc)
        logf.close()
    return results


def floor(python: Path, models: Path, out: Path, label: str) -> None:
    subprocess.run(
        [
            str(python),
            str(SHARED / "predict_floor.py"),
            "--pickle",
            str(models / "gbc.pkl"),
            "--data",
            str(models / "data" / "rows_1000.csv"),
            "--label",
            label,
            "--json",
            str(out / f"floor_{label}.json"),
        ],
        check=True,
        stderr=subprocess.DEVNULL,
    )


def summary(out: Path) -> str:
    def load(name: str) -> dict | None:
        p = out / f"serve_{name}.json"
        return json.loads(p.read_text()) if p.exists() else None

    floor_data = json.loads((out / "floor_shipmate.json").read_text())["results"]
    f1 = floor_data["sk.predict_proba(df) rows=1"]["median_ms"]
    f1000 = floor_data["sk.predict_proba(df) rows=1000"]["median_ms"]
    f1_nd = floor_data["sk.predict(ndarray) rows=1"]["median_ms"]
    runs = sorted(p.stem[len("serve_") :] for p in out.glob("serve_*.json"))
    lines = [
        f"in-process floor (same machine, just before): predict_proba(DataFrame) 1 row {f1:.3f} ms, "
        f"predict(ndarray) 1 row {f1_nd:.3f} ms, 1,000 rows {f1000:.2f} ms "
        f"= {1000 / f1000 * 1e3:,.0f} rows/s",
        "",
        "| server | format | c=1 req/s | p50 ms | p99 ms | c=8 req/s | p50 ms | p99 ms "
        "| c=32 req/s | p50 ms | p99 ms | 1000-row batch rows/s | batch p50 ms | errors |",
        "|---" * 14 + "|",
    ]
    for name in runs:
        r = load(name)
        if r is None:
            continue
        s = r["summary"]
        cells = []
        for c in ("1", "8", "32"):
            k = s.get(f"single_c{c}")
            cells += (
                [f"{k['rps']['median']:,.0f}", f"{k['p50_ms']['median']:.2f}", f"{k['p99_ms']['median']:.2f}"]
                if k
                else ["-"] * 3
            )
        b = s.get("batch1000_c1")
        errors = sum(v["errors_total"] for v in s.values())
        lines.append(
            f"| {name} | {r['format']} | "
            + " | ".join(cells)
            + f" | {b['rows_per_s']['median']:,.0f} | {b['p50_ms']['median']:.2f} | {errors} |"
        )

    def rps(name: str, key: str = "single_c8") -> float | None:
        r = load(name)
        return r["summary"][key]["rps"]["median"] if r and key in r["summary"] else None

    def rows(name: str) -> float | None:
        r = load(name)
        return r["summary"]["batch1000_c1"]["rows_per_s"]["median"] if r else None

    def p99(name: str) -> float | None:
        r = load(name)
        return r["summary"]["single_c8"]["p99_ms"]["median"] if r else None

    ours = [n for n in runs if n.startswith("shipmate") and n.endswith("-json")]
    best = max(ours, key=lambda n: rps(n) or 0) if ours else None
    lines.append("")
    if best:
        mlflow, drum = (
            rps("mlflow-gbc"),
            max(filter(None, [rps("drum-gbc"), rps("drum-gbc-w2")]), default=None),
        )
        lines.append(f"single-row c=8, best of ours ({best}): {rps(best):,.0f} req/s, p99 {p99(best):.1f} ms")
        if mlflow:
            lines.append(
                f"  vs MLflow {mlflow:,.0f} req/s (p99 {p99('mlflow-gbc'):.1f} ms): "
                f"{rps(best) / mlflow:.1f}x (goal >= 10x)"
            )
        if drum:
            dname = "drum-gbc-w2" if rps("drum-gbc-w2") == drum else "drum-gbc"
            lines.append(
                f"  vs DRUM best ({dname}) {drum:,.0f} req/s (p99 {p99(dname):.1f} ms): "
                f"{rps(best) / drum:.1f}x (goal >= 2x)"
            )
        drum_rows = max(filter(None, [rows("drum-gbc"), rows("drum-gbc-w2")]), default=None)
        raw = 1000 / f1000 * 1e3
        for fmt in ("json", "csv"):
            candidates = [n for n in runs if n.startswith("shipmate") and n.endswith(f"-{fmt}")]
            if not candidates:
                continue
            top = max(candidates, key=lambda n: rows(n) or 0)
            line = (
                f"1000-row batches, {fmt}, best of ours ({top}): {rows(top):,.0f} rows/s; raw predict_proba "
                f"{raw:,.0f} rows/s -> {raw / rows(top):.2f}x the floor (goal <= 1.5x)"
            )
            if drum_rows:
                line += f"; vs DRUM {drum_rows:,.0f} rows/s: {rows(top) / drum_rows:.2f}x (goal >= 2x)"
            if rows("mlflow-gbc"):
                line += f"; vs MLflow JSON {rows('mlflow-gbc'):,.0f} rows/s"
            lines.append(line)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=CACHE / "results")
    ap.add_argument("--models", type=Path, default=CACHE / "models")
    ap.add_argument("--workers", default="2,1", help="worker counts of ours to measure")
    ap.add_argument(
        "--peers",
        default="mlflow-gbc,mlflow-gbc-csv,drum-gbc,drum-gbc-w2",
        help="targets of the shared run_peer_serve.sh",
    )
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--conc", default="1,8,32")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)

    mlflow_venv = venv("venv-mlflow", ["mlflow", "scikit-learn"])
    package = prepare(args.models, mlflow_venv / "bin" / "python")
    floor(Path(sys.executable), args.models, args.out, "shipmate")
    worker_counts = [int(w) for w in args.workers.split(",") if w]
    log(f"ours first (workers={worker_counts[0]})")
    run_ours(package, args.models, worker_counts[0], args, args.out)
    if not args.skip_peers:
        drum_venv = venv("venv-drum", ["datarobot-drum", "scikit-learn"])
        env = dict(
            os.environ,
            OUT=str(args.out),
            MODELS=str(args.models),
            VENV_MLFLOW=str(mlflow_venv),
            VENV_DRUM=str(drum_venv),
            DURATION=str(args.duration),
            REPEATS=str(args.repeats),
            CONC=args.conc,
        )
        log(f"peers: {args.peers}")
        subprocess.run(
            ["bash", str(SHARED / "run_peer_serve.sh"), *args.peers.split(",")], env=env, check=False
        )
    for w in worker_counts[1:]:
        log(f"ours again (workers={w})")
        run_ours(package, args.models, w, args, args.out)
    text = summary(args.out)
    (args.out / "summary.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
