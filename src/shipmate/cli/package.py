"""``shipmate package build|inspect|verify``: make and check ``.mlpkg`` model packages."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

package_app = typer.Typer(help="Build, inspect and verify .mlpkg model packages.", no_args_is_help=True)


class Kind(StrEnum):
    sklearn = "sklearn"
    onnx = "onnx"
    mlflow = "mlflow"
    custom = "custom"
    xgboost = "xgboost"
    lightgbm = "lightgbm"


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@package_app.command("inspect")
def inspect(
    path: Annotated[Path, typer.Argument(help="The .mlpkg file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Show a package's manifest (reads no model, runs no code)."""
    from shipmate.packages import PackageError, read_manifest

    try:
        manifest = read_manifest(path)
    except PackageError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(manifest.to_json_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{manifest.name}[/] {manifest.version}  ({manifest.framework}, {manifest.target_type})"
    )
    if manifest.class_labels:
        console.print(f"class labels: {manifest.class_labels}")
    console.print(f"created {manifest.created_at.isoformat()}")
    console.print(f"scoring: {_scoring_line(manifest.scoring, manifest.compiled_scoring)}")
    table = Table("feature", "type", "baseline")
    for f in manifest.features:
        b = manifest.baseline.get(f.name, {})
        if "mean" in b:
            summary = f"mean {b['mean']:.4g}, min {b['min']:.4g}, max {b['max']:.4g}"
        else:
            summary = ", ".join(list(b.get("top", {}))[:5])
        table.add_row(f.name, str(f.type), summary)
    console.print(table)
    files = Table("file", "sha256")
    for name, digest in sorted(manifest.files.items()):
        files.add_row(name, digest)
    console.print(files)


def _scoring_line(scoring: dict[str, Any] | None, compiled: bool) -> str:
    """Which scorer served the model when the package was built, and the measured difference."""
    off = "" if compiled else " (compilation turned off by --no-compile)"
    if not scoring:
        return f"not recorded (built before Shipmate recorded it){off}"
    diff = scoring.get("maxDifference")
    measured = f", largest difference from the model's own method {diff:.3g}" if diff is not None else ""
    note = f"; {scoring['note']}" if scoring.get("note") else ""
    return f"{scoring.get('scorer')}{measured}{note}{off}"


@package_app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="The .mlpkg file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check a package's structure and the SHA-256 of every file (exit 1 if anything is wrong)."""
    from shipmate.packages import PackageError, file_sha256, verify_package

    try:
        manifest = verify_package(path)
    except PackageError as exc:
        _fail(str(exc))
        return
    if as_json:
        result = {"ok": True, "name": manifest.name, "version": manifest.version}
        typer.echo(json.dumps({**result, "files": len(manifest.files), "sha256": file_sha256(path)}))
        return
    typer.echo(
        f"ok: {manifest.name} {manifest.version}, {len(manifest.files)} file(s) verified; "
        f"package sha256 {file_sha256(path)}"
    )


class TargetKind(StrEnum):
    regression = "regression"
    binary = "binary"
    multiclass = "multiclass"


@package_app.command("build")
def build(
    kind: Annotated[Kind, typer.Argument(help="What the model is.")],
    model: Annotated[
        Path,
        typer.Argument(
            help="sklearn: a joblib/pickle file; onnx: a .onnx file; "
            "mlflow: a model directory; custom: a directory with custom.py; "
            "xgboost: a .json/.ubj file from save_model; lightgbm: a text file from save_model."
        ),
    ],
    sample: Annotated[
        Path, typer.Option(help="CSV sample of the training data (features, maybe the target).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .mlpkg to write.")],
    name: Annotated[str, typer.Option(help="Package name.")],
    version: Annotated[str, typer.Option(help="Package version.")] = "1",
    target: Annotated[
        str | None, typer.Option(help="Target column in the sample (dropped; recorded as the target name).")
    ] = None,
    target_type: Annotated[
        TargetKind | None,
        typer.Option(help="Read from a scikit-learn, MLflow, XGBoost or LightGBM model when left out."),
    ] = None,
    class_labels: Annotated[str | None, typer.Option(help="Comma-separated class labels, in order.")] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    monitoring_bins: Annotated[
        int, typer.Option(help="Monitoring bins per numeric feature, 5-20 (docs/monitoring.md).")
    ] = 10,
    importance: Annotated[
        bool | None,
        typer.Option(
            "--importance/--no-importance",
            help="Permutation importance per feature [default: when it takes under 10 s].",
        ),
    ] = None,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile",
            help="Let servers score through a compiled scorer once proven equal (docs/serving.md).",
        ),
    ] = True,
) -> None:
    """Build a package; the model is validated by scoring the sample first.

    Loading a pickled sklearn model runs code from that file: build only from files you trust.
    """
    from shipmate.packages import (
        BuildOptions,
        PackageError,
        build_custom_package,
        build_lightgbm_package,
        build_mlflow_package,
        build_onnx_package,
        build_sklearn_package,
        build_xgboost_package,
    )

    if not out.parent.is_dir():
        _fail(f"--out {out}: the directory {out.parent} does not exist")
    frame = _read_sample(sample)
    target_values = None
    if target:
        if target not in frame.columns:
            _fail(f"--sample {sample}: no column {target!r} (the --target); columns: {list(frame.columns)}")
        target_values = frame[target].tolist()
        frame = frame.drop(columns=target)
    labels: list[Any] | None = None
    if class_labels:
        labels = [_label(v.strip()) for v in class_labels.split(",")]
    options = BuildOptions(
        version=version,
        class_labels=labels,
        description=description,
        target_name=target,
        monitoring_bins=monitoring_bins,
        importance=importance,
    )
    kind_type = target_type.value if target_type is not None else None
    if kind in (Kind.onnx, Kind.custom) and kind_type is None:
        _fail(f"--target-type is required for {kind} models (regression, binary or multiclass)")
    if kind in (Kind.mlflow, Kind.custom):
        if not model.is_dir():
            _fail(f"model {model}: a {kind} model is a directory; no such directory")
    elif not model.is_file():
        _fail(f"model {model}: no such file")
    try:
        if kind is Kind.sklearn:
            manifest = build_sklearn_package(
                _load_sklearn(model),
                frame,
                out,
                name=name,
                target_type=kind_type,
                options=options,
                compile=compile_model,
            )
        elif kind in (Kind.xgboost, Kind.lightgbm):
            booster_builder = build_xgboost_package if kind is Kind.xgboost else build_lightgbm_package
            manifest = booster_builder(
                model,
                frame,
                out,
                name=name,
                target_type=kind_type,
                target_values=target_values,
                options=options,
            )
        elif kind is Kind.mlflow:
            manifest = build_mlflow_package(
                model, frame, out, name=name, target_type=kind_type, options=options, compile=compile_model
            )
        else:
            builder = build_onnx_package if kind is Kind.onnx else build_custom_package
            manifest = builder(model, frame, out, name=name, target_type=kind_type or "", options=options)
    except PackageError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(manifest.to_json_dict(), indent=2))
        return
    typer.echo(
        f"wrote {out}: {manifest.name} {manifest.version} ({manifest.framework}, {manifest.target_type}, "
        f"{len(manifest.features)} features)"
    )


def _read_sample(sample: Path) -> Any:
    """The sample as a DataFrame; a missing or unreadable file is one line naming --sample."""
    import pandas as pd

    if not sample.is_file():
        _fail(f"--sample {sample}: no such file")
    try:
        frame = pd.read_csv(sample)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        _fail(f"--sample {sample}: not a readable CSV file: {str(exc).splitlines()[0]}")
    if frame.empty or len(frame.columns) == 0:
        _fail(f"--sample {sample}: the CSV has no rows")
    return frame


def _load_sklearn(model: Path) -> Any:
    """Unpickle the estimator; a file that is not a joblib/pickle dump is one line naming it."""
    import joblib

    try:
        loaded = joblib.load(model)
    except Exception as exc:  # unpickling a foreign file raises nearly anything (KeyError, EOFError ...)
        _fail(
            f"model {model}: not a scikit-learn model saved with joblib.dump or pickle "
            f"({type(exc).__name__}: {str(exc)[:120]})"
        )
    if not hasattr(loaded, "predict"):
        _fail(f"model {model}: holds a {type(loaded).__name__}, not a fitted estimator (no predict method)")
    return loaded


def _label(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def register(app: typer.Typer) -> None:
    app.add_typer(package_app, name="package")
