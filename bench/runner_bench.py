#!/usr/bin/env python3
"""Cost of a plugin action through ``bosun-plugin-runner``, Shipmate's and DataRobot's, in one run.

Three figures, all measured in the same run on the same machine:

1. **Per-process action cost** (how the agent drives an external plugin): the shared
   harness ``/work/shared/bench/peer_runner.py`` runs deployment_start -> status ->
   replace_model -> stop for N deployments, one runner process per action, for
   Shipmate's runner and, when its virtualenv exists, DataRobot's. Each is compared
   with bare interpreter start-up (``python -c pass``) of *its own* interpreter,
   measured interleaved by the harness. Goal: at most 2.5x bare start-up.
2. **In-process action cost** of the filesystem plugin (how Shipmate's agent runs
   built-in plugins): ``invoke()`` on one plugin object, median per action. Goal: < 1 ms.
3. An import-time profile of the runner (``-X importtime``), the biggest entries.

Usage::

    python3 bench/runner_bench.py [-n 20] [--rounds 3] [--json out.json]

Build DataRobot's runner first to compare with it (proprietary: its own venv only)::

    python3 -m venv .cache/venv-bosun && .cache/venv-bosun/bin/pip install datarobot-bosun
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

REPO = Path(__file__).resolve().parents[1]
HARNESS = Path(os.environ.get("SHIPMATE_PEER_HARNESS", "/work/shared/bench/peer_runner.py"))
PEER_VENV = REPO / ".cache" / "venv-bosun"
OUR_RUNNER = Path(sys.executable).parent / "bosun-plugin-runner"
GOAL_RATIO = 2.5
GOAL_IN_PROCESS_MS = 1.0


def run_harness(label: str, runner: str, python: str, import_module: str, args: argparse.Namespace) -> dict:
    """One harness run; returns its JSON results."""
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as work:
        out = Path(work) / "result.json"
        template = (
            f"{runner} --plugin {{plugin}} --private-config {{private_config}} --config {{config}} "
            "--action {action} --status-file {status_file}"
        )
        command = [
            sys.executable,
            str(HARNESS),
            "-n",
            str(args.deployments),
            "--rounds",
            str(args.rounds),
            "--runner",
            runner,
            "--python",
            python,
            "--import-module",
            import_module,
            "--cmd-template",
            template,
            "--label",
            label,
            "--json",
            str(out),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        print(completed.stdout)
        if completed.returncode != 0 or not out.exists():
            print(completed.stderr, file=sys.stderr)
            raise SystemExit(f"{label}: the harness failed (exit {completed.returncode})")
        return json.loads(out.read_text())


def in_process_filesystem(deployments: int, rounds: int) -> dict[str, float]:
    """Median ms per filesystem action through ``invoke`` (no process start, no config parsing)."""
    sys.path.insert(0, str(REPO / "src"))
    from shipmate.plugin.actions import invoke
    from shipmate.plugin.info import DeploymentInfo, PEInfo
    from shipmate.plugins.filesystem import FilesystemPlugin

    timings: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="runner-bench-fs-") as work:
        base = Path(work) / "base"
        base.mkdir()
        artifacts = []
        for name in ("a", "b"):
            path = Path(work) / f"model_{name}.mlpkg"
            path.write_bytes(os.urandom(64 * 1024))
            artifacts.append(str(path))
        plugin = FilesystemPlugin({"baseDir": str(base)}, None, PEInfo(id="pe"), False)
        for _ in range(rounds):
            for index in range(deployments):
                start = DeploymentInfo(id=f"d{index}", model_id="m1", model_artifact=artifacts[0])
                replace = DeploymentInfo(
                    id=f"d{index}", model_id="m1", new_model_id="m2", model_artifact=artifacts[1]
                )
                for action, info in (
                    ("deployment_start", start),
                    ("deployment_status", start),
                    ("deployment_replace_model", replace),
                    ("deployment_stop", start),
                ):
                    began = time.perf_counter()
                    result = invoke(plugin, action, info)
                    timings.setdefault(action, []).append((time.perf_counter() - began) * 1000)
                    if not result.ok:
                        raise SystemExit(f"in-process {action} failed: {result.msg}")
    every = [t for values in timings.values() for t in values]
    summary = {action: statistics.median(values) for action, values in timings.items()}
    summary["ALL"] = statistics.median(every)
    return summary


def import_profile(python: str, top: int = 12) -> list[tuple[int, str]]:
    """The runner's biggest imports (self time, microseconds) for a --list-plugins call."""
    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "c.yaml"
        config.write_text("pluginConfig: {}\npeInfo: {id: pe}\n")
        completed = subprocess.run(
            [
                python,
                "-X",
                "importtime",
                "-m",
                "shipmate.plugin.runner",
                "--plugin",
                "filesystem",
                "--config",
                str(config),
                "--action",
                "deployment_list",
                "--status-file",
                str(Path(work) / "s"),
            ],
            capture_output=True,
            text=True,
            cwd=work,
        )
    rows = []
    for line in completed.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = [p.strip() for p in line[len("import time:") :].split("|")]
            if parts[0].isdigit():
                rows.append((int(parts[0]), parts[2]))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--deployments", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write all figures here")
    parser.add_argument("--skip-peer", action="store_true", help="do not measure DataRobot's runner")
    args = parser.parse_args()
    if not HARNESS.exists():
        raise SystemExit(f"peer harness not found at {HARNESS} (set SHIPMATE_PEER_HARNESS)")
    runner = str(OUR_RUNNER) if OUR_RUNNER.exists() else "bosun-plugin-runner"
    results: dict[str, object] = {}
    ours = run_harness(
        "shipmate bosun-plugin-runner/filesystem", runner, sys.executable, "shipmate.plugin.runner", args
    )
    results["shipmate"] = ours
    peer = None
    peer_runner = PEER_VENV / "bin" / "bosun-plugin-runner"
    if not args.skip_peer and peer_runner.exists():
        peer = run_harness(
            "datarobot bosun-plugin-runner/filesystem",
            str(peer_runner),
            str(PEER_VENV / "bin" / "python"),
            "bosun.plugin.plugin_runner,bosun.plugin.filesystem.filesystem_plugin",
            args,
        )
        results["datarobot"] = peer
    in_process = in_process_filesystem(args.deployments, args.rounds)
    results["in_process_filesystem_ms"] = in_process
    profile = import_profile(sys.executable)
    results["import_profile_us"] = profile

    print("# In-process filesystem action (invoke), median ms")
    for action, value in in_process.items():
        print(f"  {action:28s} {value:8.3f}")
    print("# Biggest imports of the runner (self time, ms)")
    for micros, module in profile:
        print(f"  {module:40s} {micros / 1000:8.1f}")
    print("# Summary (same run)")
    ours_ms = ours["all_actions_ms"]["median"]
    ours_ratio = ours["ratio_action_vs_python_pass"]
    bare = ours["python_c_pass_ms"]["median"]
    verdict = "meets" if ours_ratio <= GOAL_RATIO else "misses"
    print(
        f"  shipmate:  {ours_ms:6.1f} ms per action = {ours_ratio:.2f}x its python -c pass ({bare:.1f} ms); "
        f"{verdict} the {GOAL_RATIO}x goal"
    )
    if peer is not None:
        peer_bare = peer["python_c_pass_ms"]["median"]
        print(
            f"  datarobot: {peer['all_actions_ms']['median']:6.1f} ms per action = "
            f"{peer['ratio_action_vs_python_pass']:.2f}x its python -c pass ({peer_bare:.1f} ms)"
        )
        print(f"  shipmate / datarobot per action: {ours_ms / peer['all_actions_ms']['median']:.2f}")
    in_verdict = "meets" if in_process["ALL"] < GOAL_IN_PROCESS_MS else "misses"
    print(f"  in-process filesystem action: {in_process['ALL']:.3f} ms median; {in_verdict} the < 1 ms goal")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
