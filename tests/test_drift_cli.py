"""`warden drift scan`: JSON lines in, one JSON line per detection out (real encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from typer.testing import CliRunner

from streams.cli_drift import register
from streams.sim.corpus import prompt_rows


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def noop() -> None:  # a second command keeps typer from collapsing the group
        """Nothing."""

    return app


def _write_input(path: Path) -> int:
    rows = prompt_rows(200)  # the shipped corpus, 200 distinct messages of each domain
    rng = np.random.default_rng(0)
    by_cat: dict[str, list[str]] = {}
    for row in rows:
        by_cat.setdefault(row["category"], []).append(row["prompt"])
    cats = sorted(by_cat)
    old = [t for c in cats[:5] for t in by_cat[c][:200]]
    new = [t for c in cats[5:] for t in by_cat[c][:60]]
    rng.shuffle(old)
    rng.shuffle(new)
    lines = []
    # stream "steady": 500 items from one mix; stream "shifting": 300 old-mix items then new topics
    for i in range(500):
        lines.append({"text": old[i], "stream": "steady"})
        if i < 300:
            lines.append({"text": old[500 + i], "stream": "shifting"})
        elif i - 300 < len(new):
            lines.append({"text": new[i - 300], "stream": "shifting"})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return next(i for i, line in enumerate(lines) if line["stream"] == "shifting" and line["text"] in new)


def test_scan_reports_the_shift_in_its_stream_only(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    change_line = _write_input(source)
    result = CliRunner().invoke(
        _app(), ["drift", "scan", "--input", str(source), "--reference-size", "200",
                 "--test-every", "50", "--window-size", "100"],
    )
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert hits, "no detection"
    assert {h["stream"] for h in hits} == {"shifting"}
    first = hits[0]
    assert set(first) == {"stream", "index", "score", "p_value", "detector"}
    assert first["index"] >= change_line and first["detector"] in {"mmd", "centroid", "novelty"}
    assert 0.0 <= first["p_value"] < 0.01


def test_config_file_and_bad_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "detectors.yaml"
    cfg.write_text("version: t1\ndrift: {embedding: {reference: {size: 60}, window_size: 20, test_every: 10}}\n")
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "hello"}\nnot json\n\n{"stream": "x"}\n')
    result = CliRunner().invoke(_app(), ["drift", "scan", "--input", str(source), "--config", str(cfg)])
    assert result.exit_code == 1
    assert "2, 4" in result.stderr and "hello" not in result.stderr


def test_invalid_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "detectors.yaml"
    cfg.write_text("version: t1\ndrift: {embedding: {test_evry: 10}}\n")
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "hello"}\n')
    result = CliRunner().invoke(_app(), ["drift", "scan", "--input", str(source), "--config", str(cfg)])
    assert result.exit_code == 2 and "test_evry" in result.stderr
