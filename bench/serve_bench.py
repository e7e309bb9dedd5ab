#!/usr/bin/env python3
"""Benchmark `shipmate serve` against MLflow's and DRUM's scoring servers, in one run.

Same model for everyone (the shared harness's 100-tree GradientBoostingClassifier on
20 numeric features), same load generator (the harness's serve_bench.py over wrk; harness in SHARED_BENCH),
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
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED_BENCH", "peer-bench"))
"""The peer harness (models, load generator, peer servers): not part of this repository."""
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

        from shipmate.packages import BuildOptions, build_sklearn_package

        with open(models / "gbc.pkl", "rb") as f:
            model = pickle.load(f)  # our own file, written by make_models.py just above
        sample = (
            pd.read_csv(models / "data" / "train.csv").drop(columns="target").sample(2000, random_state=0)
        )
        build_sklearn_package(
            model, sample, package, name="gbc", options=BuildOptions(description="shared benchmark GBC")
        )
    rows = pd_rows(models / "data" / "rows_1000.csv")
    (models / "records_1.json").write_text(json.dumps(rows[:1]))
    (models / "records_1000.json").write_text(json.dumps(rows))
    return package


def pd_rows(path: Path) -> list[dict[str, float]]:
    import csv

    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def measure(url: str, fmt: str, models: Path, duration: int, load: str = "batch", conc: int = 1) -> float:
    """One load step with the shared generator: rows/s of 1,000-row batches (``load="batch"``)
    or requests/s of single rows (``"single"``), ``fmt`` ``"json"`` records or ``"csv"``."""
    bodies = (
        ["--format", "custom", "--single-body", str(models / "records_1.json"), "--batch-body",
         str(models / "records_1000.json"), "--content-type", "application/json"]
        if fmt == "json"
        else ["--format", "csv", "--data", str(models / "data" / "rows_1000.csv")]
    )  # fmt: skip
    steps = (
        ["--conc", "", "--batch-conc", str(conc)]
        if load == "batch"
        else ["--conc", str(conc), "--batch-conc", ""]
    )
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        subprocess.run(
            [sys.executable, str(SHARED / "serve_bench.py"), "--url", url, *bodies, *steps,
             "--repeats", "1", "--duration", str(duration), "--warmup", "1", "--json", result.name],
            check=True, capture_output=True,
        )  # fmt: skip
        summary = json.loads(Path(result.name).read_text())["summary"]
    step = summary[f"batch1000_c{conc}" if load == "batch" else f"single_c{conc}"]
    if step["errors_total"]:
        raise SystemExit(f"{url}: {step['errors_total']} failed requests")
    return float(step["rows_per_s"]["median"])


def serve_command(package: Path, port: int, workers: int) -> list[str]:
    """How every benchmark here starts `shipmate serve`."""
    return ["shipmate", "serve", "--model", str(package), "--port", str(port), "--workers", str(workers),
            "--log-level", "warning"]  # fmt: skip


def run_ours(
    package: Path, models: Path, workers: int, args: argparse.Namespace, out: Path
) -> dict[str, Path]:
    floor(Path(sys.executable), models, out, f"shipmate-w{workers}")  # the limit, just before
    port = free_port()
    cmd = serve_command(package, port, workers)
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
            str(out / f"floor_shipmate-w{workers}.json"),
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


def _floor_of(out: Path, run: str) -> dict[str, float] | None:
    """The in-process floor taken just before a run.

    Ours: floor_<run without its format>.json; peers (shared script): floor_<run>_floor.json.
    """
    candidates = [out / f"floor_{run.rsplit('-', 1)[0]}.json", out / f"floor_{run}_floor.json"]
    for path in candidates:
        if path.exists():
            res = json.loads(path.read_text())["results"]
            return {
                "proba1": res["sk.predict_proba(df) rows=1"]["median_ms"],
                "proba1000": res["sk.predict_proba(df) rows=1000"]["median_ms"],
                "nd1": res["sk.predict(ndarray) rows=1"]["median_ms"],
            }
    return None


def summary(out: Path) -> str:
    runs = {p.stem[len("serve_") :]: json.loads(p.read_text()) for p in sorted(out.glob("serve_*.json"))}
    lines = [
        "| server | format | c=1 req/s | p50 ms | p99 ms | c=8 req/s | p50 ms | p99 ms "
        "| c=32 req/s | p50 ms | p99 ms | 1000-row batch rows/s | batch p50 ms "
        "| floor: predict_proba 1 row / 1000 rows ms | batch vs floor | errors |",
        "|---" * 16 + "|",
    ]
    for name, r in runs.items():
        s = r["summary"]
        cells = []
        for c in ("1", "8", "32"):
            k = s.get(f"single_c{c}")
            cells += (
                [f"{k['rps']['median']:,.0f}", f"{k['p50_ms']['median']:.2f}", f"{k['p99_ms']['median']:.2f}"]
                if k
                else ["-"] * 3
            )
        b = s["batch1000_c1"]
        fl = _floor_of(out, name)
        floor_cell, ratio = "-", "-"
        if fl:
            floor_cell = f"{fl['proba1']:.3f} / {fl['proba1000']:.2f}"
            ratio = f"{(1000 / fl['proba1000'] * 1e3) / b['rows_per_s']['median']:.2f}x slower"
        errors = sum(v["errors_total"] for v in s.values())
        lines.append(
            f"| {name} | {r['format']} | "
            + " | ".join(cells)
            + f" | {b['rows_per_s']['median']:,.0f} | {b['p50_ms']['median']:.2f} | {floor_cell} | {ratio}"
            + f" | {errors} |"
        )

    def single(name: str, field: str = "rps") -> float:
        r = runs.get(name)
        return r["summary"]["single_c8"][field]["median"] if r else 0.0

    def rows(name: str) -> float:
        r = runs.get(name)
        return r["summary"]["batch1000_c1"]["rows_per_s"]["median"] if r else 0.0

    lines.append("")
    ours = [n for n in runs if n.startswith("shipmate")]
    if not ours:
        return "\n".join(lines)
    best = max(ours, key=single)
    lines.append(
        f"single-row c=8, best of ours ({best}): {single(best):,.0f} req/s, "
        f"p99 {single(best, 'p99_ms'):.1f} ms"
    )
    if "mlflow-gbc" in runs:
        lines.append(
            f"  vs MLflow {single('mlflow-gbc'):,.0f} req/s (p99 {single('mlflow-gbc', 'p99_ms'):.1f} ms): "
            f"{single(best) / single('mlflow-gbc'):.1f}x (goal >= 10x)"
        )
    drums = [n for n in ("drum-gbc", "drum-gbc-w2") if n in runs]
    if drums:
        dbest = max(drums, key=single)
        lines.append(
            f"  vs DRUM best ({dbest}) {single(dbest):,.0f} req/s (p99 {single(dbest, 'p99_ms'):.1f} ms): "
            f"{single(best) / single(dbest):.1f}x (goal >= 2x)"
        )
    drum_rows = max((rows(n) for n in drums), default=0.0)
    for fmt in ("json", "csv"):
        mine = [n for n in ours if n.endswith(f"-{fmt}")]
        if not mine:
            continue
        top = max(mine, key=rows)
        line = f"1000-row batches, {fmt}, best of ours ({top}): {rows(top):,.0f} rows/s"
        fl = _floor_of(out, top)
        if fl:
            raw = 1000 / fl["proba1000"] * 1e3
            line += (
                f"; in-process predict_proba just before: {raw:,.0f} rows/s "
                f"-> {raw / rows(top):.2f}x (goal <= 1.5x)"
            )
        if drum_rows:
            line += f"; vs DRUM {drum_rows:,.0f} rows/s: {rows(top) / drum_rows:.2f}x (goal >= 2x)"
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
    if not (SHARED / "serve_bench.py").is_file():
        raise SystemExit(f"peer harness not found in {SHARED} (set SHARED_BENCH to its directory)")
    args.out.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)

    mlflow_venv = venv("venv-mlflow", ["mlflow", "scikit-learn"])
    package = prepare(args.models, mlflow_venv / "bin" / "python")
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
