#!/usr/bin/env python3
"""A/B: `shipmate serve` at another commit against the working tree, alternating every few seconds.

Why: this shared machine's cores drift in speed by more than a change worth a few percent,
and one 3-second figure can differ from the next by 20 % (seen 22 Nov 2026, not pinned
down: where the connection and the workers land on the two cores is the suspect), so two
figures taken minutes apart
cannot tell such a change from the drift. Here each round starts one server of each side,
lets both settle, then measures them in turns (old then new, or new then old), a few
seconds each; the ratio new ÷ old is taken within each pair and the median over every
pair of every round is the figure. Fresh servers each round vary the placement.

    python3 bench/ab_serve.py --base HEAD~3                       # 1,000-row JSON batches, c=1
    python3 bench/ab_serve.py --base 790be8f --format csv --conc 2 --rounds 4
    python3 bench/ab_serve.py --base main --load single --conc 8

The base commit is checked out once under .cache/bench/ab-base (a git worktree) and run
from its source tree with the current interpreter and packages. Each measurement opens a
new connection, so the kernel spreads connections over the workers afresh every time.
Needs what `serve_bench.py` prepares (the model package under .cache/bench/models).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
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


@contextlib.contextmanager
def serving(src: Path, args: argparse.Namespace, logfile: Path) -> Iterator[str]:
    """`shipmate serve` run from the source tree ``src``, settled; yields its prediction URL."""
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        RUN_FROM_SOURCE,
        *serve_command(args.models / "gbc.mlpkg", port, args.workers)[1:],
    ]
    env = dict(os.environ, PYTHONPATH=str(src))  # its workers inherit it: all run that tree
    proc = start(cmd, f"http://127.0.0.1:{port}/ping", logfile, env)
    try:
        url = f"http://127.0.0.1:{port}/predictions"
        measure(url, args.format, args.models, 2, args.load, args.conc)  # settling: fan-out shares, caches
        yield url
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the commit to compare the working tree with")
    ap.add_argument("--load", choices=["batch", "single"], default="batch")
    ap.add_argument("--format", choices=["json", "csv"], default="json")
    ap.add_argument("--conc", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="fresh pairs of servers")
    ap.add_argument("--pairs", type=int, default=4, help="old-then-new measurements per round")
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--models", type=Path, default=CACHE / "models")
    args = ap.parse_args()
    if not (args.models / "gbc.mlpkg").exists():
        raise SystemExit("run bench/serve_bench.py once first: it builds the model package")
    sides = {"old": checkout(args.base), "new": REPO / "src"}
    logs = Path(tempfile.mkdtemp(prefix="ab-serve-"))
    unit = "rows/s" if args.load == "batch" else "req/s"
    figures: dict[str, list[float]] = {"old": [], "new": []}
    ratios: list[float] = []
    for r in range(args.rounds):
        with contextlib.ExitStack() as both:
            urls = {
                side: both.enter_context(serving(src, args, logs / f"{side}-{r}.log"))
                for side, src in sides.items()
            }
            for p in range(args.pairs):
                order = ["old", "new"] if (r + p) % 2 == 0 else ["new", "old"]  # neither always goes first
                got = {
                    side: measure(urls[side], args.format, args.models, args.duration, args.load, args.conc)
                    for side in order
                }
                for side, value in got.items():
                    figures[side].append(value)
                ratios.append(got["new"] / got["old"])
                log(
                    f"round {r + 1}, pair {p + 1}: old {got['old']:,.0f} {unit}, "
                    f"new {got['new']:,.0f}, new/old {ratios[-1]:.3f}"
                )
    ratios.sort()
    print(f"\n{args.load} {args.format} c={args.conc}, {args.workers} workers, {args.base} -> working tree")
    print(
        f"old {statistics.median(figures['old']):,.0f} {unit}, new {statistics.median(figures['new']):,.0f}"
    )
    wins = sum(x > 1 for x in ratios)
    print(
        f"new / old: median {statistics.median(ratios):.3f} over {len(ratios)} pairs "
        f"(min {ratios[0]:.3f}, max {ratios[-1]:.3f}; new ahead in {wins})"
    )


if __name__ == "__main__":
    main()
