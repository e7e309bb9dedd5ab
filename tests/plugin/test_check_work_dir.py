"""``shipmate plugin check --work-dir DIR``: a directory that does not exist yet is made (as the
kit makes its own when none is given); one that cannot be made is one clear line, no traceback."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from shipmate.cli.plugin import plugin_app


def test_a_missing_work_dir_is_created(filesystem_config: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "not" / "yet"
    result = CliRunner().invoke(
        plugin_app,
        ["check", "--plugin", "filesystem", "--private-config", str(filesystem_config),
         "--work-dir", str(work_dir), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(list(work_dir.glob("model_*.mlpkg"))) == 3  # the stand-in packages went there


def test_a_work_dir_that_cannot_be_made_is_one_clear_line(filesystem_config: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(
        plugin_app,
        ["check", "--plugin", "filesystem", "--private-config", str(filesystem_config),
         "--work-dir", str(blocker / "sub")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--work-dir" in lines[0] and str(blocker / "sub") in lines[0], result.output
    assert "Traceback" not in result.output
