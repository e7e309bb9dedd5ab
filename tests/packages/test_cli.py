"""`shipmate package build|inspect|verify` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
from typer.testing import CliRunner

from shipmate.cli.main import build_app


def test_build_inspect_verify(iris: Any, iris_model: Any, tmp_path: Path, rewrite: Any) -> None:
    X, y = iris
    sample = tmp_path / "train.csv"
    X.assign(species=y).to_csv(sample, index=False)
    model_file = tmp_path / "model.joblib"
    joblib.dump(iris_model, model_file)
    out = tmp_path / "iris.mlpkg"
    runner = CliRunner()
    app = build_app()
    built = runner.invoke(
        app,
        [
            "package",
            "build",
            "sklearn",
            str(model_file),
            "--sample",
            str(sample),
            "--target",
            "species",
            "--name",
            "iris",
            "--version",
            "2",
            "-o",
            str(out),
        ],
    )
    assert built.exit_code == 0, built.output
    assert "multiclass" in built.output and out.is_file()
    shown = runner.invoke(app, ["package", "inspect", str(out), "--json"])
    manifest = json.loads(shown.output)
    assert manifest["version"] == "2" and manifest["classLabels"] == [0, 1, 2]
    assert "species" not in [f["name"] for f in manifest["features"]]
    assert manifest["scoring"]["scorer"] == "compiled" and manifest["compiledScoring"] is True
    readable = runner.invoke(app, ["package", "inspect", str(out)]).output
    assert "scoring: compiled, largest difference from the model's own method 0" in readable
    assert runner.invoke(app, ["package", "verify", str(out)]).exit_code == 0
    tampered = rewrite(out, tmp_path / "t.mlpkg", replace={"model.joblib": b"evil"})
    failed = runner.invoke(app, ["package", "verify", str(tampered)])
    assert failed.exit_code == 1 and "checksum mismatch" in failed.output


def test_build_needs_target_type_for_onnx(tmp_path: Path) -> None:
    sample = tmp_path / "s.csv"
    sample.write_text("x\n1\n")
    result = CliRunner().invoke(
        build_app(),
        [
            "package",
            "build",
            "onnx",
            str(tmp_path / "m.onnx"),
            "--sample",
            str(sample),
            "--name",
            "m",
            "-o",
            str(tmp_path / "m.mlpkg"),
        ],
    )
    assert result.exit_code == 1 and "--target-type is required" in result.output


def test_build_sets_monitoring_bins_and_importance(iris: Any, iris_model: Any, tmp_path: Path) -> None:
    sample = tmp_path / "train.csv"
    iris[0].to_csv(sample, index=False)
    model_file = tmp_path / "model.joblib"
    joblib.dump(iris_model, model_file)
    runner, app = CliRunner(), build_app()
    args = ["package", "build", "sklearn", str(model_file), "--sample", str(sample), "--name", "iris"]
    built = runner.invoke(
        app, [*args, "-o", str(tmp_path / "a.mlpkg"), "--monitoring-bins", "5", "--no-importance"]
    )
    assert built.exit_code == 0, built.output
    manifest = json.loads(
        runner.invoke(app, ["package", "inspect", str(tmp_path / "a.mlpkg"), "--json"]).output
    )
    assert manifest["featureImportance"] is None
    assert len(manifest["baseline"]["sepal length (cm)"]["bins"]["edges"]) <= 6
    refused = runner.invoke(app, [*args, "-o", str(tmp_path / "b.mlpkg"), "--monitoring-bins", "99"])
    assert refused.exit_code == 1 and "between 5 and 20" in refused.output


def test_a_lightgbm_text_model_builds_with_labels_from_the_target(tmp_path: Path) -> None:
    import lightgbm
    import pandas as pd

    frame = pd.DataFrame({"a": [0.1, 0.5, 0.9, 0.3, 0.7, 0.2] * 20, "b": [1.0, 0.0, 1.0, 0.5, 0.2, 0.9] * 20})
    frame["kind"] = (frame.a > 0.4).map({True: "high", False: "low"})
    booster = lightgbm.LGBMClassifier(n_estimators=5, min_child_samples=2, verbose=-1)
    booster.fit(frame[["a", "b"]], frame.kind).booster_.save_model(str(tmp_path / "model.txt"))
    frame.to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "l.mlpkg"
    built = CliRunner().invoke(
        build_app(),
        ["package", "build", "lightgbm", str(tmp_path / "model.txt"), "--sample", str(tmp_path / "train.csv"),
         "--target", "kind", "--name", "l", "-o", str(out), "--json"],
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    manifest = json.loads(built.output)
    assert manifest["framework"] == "lightgbm" and manifest["classLabels"] == ["high", "low"]
    assert manifest["scoring"]["scorer"] == "compiled"  # its batches rebuilt for onnxruntime, once proven
