"""``shipmate actuals upload``, ``shipmate accuracy`` and ``shipmate alerts`` against a real service."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from shipmate.cli.main import build_app
from shipmate.client import ShipmateClient
from shipmate.server.testing import LiveServer


def test_actuals_upload_accuracy_and_alerts(
    server: LiveServer, admin: ShipmateClient, make_package: Any, tmp_path: Path
) -> None:
    env_ = admin.create_environment("acc", "filesystem")
    package = admin.upload_model_package(make_package(name="price"))  # a regression model
    dep = admin.create_deployment(env_.id, package.id, name="price")
    minute = int(time.time() // 60) - 2
    record = {
        "v": 1, "kind": "predictions", "id": "p-1", "deploymentId": dep.id, "minute": minute,
        "associationIds": ["a", "b", "c"], "labels": None, "probabilities": None,
        "values": [10.0, 20.0, 30.0],
    }  # fmt: skip
    assert admin.post_monitoring_predictions([record]).stored == 1
    csv_file = tmp_path / "actuals.csv"
    csv_file.write_text("associationId,actualValue,wasActedOn\na,12,true\nb,20,\nc,thirty,no\nzz,1,\n")
    runner, app = CliRunner(), build_app()
    env = {"SHIPMATE_URL": server.base_url, "SHIPMATE_TOKEN": server.admin_token, "COLUMNS": "200"}

    upload = runner.invoke(app, ["actuals", "upload", str(csv_file), "--deployment", "price"], env=env)
    assert upload.exit_code == 1, upload.output  # two rows refused: the exit status says so
    assert "2 of 4 actuals stored, 0 duplicates, 2 refused" in upload.output
    assert "row 4: rejected: actualValue 'thirty' is not a number" in upload.output
    assert "row 5: rejected: no prediction with association id 'zz'" in upload.output
    again = runner.invoke(app, ["actuals", "upload", str(csv_file), "-d", dep.id, "--json"], env=env)
    assert json.loads(again.output)["duplicate"] == 2

    shown = runner.invoke(app, ["accuracy", "price"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "2 predictions with actuals" in shown.output and "rmse" in shown.output
    doc = json.loads(runner.invoke(app, ["accuracy", dep.id, "--json", "--since", "1h"], env=env).output)
    assert doc["rows"] == 2 and doc["metrics"]["mae"] == 1.0 and doc["metrics"]["r2"] is not None
    assert doc["targetType"] == "regression" and doc["timeline"][-1]["metrics"]["mae"] == 1.0

    rules = runner.invoke(app, ["alerts", "rules", "price", "--set", "latency_p95", "--threshold", "500",
                                "--clear-threshold", "400", "--json"], env=env)  # fmt: skip
    assert rules.exit_code == 0, rules.output
    latency = next(r for r in json.loads(rules.output) if r["name"] == "latency_p95")
    assert (latency["threshold"], latency["clearThreshold"]) == (500, 400)
    wrong = runner.invoke(
        app, ["alerts", "rules", "price", "--set", "latency_p95", "--threshold", "100"], env=env
    )
    assert wrong.exit_code == 1 and wrong.output.startswith("error: ")
    assert "clearThreshold must not be above threshold" in wrong.output
    listed = runner.invoke(app, ["alerts", "--json"], env=env)
    assert listed.exit_code == 0 and json.loads(listed.output) == []
    assert runner.invoke(app, ["alerts", "--state", "shut"], env=env).output.startswith(
        "error: --state 'shut'"
    )
    missing = runner.invoke(app, ["actuals", "upload", str(tmp_path / "none.csv"), "-d", "price"], env=env)
    assert missing.exit_code == 1 and missing.output.startswith("error: ") and "none.csv" in missing.output
