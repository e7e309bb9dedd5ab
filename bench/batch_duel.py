#!/usr/bin/env python3
"""1,000-row batches: `shipmate serve` against DRUM and the in-process floor, interleaved.

Why a second benchmark: on a shared 2-core machine the speed of the cores drifts by
2x within minutes, so figures taken minutes apart (as `serve_bench.py` takes them,
one server after another) can disagree by more than the effect measured. Here every
server runs at once (idle ones cost nothing) and each round measures, back to back:
the floor (``predict_proba`` of the same 1,000 rows as a DataFrame, in a fresh
process), then each server for a few seconds with the shared load generator. Ratios
are taken within a round and their median reported.

    python3 bench/batch_duel.py                 # 5 rounds of 3 s per server
    python3 bench/batch_duel.py --rounds 9 --duration 4

Needs what `serve_bench.py` prepares (models and peer venvs under .cache/bench/).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import CACHE, free_port, log, measure, serve_command, stop, wait_ready

FLOOR = r"""
import pickle, sys, time, statistics, pandas as pd
model = pickle.load(open(sys.argv[1], "rb"))
frame = pd.read_csv(sys.argv[2]).head(1000)
for _ in range(20): model.predict_proba(frame)
times = []
for _ in range(200):
    t0 = time.perf_counter(); model.predict_proba(frame); times.append(time.perf_counter() - t0)
print(1000 / statistics.median(times))
"""


def floor_rows_per_s(models: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", FLOOR, str(models / "gbc.pkl"), str(models / "data" / "rows_1000.csv")],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def start(
    cmd: list[str], health: str, logfile: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    wait_ready(health, proc)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--models", type=Path, default=CACHE / "models")
    ap.add_argument("--out", type=Path, default=CACHE / "results" / "batch_duel.json")
    args = ap.parse_args()
    drum_venv = CACHE / "venv-drum"
    package = args.models / "gbc.mlpkg"
    if not package.exists() or not (drum_venv / "bin" / "drum").exists():
        raise SystemExit("run bench/serve_bench.py once first: it builds the models and the DRUM venv")
    logs = Path(tempfile.mkdtemp(prefix="batch-duel-"))
    servers: dict[str, tuple[str, str]] = {}  # name -> (url, format)
    procs = []
    try:
        for workers in (2, 1):
            port = free_port()
            procs.append(
                start(
                    serve_command(package, port, workers),
                    f"http://127.0.0.1:{port}/ping",
                    logs / f"shipmate-w{workers}.log",
                )
            )
            for fmt in ("json", "csv"):
                servers[f"shipmate-w{workers}-{fmt}"] = (f"http://127.0.0.1:{port}/predictions", fmt)
        for workers in (1, 2):
            port = free_port()
            env = dict(os.environ, MAX_WORKERS=str(workers), PATH=f"{drum_venv / 'bin'}:{os.environ['PATH']}")
            procs.append(
                start(
                    [
                        str(drum_venv / "bin" / "drum"),
                        "server",
                        "--code-dir",
                        str(args.models / "drum_gbc"),
                        "--target-type",
                        "binary",
                        "--positive-class-label",
                        "1",
                        "--negative-class-label",
                        "0",
                        "--address",
                        f"127.0.0.1:{port}",
                    ],
                    f"http://127.0.0.1:{port}/ping/",
                    logs / f"drum-w{workers}.log",
                    env,
                )
            )
            servers[f"drum-w{workers}-csv"] = (f"http://127.0.0.1:{port}/predict/", "csv")
        log(f"all servers up; {args.rounds} rounds of {args.duration} s each")
        rounds: list[dict[str, float]] = []
        for r in range(args.rounds):
            figures = {"floor": floor_rows_per_s(args.models)}
            for name, (url, fmt) in servers.items():
                figures[name] = measure(url, fmt, args.models, args.duration)
            rounds.append(figures)
            log(f"round {r + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items()))
    finally:
        for proc in procs:
            stop(proc)
    report(rounds, args.out)


def report(rounds: list[dict[str, float]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": rounds, "at": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
    names = [n for n in rounds[0] if n != "floor"]
    print("\n| server | rows/s | floor / server | server / best DRUM |  (medians over rounds)")
    print("|---|---|---|---|")
    for name in names:
        rows = statistics.median(r[name] for r in rounds)
        vs_floor = statistics.median(r["floor"] / r[name] for r in rounds)
        vs_drum = statistics.median(r[name] / max(r["drum-w1-csv"], r["drum-w2-csv"]) for r in rounds)
        print(f"| {name} | {rows:,.0f} | {vs_floor:.2f}x | {vs_drum:.2f}x |")
    floor = statistics.median(r["floor"] for r in rounds)
    print(f"\nfloor (in-process predict_proba of 1,000 rows as a DataFrame): {floor:,.0f} rows/s, median")
    print("goals: floor / server <= 1.5x and >= 2x DRUM, for JSON and CSV")


if __name__ == "__main__":
    main()
