#!/usr/bin/env python3
"""The models people deploy: pipelines, XGBoost, LightGBM — Shipmate against MLflow and DRUM.

Models (all binary, labels 0/1, trained here):
  rf    numeric and categorical columns with gaps, a ColumnTransformer (imputers, scaler,
        one-hot encoder) feeding a 150-tree random forest
  hgb   the same preprocessing feeding HistGradientBoostingClassifier (100 iterations)
  xgb   XGBClassifier (100 trees, depth 6) on the shared harness's 20 numeric features
  lgb   LGBMClassifier (100 trees) on the same
  gbc   the shared harness's bare GradientBoostingClassifier (the earlier benchmark's model)

For each model: the in-process floor in a fresh process (the public ``predict_proba`` on a
DataFrame, and the scorer Shipmate serves with), then each server in turn, with the shared
harness's load generator (wrk): single rows at concurrency 8 (requests/s, p99) and
1,000-row batches at concurrency 1 (rows/s), plus the CPU time the server's processes used
per request (read from /proc for the server's process group, before and after each step).

    SHARED_BENCH=<harness dir> python3 bench/pipeline_bench.py                 # everything
    python3 bench/pipeline_bench.py --models xgb,lgb                              # the boosters only
    python3 bench/pipeline_bench.py --models hgb --servers shipmate,shipmate-omp2   # threads A/B

Servers: ``shipmate`` (2 workers), ``shipmate-nocompile`` (--no-compile),
``shipmate-omp2`` (--no-compile, OMP_NUM_THREADS=2 set by hand: how every worker's OpenMP
pool was sized before each worker got its share of the cores), ``mlflow`` (``mlflow models
serve``, 1 worker), ``drum`` and ``drum-w2`` (``drum server``, 1 and 2 workers). Peer venvs:
.cache/bench/venv-mlflow and venv-drum (serve_bench.py makes them). Results: .cache/bench/pipelines/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import CACHE, SHARED, free_port, log, stop, venv, wait_ready

OUT = CACHE / "pipelines"
TICK = os.sysconf("SC_CLK_TCK")

MAKE = r"""
import pickle, sys, numpy as np, pandas as pd
from pathlib import Path
out, kind, harness = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
if kind in ("rf", "hgb"):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    rng = np.random.default_rng(0)
    n = 6000
    X = pd.DataFrame({f"n{i}": rng.normal(size=n).round(4) for i in range(8)})
    X["plan"] = rng.choice(["basic", "pro", "team", "enterprise"], n).astype(object)
    X["region"] = rng.choice(["eu", "us", "apac"], n).astype(object)
    X["channel"] = rng.choice(["web", "app", "phone", "store", "partner"], n).astype(object)
    for c in ["n0", "n3", "plan", "region"]:
        X.loc[rng.random(n) < 0.05, c] = np.nan
    y = ((X.n1.fillna(0) + (X.plan == "pro") * 1.0 + rng.normal(size=n) * 0.5) > 0.5).astype(int)
    num, cat = [f"n{i}" for i in range(8)], ["plan", "region", "channel"]
    pre = ColumnTransformer([
        ("num", Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())]), num),
        ("cat", Pipeline([("imp", SimpleImputer(strategy="most_frequent")),
                          ("oh", OneHotEncoder(handle_unknown="ignore"))]), cat)])
    final = (RandomForestClassifier(150, max_depth=12, random_state=0) if kind == "rf"
             else HistGradientBoostingClassifier(max_iter=100, random_state=0))
    model = Pipeline([("pre", pre), ("m", final)]).fit(X, y)
    rows = X.sample(1000, random_state=1)
else:
    train = pd.read_csv(harness / "data" / "train.csv")
    X, y = train.drop(columns="target"), train["target"]
    rows = pd.read_csv(harness / "data" / "rows_1000.csv")
    if kind == "xgb":
        import xgboost
        model = xgboost.XGBClassifier(n_estimators=100, max_depth=6).fit(X, y)
    elif kind == "lgb":
        import lightgbm
        model = lightgbm.LGBMClassifier(n_estimators=100, verbose=-1).fit(X, y)
    else:
        model = pickle.loads((harness / "gbc.pkl").read_bytes())
out.mkdir(parents=True, exist_ok=True)
(out / "model.pkl").write_bytes(pickle.dumps(model))
X.sample(2000, random_state=0).to_csv(out / "sample.csv", index=False)
rows.to_csv(out / "rows_1000.csv", index=False)
rows.head(1).to_csv(out / "rows_1.csv", index=False)
recs = rows.astype(object).where(rows.notna(), None).to_dict("records")
import json
(out / "records_1.json").write_text(json.dumps(recs[:1]))
(out / "records_1000.json").write_text(json.dumps(recs))
(out / "mlflow_1.json").write_text(json.dumps({"dataframe_records": recs[:1]}))
(out / "mlflow_1000.json").write_text(json.dumps({"dataframe_records": recs}))
"""

FLOOR = r"""
import json, pickle, sys, time, numpy as np, pandas as pd, warnings
from pathlib import Path
d = Path(sys.argv[1]); warnings.simplefilter("ignore")
from threadpoolctl import threadpool_limits
# one thread, as each server worker on this 2-core machine (spinning OpenMP pools cost more here):
# OMP_NUM_THREADS is set for this process by its parent, since an OpenMP runtime loaded after
# this call (XGBoost's, LightGBM's, imported by the unpickling) reads only the environment
threadpool_limits(1)
model = pickle.loads((d / "model.pkl").read_bytes())
threadpool_limits(1)
rows = pd.read_csv(d / "rows_1000.csv")
def timed(f, n):
    f(); best = []
    for _ in range(n):
        w, c = time.perf_counter(), time.process_time(); f()
        best.append((time.perf_counter() - w, time.process_time() - c))
    best.sort(); return best[len(best) // 2]
out = {"public_1": timed(lambda: model.predict_proba(rows.head(1)), 30),
       "public_1000": timed(lambda: model.predict_proba(rows), 10)}
if len(sys.argv) > 2:
    from shipmate.packages import extract_package, load_model
    from shipmate.packages.runtime import _columns_of
    import tempfile
    root = Path(tempfile.mkdtemp()) / "x"
    served = load_model(root, extract_package(sys.argv[2], root))
    names = served.manifest.feature_names
    if served.input_kind == "matrix":
        one, many = rows[names].head(1).to_numpy(dtype="float64"), rows[names].to_numpy(dtype="float64")
        score = served.predict_checked
    else:
        one, many = _columns_of(rows.head(1), served.manifest), _columns_of(rows, served.manifest)
        score = served.predict
    out["served_1"] = timed(lambda: score(one), 200)
    out["served_1000"] = timed(lambda: score(many), 20)
    out["scorer"] = str(served.scoring.scorer)
print(json.dumps(out))
"""

MLFLOW_SAVE = r"""
import pickle, sys, mlflow.sklearn
model = pickle.loads(open(sys.argv[1], "rb").read())
mlflow.sklearn.save_model(model, sys.argv[2], serialization_format="cloudpickle")
"""


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def load_step(url: str, single: Path, batch: Path, ctype: str, step: str, duration: int, pgid: int) -> dict:
    """One wrk step through the shared harness after a second of warm-up; CPU of the server's
    group measured around it. Only one body is sent per step (as both the harness's single
    and batch body), so its two sanity requests are of the same kind and counted."""
    conc = ["--conc", "8", "--batch-conc", ""] if step == "single" else ["--conc", "", "--batch-conc", "1"]
    body = single if step == "single" else batch

    def run(seconds: int, result: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SHARED / "serve_bench.py"), "--url", url, "--format", "custom",
             "--single-body", str(body), "--batch-body", str(body), "--content-type", ctype,
             *conc, "--repeats", "1", "--duration", str(seconds), "--warmup", "0", "--json", result],
            capture_output=True, text=True,
        )  # fmt: skip

    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        run(1, result.name)  # warm-up
        cpu0 = group_cpu(pgid)
        done = run(duration, result.name)
        cpu = group_cpu(pgid) - cpu0
        if done.returncode != 0:
            return {"error": (done.stderr or done.stdout)[-300:]}
        summary = json.loads(Path(result.name).read_text())["summary"]
    key = "single_c8" if step == "single" else "batch1000_c1"
    s = summary[key]
    requests = s["requests_total"] + 2  # and the two sanity requests
    return {
        "rps": s["rps"]["median"],
        "rows_per_s": s["rows_per_s"]["median"],
        "p99_ms": s["p99_ms"]["median"],
        "errors": s["errors_total"],
        "cpu_ms_per_request": 1e3 * cpu / max(requests, 1),
    }


@contextlib.contextmanager
def server(cmd: list[str], health: str, env: dict[str, str], logfile: Path) -> Iterator[int]:
    with open(logfile, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            wait_ready(health, proc)
            yield proc.pid
        finally:
            stop(proc)


def serve_ours(d: Path, port: int, extra: list[str]) -> list[str]:
    return ["shipmate", "serve", "--model", str(d / "model.mlpkg"), "--port", str(port), "--workers", "2",
            "--log-level", "warning", *extra]  # fmt: skip


def command(
    name: str, d: Path, port: int, env: dict[str, str], mlflow_py: Path | None, drum_py: Path | None
) -> tuple[list[str], str, str, list[tuple[str, Path, Path, str]]]:
    """How to start server ``name`` for the model in ``d``: command, health URL, scoring URL and
    the bodies it takes (``env`` is updated in place)."""
    if name.startswith("shipmate"):
        extra = [] if name == "shipmate" else ["--no-compile"]
        if name == "shipmate-omp2":
            env["OMP_NUM_THREADS"] = "2"
        cmd = serve_ours(d, port, extra)
        health, url = f"http://127.0.0.1:{port}/ping", f"http://127.0.0.1:{port}/predictions"
        bodies = [("json", d / "records_1.json", d / "records_1000.json", "application/json")]
    elif name == "mlflow":
        assert mlflow_py is not None
        if not (d / "mlflow").exists():
            python = str(mlflow_py / "python")
            save = [python, "-c", MLFLOW_SAVE, str(d / "model.pkl"), str(d / "mlflow")]
            subprocess.run(save, check=True, capture_output=True)
        cmd = [str(mlflow_py / "mlflow"), "models", "serve", "-m", str(d / "mlflow"),
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
        env["PATH"] = f"{mlflow_py}:{env['PATH']}"
        health, url = f"http://127.0.0.1:{port}/ping", f"http://127.0.0.1:{port}/invocations"
        bodies = [("json", d / "mlflow_1.json", d / "mlflow_1000.json", "application/json")]
    else:
        assert drum_py is not None
        code = d / "drum"
        code.mkdir(exist_ok=True)
        (code / "model.pkl").write_bytes((d / "model.pkl").read_bytes())
        env["MAX_WORKERS"] = "2" if name == "drum-w2" else "1"
        env["PATH"] = f"{drum_py}:{env['PATH']}"
        cmd = [str(drum_py / "drum"), "server", "--code-dir", str(code), "--target-type", "binary",
               "--positive-class-label", "1", "--negative-class-label", "0",
               "--address", f"127.0.0.1:{port}"]  # fmt: skip
        health, url = f"http://127.0.0.1:{port}/ping/", f"http://127.0.0.1:{port}/predict/"
        bodies = []
    bodies.append(("csv", d / "rows_1.csv", d / "rows_1000.csv", "text/csv"))
    return cmd, health, url, bodies


def report(results: dict[str, dict]) -> str:
    """The figures as markdown, one table per model: each server's best format."""
    lines: list[str] = []
    kinds = sorted({k.split("/")[0] for k in results}, key=["rf", "hgb", "xgb", "lgb", "gbc"].index)
    for kind in kinds:
        floor = results.get(f"{kind}/floor", {})
        cpu = {k: 1e3 * v[1] for k, v in floor.items() if isinstance(v, list)}
        lines += [
            f"**{kind}**: in-process, one thread: public `predict_proba` {cpu['public_1']:.2f} ms CPU "
            f"for 1 row, {cpu['public_1000']:.1f} ms for 1,000; the served scorer "
            f"({floor['scorer']}) {cpu['served_1']:.3f} ms and {cpu['served_1000']:.1f} ms.",
            "",
            "| server, format | c=8 req/s (p99 ms) | CPU per request | 1,000-row batches: rows/s "
            "| CPU per 1,000 rows |",
            "|---|---|---|---|---|",
        ]
        names = sorted({k.split("/")[1] for k in results if k.startswith(f"{kind}/") and k.count("/") == 3})
        for name in names:
            for fmt in ("json", "csv"):
                single = results.get(f"{kind}/{name}/{fmt}/single")
                batch = results.get(f"{kind}/{name}/{fmt}/batch")
                if not single or not batch or "error" in single or "error" in batch:
                    continue
                lines.append(
                    f"| {name}, {fmt} | {single['rps']:,.0f} ({single['p99_ms']:,.0f}) "
                    f"| {single['cpu_ms_per_request']:.2f} ms | {batch['rows_per_s']:,.0f} "
                    f"| {batch['cpu_ms_per_request']:.1f} ms |"
                )
        lines.append("")
    return "\n".join(lines)


def asgi_cpu(base: str, kinds: list[str], pairs: int) -> None:
    """Old and new in turns, fresh processes, one OpenMP thread: the median CPU per request and
    the median of the ratios new / old taken within each pair."""
    import statistics

    from ab_serve_cpu import export, measure

    sides = {"old": export(base), "new": Path(__file__).resolve().parents[1] / "src"}
    os.environ["OMP_NUM_THREADS"] = "1"  # as a worker of two on two cores
    for kind in kinds:
        d = OUT / kind
        for body, requests in (("records_1.json", 1000), ("records_1000.json", 60)):
            got: dict[str, list[float]] = {"old": [], "new": []}
            for p in range(pairs):
                for side in ("old", "new") if p % 2 == 0 else ("new", "old"):
                    got[side].append(measure(sides[side], d / "model.mlpkg", d / body, requests))
            ratios = [n / o for n, o in zip(got["new"], got["old"], strict=True)]
            print(
                f"{kind} {body}: old {statistics.median(got['old']):.1f} µs CPU per request, new "
                f"{statistics.median(got['new']):.1f}; new / old {statistics.median(ratios):.3f} "
                f"({min(ratios):.3f}-{max(ratios):.3f}, {pairs} pairs)",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="rf,hgb,xgb,lgb,gbc")
    ap.add_argument("--servers", default="shipmate,mlflow,drum,drum-w2")
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--report", action="store_true", help="only print the tables of the last results")
    ap.add_argument(
        "--asgi-cpu",
        metavar="BASE",
        help="instead of serving: CPU per request through the app's ASGI interface (ab_serve_cpu.py), "
        "the working tree against commit BASE, for the models' packages built by an earlier run",
    )
    ap.add_argument("--pairs", type=int, default=3, help="with --asgi-cpu: old-and-new measurements per body")
    args = ap.parse_args()
    if args.report:
        print(report(json.loads((OUT / "results.json").read_text())))
        return
    if args.asgi_cpu:
        asgi_cpu(args.asgi_cpu, args.models.split(","), args.pairs)
        return
    if not (SHARED / "serve_bench.py").is_file():
        raise SystemExit(f"peer harness not found in {SHARED} (set SHARED_BENCH to its directory)")
    models = CACHE / "models"
    if not (models / "gbc.pkl").exists():
        log("training the harness's models (its make_models.py)")
        subprocess.run([sys.executable, str(SHARED / "make_models.py"), "--out", str(models)], check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    servers = args.servers.split(",")
    mlflow_py = venv("venv-mlflow", ["mlflow", "scikit-learn"]) / "bin" if "mlflow" in servers else None
    drum_py = None
    if "drum" in args.servers:
        drum_py = venv("venv-drum", ["datarobot-drum", "scikit-learn"]) / "bin"
    boosters = [p for k, p in (("xgb", "xgboost"), ("lgb", "lightgbm")) if k in args.models.split(",")]
    for peer in (p for p in (mlflow_py, drum_py) if p is not None and boosters):
        # the peers serve the pickled scikit-learn wrappers, which need the libraries to unpickle
        if subprocess.run([str(peer / "python"), "-c", f"import {','.join(boosters)}"]).returncode:
            log(f"installing {boosters} into {peer.parent}")
            wheels = [{"xgboost": "xgboost-cpu"}.get(b, b) for b in boosters]  # no CUDA libraries
            subprocess.run([str(peer / "pip"), "install", "-q", *wheels], check=True)
    results: dict[str, dict] = {}
    for kind in args.models.split(","):
        d = OUT / kind
        if not (d / "model.pkl").exists():
            log(f"{kind}: training")
            subprocess.run([sys.executable, "-c", MAKE, str(d), kind, str(models)], check=True)
        if not (d / "model.mlpkg").exists():
            build = {"xgb": "xgboost", "lgb": "lightgbm"}.get(kind, "sklearn")
            source = d / "model.pkl"
            if build != "sklearn":  # the native format, saved from the same fitted wrapper
                import pickle

                wrapper = pickle.loads(source.read_bytes())  # our own file, written just above
                source = d / ("model.json" if build == "xgboost" else "model.txt")
                (wrapper.get_booster() if build == "xgboost" else wrapper.booster_).save_model(str(source))
            labels = ["--class-labels", "0,1"] if build == "sklearn" else []
            subprocess.run(["shipmate", "package", "build", build, str(source),
                            "--sample", str(d / "sample.csv"), "--name", kind, "-o", str(d / "model.mlpkg"),
                            "--no-importance", *labels],
                           check=True)  # fmt: skip
        measured = subprocess.run(
            [sys.executable, "-c", FLOOR, str(d), str(d / "model.mlpkg")],
            check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        floor = json.loads(measured.stdout)
        results[f"{kind}/floor"] = floor
        log(f"{kind}: floor {floor}")
        for name in servers:
            port = free_port()
            env = dict(os.environ)
            try:
                cmd, health, url, bodies = command(name, d, port, env, mlflow_py, drum_py)
            except subprocess.CalledProcessError as exc:
                log(f"{kind} {name}: {exc.stderr[-300:] if exc.stderr else exc}")
                continue
            try:
                with server(cmd, health, env, OUT / f"server_{kind}_{name}.log") as pgid:
                    for fmt, single, batch, ctype in bodies:
                        for step in ("single", "batch"):
                            got = load_step(url, single, batch, ctype, step, args.duration, pgid)
                            results[f"{kind}/{name}/{fmt}/{step}"] = got
                            log(f"{kind} {name} {fmt} {step}: {got}")
            except (SystemExit, subprocess.CalledProcessError) as exc:
                log(f"{kind} {name}: {exc}")
                results[f"{kind}/{name}"] = {"error": str(exc)}
        (OUT / "results.json").write_text(json.dumps(results, indent=1))
    print(report(results))


if __name__ == "__main__":
    main()
