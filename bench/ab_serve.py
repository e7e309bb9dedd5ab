#!/usr/bin/env python3
"""A/B: `shipmate serve` at another commit against the working tree, alternating every few seconds.

Why: this shared machine's cores drift in speed by more than a change worth a few percent,
so two figures taken minutes apart cannot tell such a change from the drift. Here the two
servers take turns: each round starts one, measures it, stops it, then the other, and the
ratio new ÷ old is taken within the round. The median of those ratios is the figure.

    python3 bench/ab_serve.py --base HEAD~3                       # 1,000-row JSON batches, c=1
    python3 bench/ab_serve.py --base 790be8f --format csv --conc 2 --rounds 8
    python3 bench/ab_serve.py --base main --load single --conc 8

The base commit is checked out once under .cache/bench/ab-base (a git worktree) and run
from its source tree with the current interpreter and packages. Every run starts fresh
servers, so the kernel also spreads each run's connections over the workers afresh.
Needs what `serve_bench.py` prepares (the model package under .cache/bench/models).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_duel import start
from serve_bench import CACHE, REPO, free_port, log, measure, serve_command, stop

RUN_FROM_SOURCE = "from shipmate.cli.main import main; main()"


def checkout(base: str) -> Path:
    """The source tree of ``base``, in a worktree of this repository."""
    tree = CACHE / "ab-base"
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), base], check=True)
    return tree / "src"


def figure(src: Path, args: argparse.Namespace, logs: Path, name: str) -> list[float]:
    """Start the server from ``src``, let it settle, take ``--repeats`` measurements, stop it."""
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        RUN_FROM_SOURCE,
        *serve_command(args.models / "gbc.mlpkg", port, args.workers)[1:],
    ]
    env = dict(os.environ, PYTHONPATH=str(src))  # its workers inherit it: all run that tree
    proc = start(cmd, f"http://127.0.0.1:{port}/ping", logs / f"{name}.log", env)
    try:
        url = f"http://127.0.0.1:{port}/predictions"
        measure(url, args.format, args.models, 2, args.load, args.conc)  # settling: fan-out shares, caches
        return [
            measure(url, args.format, args.models, args.duration, args.load, args.conc)
            for _ in range(args.repeats)
        ]
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the commit to compare the working tree with")
    ap.add_argument("--load", choices=["batch", "single"], default="batch")
    ap.add_argument("--format", choices=["json", "csv"], default="json")
    ap.add_argument("--conc", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2, help="measurements per server per round")
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--models", type=Path, default=CACHE / "models")
    args = ap.parse_args()
    if not (args.models / "gbc.mlpkg").exists():
        raise SystemExit("run bench/serve_bench.py once first: it builds the model package")
    sides = {"old": checkout(args.base), "new": REPO / "src"}
    logs = Path(tempfile.mkdtemp(prefix="ab-serve-"))
    unit = "rows/s" if args.load == "batch" else "req/s"
    rounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))  # neither always goes first
        got = {side: statistics.median(figure(sides[side], args, logs, f"{side}-{r}")) for side in order}
        rounds.append(got)
        old, new = got["old"], got["new"]
        log(f"round {r + 1}: old {old:,.0f} {unit}, new {new:,.0f}, new/old {new / old:.3f}")
    ratios = sorted(g["new"] / g["old"] for g in rounds)
    print(f"\n{args.load} {args.format} c={args.conc}, {args.workers} workers, {args.base} -> working tree")
    old, new = (statistics.median(g[side] for g in rounds) for side in ("old", "new"))
    print(f"old {old:,.0f} {unit}, new {new:,.0f}")
    print(
        f"new / old: median {statistics.median(ratios):.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})"
    )


if __name__ == "__main__":
    main()
