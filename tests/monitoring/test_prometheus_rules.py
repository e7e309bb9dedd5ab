"""The Prometheus rule file names only metrics that Shipmate exposes, and is well formed."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def test_every_rule_reads_a_metric_shipmate_exposes() -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "prometheus-rules.yaml").read_text())
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "shipmate" / "monitoring").rglob("*.py"))
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert len(rules) >= 4
    for rule in rules:
        assert {"alert", "expr", "for", "annotations"} <= set(rule), rule
        for metric in set(re.findall(r"shipmate_[a-z0-9_]+", rule["expr"])):
            names = {metric} | {metric.removesuffix(s) for s in SUFFIXES}
            assert any(f'"{n}"' in source for n in names), f"{rule['alert']}: {metric} is not exposed"
