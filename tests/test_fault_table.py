"""tests/fault_table.py: the README's fault table is written from a long run's figures only."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fault_table import END, START, main

FIGURES = {
    "kill-9": {"sent": 50000, "stored": 50000, "unique": 50000, "physical_rows": 50012, "duplicated": 0,
               "lost": 0, "kills": 5, "audit_records": 61, "audit_ok": True, "findings_expected": 57,
               "findings_stored": 57, "findings_extra": 0},
    "economics-rewind": {"usage_records": 150, "skipped_by_committed_offset": 20, "rewinds": 1.0,
                         "exhausted_at_trace": [100]},
    "broker-restart": {"sent": 8000, "stored": 8000, "lost": 0, "restarts": 1},
    "cluster-broker-loss": {"brokers": 3, "sent": 50000, "stored": 50000, "lost": 0, "duplicated": 0,
                            "replayed_rows_before_merge": 7, "broker_kills": 2, "governing_again_s": [3.5, 12.0]},
    "something-new": {"x": 1},
}


def _readme(tmp_path: Path) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{START}\n| old | table |\n{END}\n\nafter\n")
    return readme


def test_a_long_run_rewrites_only_the_block(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({**FIGURES, "_run": {"tier": "long", "commit": "abc1234",
                                                       "when": "2026-12-07 22:00 UTC"}}))
    readme = _readme(tmp_path)
    assert main(["--figures", str(figures), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "| old | table |" not in text
    assert "commit abc1234" in text and "2026-12-07 22:00 UTC" in text
    assert "| kill -9 of the worker, 5 times, at random points | 50,000 | 50,000 | 0 | 0 |" in text
    assert "audit chain verifies (61 records)" in text
    assert "57 of 57 findings of an offline replay, 0 extra" in text
    assert "exhausted at trace 100 (exactly the 100th)" in text
    assert "| kill -9 of the broker leading the raw topic, then of another (3 brokers" in text
    assert "governing again after 3.5 s, 12 s with a broker down" in text
    assert "`something-new`" in text  # a figure with no row yet is named, not dropped


def test_figures_of_a_make_test_run_are_refused(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({**FIGURES, "_run": {"tier": "ci", "commit": "abc1234"}}))
    readme = _readme(tmp_path)
    before = readme.read_text()
    assert main(["--figures", str(figures), "--readme", str(readme)]) == 1
    assert readme.read_text() == before
