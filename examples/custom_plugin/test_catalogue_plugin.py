"""How a plugin author tests a plugin with Shipmate's conformance kit (run: pytest examples/custom_plugin)."""

from pathlib import Path

from shipmate.plugin.testing import check_plugin

HERE = Path(__file__).parent


def test_catalogue_plugin_follows_the_contract(tmp_path: Path) -> None:
    config = tmp_path / "catalogue.conf.yaml"
    config.write_text(f"catalogueFile: {tmp_path / 'catalogue.json'}\n")
    report = check_plugin(
        str(HERE / "catalogue_plugin.py"), private_config_file=str(config), work_dir=tmp_path
    )
    assert report.passed, report.format()
