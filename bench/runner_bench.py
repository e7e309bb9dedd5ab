#!/usr/bin/env python3
"""Cost of a plugin action through ``bosun-plugin-runner``, Shipmate's and DataRobot's, in one run.

Three figures, all measured in the same run on the same machine:

1. **Per-process action cost** (how the agent drives an external plugin): the shared
   harness (``peer_runner.py``, its path in ``SHIPMATE_PEER_HARNESS``) runs deployment_start -> status ->
   replace_model -> stop for N deployments, one runner process per action, for
   Shipmate's runner and, when its virtualenv exists, DataRobot's. Each is compared
   with bare interpreter start-up (``python -c pass``) of *its own* interpreter,
   measured interleaved by the harness. Goal: at most 2.5x bare start-up.
2. **In-process action cost** of the filesystem plugin (how Shipmate's agent runs
   built-in plugins): ``invoke()`` on one plugin object, median per action. Goal: < 1 ms.
3. An import-time profile of the runner (``-X importtime``), the biggest entries.

Usage::

    python3 bench/runner_bench.py [-n 20] [--rounds 3] [--lean] [--json out.json]

The runners take turns round by round, so load changes on this small, shared machine
hit each of them; every ratio is taken within one round, then the median over rounds.

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
HARNESS = Path(os.environ.get("SHIPMATE_PEER_HARNESS", "peer_runner.py"))
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


class Subject:
    """One runner to measure: its command, its interpreter (for the bare start-up reference)."""

    def __init__(self, label: str, runner: str, python: str, import_module: str) -> None:
        self.label = label
        self.runner = runner
        self.python = python
        self.import_module = import_module
        self.rounds: list[dict] = []

    def measure_round(self, args: argparse.Namespace) -> None:
        one_round = argparse.Namespace(**{**vars(args), "rounds": 1})
        self.rounds.append(run_harness(self.label, self.runner, self.python, self.import_module, one_round))

    def figures(self) -> dict[str, float]:
        """Medians over rounds of: ms per action, bare start-up ms, and their ratio (taken per round)."""
        return {
            "ms_per_action": statistics.median(r["all_actions_ms"]["median"] for r in self.rounds),
            "python_c_pass_ms": statistics.median(r["python_c_pass_ms"]["median"] for r in self.rounds),
            "ratio_vs_python_c_pass": statistics.median(
                r["ratio_action_vs_python_pass"] for r in self.rounds
            ),
        }


def lean_venv() -> Path:
    """A virtualenv with only Shipmate (installed from this checkout, no extra dependencies) and PyYAML.

    DataRobot's runner lives in such a lean venv, installed by pip (so its modules are
    byte-compiled at install time). Measuring Shipmate's runner the same way compares
    the runners on equal terms: the main environment imports certifi at every start-up
    (a .pth file), and there PYTHONDONTWRITEBYTECODE=1 makes the editable checkout's
    modules compile at every start. Reinstalled at every run, to measure this checkout.
    """
    venv = REPO / ".cache" / "venv-shipmate-lean"
    pip = [str(venv / "bin" / "pip"), "install", "-q"]
    if not (venv / "bin" / "pip").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([*pip, "PyYAML"], check=True)
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(REPO)], check=True)
    return venv


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--deployments", type=int, default=20)
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds; the runners take turns, one round each"
    )
    parser.add_argument("--json", help="write all figures here")
    parser.add_argument("--skip-peer", action="store_true", help="do not measure DataRobot's runner")
    parser.add_argument(
        "--lean", action="store_true", help="also measure Shipmate's runner in a lean venv like the peer's"
    )
    args = parser.parse_args()
    if not HARNESS.exists():
        raise SystemExit(f"peer harness not found at {HARNESS} (set SHIPMATE_PEER_HARNESS)")
    runner = str(OUR_RUNNER) if OUR_RUNNER.exists() else "bosun-plugin-runner"
    subjects = [Subject("shipmate", runner, sys.executable, "shipmate.plugin.runner")]
    if args.lean:
        venv = lean_venv()
        subjects.append(
            Subject(
                "shipmate (lean venv)",
                str(venv / "bin" / "bosun-plugin-runner"),
                str(venv / "bin" / "python"),
                "shipmate.plugin.runner",
            )
        )
    peer_runner = PEER_VENV / "bin" / "bosun-plugin-runner"
    if not args.skip_peer and peer_runner.exists():
        subjects.append(
            Subject(
                "datarobot",
                str(peer_runner),
                str(PEER_VENV / "bin" / "python"),
                "bosun.plugin.plugin_runner,bosun.plugin.filesystem.filesystem_plugin",
            )
        )
    for _ in range(args.rounds):  # take turns, so that load changes on the machine hit every runner
        for subject in subjects:
            subject.measure_round(args)
    results: dict[str, object] = {s.label: {"figures": s.figures(), "rounds": s.rounds} for s in subjects}
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
    print(
        f"# Summary: one process per action, filesystem plugin, medians over {args.rounds} alternating rounds"
    )
    for subject in subjects:
        f = subject.figures()
        goal = ""
        if subject.label.startswith("shipmate"):
            goal = (
                "; meets the 2.5x goal"
                if f["ratio_vs_python_c_pass"] <= GOAL_RATIO
                else "; misses the 2.5x goal"
            )
        print(
            f"  {subject.label:22s} {f['ms_per_action']:7.1f} ms per action = "
            f"{f['ratio_vs_python_c_pass']:.2f}x its python -c pass ({f['python_c_pass_ms']:.1f} ms){goal}"
        )
    if len(subjects) > 1 and subjects[-1].label == "datarobot":
        peer_ms = subjects[-1].figures()["ms_per_action"]
        for subject in subjects[:-1]:
            share = subject.figures()["ms_per_action"] / peer_ms
            print(f"  {subject.label} / datarobot per action: {share:.2f}")
    in_verdict = "meets" if in_process["ALL"] < GOAL_IN_PROCESS_MS else "misses"
    print(f"  in-process filesystem action: {in_process['ALL']:.3f} ms median; {in_verdict} the < 1 ms goal")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
