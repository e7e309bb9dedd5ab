#!/usr/bin/env python3
"""A/B in CPU time: the prediction server's whole request path at another commit against the working tree.

Why: on this shared machine wall-clock throughput (`ab_serve.py`) swings by 2x and more when
other work runs, so a change worth a few percent drowns in it. Here one process per side
builds the app (`create_app`, fan-out off, one worker), drives requests straight through
its ASGI interface (routing, edge, codecs, data plane, model; no sockets, no HTTP parsing)
and reports the process CPU time per request. Sides alternate (old then new, then new then
old) in fresh processes; the ratio new ÷ old is taken within each pair and the median over
the pairs is the figure.

    python3 bench/ab_serve_cpu.py --base 18b3c34                  # single rows, 1,000-row JSON and CSV
    python3 bench/ab_serve_cpu.py --base HEAD~3 --pairs 3

The base commit is exported under .cache/bench/ab-cpu-<commit> (`git archive`). Needs what
`serve_bench.py` prepares (the model package and bodies under .cache/bench/models).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import CACHE, REPO

BODIES = {"single-json": ("records_1.json", 2000), "batch-json": ("records_1000.json", 150)}
BODIES["batch-csv"] = ("data/rows_1000.csv", 150)


def export(base: str) -> Path:
    """The source tree of ``base``, exported once."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", base], check=True, capture_output=True, text=True
    ).stdout.strip()
    tree = CACHE / f"ab-cpu-{commit}"
    if not (tree / "src").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "src"], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree / "src"


def measure(src: Path, model: Path, body: Path, requests: int) -> float:
    """CPU microseconds per request, in a fresh process running the tree ``src``."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(src), str(model), str(body), str(requests)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.split()[-1])


def child(src: str, model: str, body_path: str, requests: int) -> None:
    sys.path.insert(0, src)
    import shipmate

    assert shipmate.__file__.startswith(src), f"{shipmate.__file__} is not under {src}"
    from shipmate.serving.app import create_app
    from shipmate.serving.settings import ServeSettings

    body = Path(body_path).read_bytes()
    ctype = b"text/csv" if body_path.endswith(".csv") else b"application/json"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predictions",
        "raw_path": b"/predictions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
    }

    async def run() -> float:
        settings = ServeSettings(model=Path(model), work_dir=Path(tempfile.mkdtemp()), fanout=False)
        app = create_app(settings)
        statuses: list[int] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(int(message["status"]))  # type: ignore[call-overload]

        async with app.router.lifespan_context(app):
            for _ in range(max(20, requests // 10)):  # warm-up
                await app({**scope, "state": {}}, receive, send)
            assert set(statuses) == {200}, statuses
            start = time.process_time()
            for _ in range(requests):
                await app({**scope, "state": {}}, receive, send)
            return (time.process_time() - start) / requests * 1e6

    print(f"{asyncio.run(run()):.1f}")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the commit to compare the working tree with")
    ap.add_argument("--pairs", type=int, default=5, help="old-and-new measurements per body")
    ap.add_argument("--models", type=Path, default=CACHE / "models")
    args = ap.parse_args()
    model = args.models / "gbc.mlpkg"
    if not model.exists():
        raise SystemExit("run bench/serve_bench.py once first: it builds the model package")
    sides = {"old": export(args.base), "new": REPO / "src"}
    for name, (body, requests) in BODIES.items():
        figures: dict[str, list[float]] = {"old": [], "new": []}
        ratios = []
        for p in range(args.pairs):
            got = {}
            for side in ("old", "new") if p % 2 == 0 else ("new", "old"):
                got[side] = measure(sides[side], model, args.models / body, requests)
                figures[side].append(got[side])
            ratios.append(got["new"] / got["old"])
        print(
            f"{name}: old {statistics.median(figures['old']):.1f} µs CPU per request, "
            f"new {statistics.median(figures['new']):.1f}; new / old median {statistics.median(ratios):.3f} "
            f"over {len(ratios)} pairs (min {min(ratios):.3f}, max {max(ratios):.3f}; "
            f"new cheaper in {sum(r < 1 for r in ratios)})",
            flush=True,
        )


if __name__ == "__main__":
    main()
