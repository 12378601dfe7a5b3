"""detectors.yaml: versioned, optional sections, drift section validated with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.config import DetectorsConfig, dump_detectors_config, load_detectors_config
from detectors.drift import CentroidConfig, DriftConfig, EmbeddingDriftConfig, NoveltyConfig

REPO = Path(__file__).resolve().parents[1]


def test_shipped_file_loads_with_a_version() -> None:
    cfg = load_detectors_config(REPO / "deploy" / "config" / "detectors.yaml")
    assert cfg.version and cfg.drift is not None
    assert cfg.drift.embedding.expected_run_length == 100_000
    assert cfg.drift.embedding.test_every == 100 and cfg.drift.embedding.reference.size == 1000


def test_unknown_sections_are_kept_and_drift_is_optional(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("version: 3\ncost: {budget: 5}\n")
    cfg = load_detectors_config(path)
    assert cfg.version == "3" and cfg.drift is None
    assert cfg.model_extra == {"cost": {"budget": 5}}
    assert cfg.drift_or_default() == DriftConfig()


def test_notebook_written_file_round_trips(tmp_path: Path) -> None:
    cfg = DetectorsConfig(version="nb-1", drift=DriftConfig(embedding=EmbeddingDriftConfig(test_every=50)))
    path = tmp_path / "d.yaml"
    path.write_text(dump_detectors_config(cfg))
    assert load_detectors_config(path) == cfg


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("drift: {}\n", "version"),
        ("version: 1\ndrift: {embedding: {windw_size: 3}}\n", "windw_size"),
        ("version: 1\ndrift: {embedding: {window_size: 2000}}\n", "window_size=2000 must be below"),
        ("version: 1\ndrift: {embedding: {n_permutations: 500}}\n", "set n_permutations >= 2858"),
        ("version: 1\ndrift: {sampling: {rates: {low: 2}}}\n", "drift.sampling.rates.low=2"),
    ],
)
def test_errors_name_the_field_and_the_fix(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match=message):
        load_detectors_config(path)


def test_false_alarm_budget_is_split_between_the_checks() -> None:
    cfg = EmbeddingDriftConfig()
    per_item = cfg.mmd_alpha / cfg.test_every + cfg.centroid_alpha + cfg.novelty_alpha
    assert per_item <= 1 / cfg.expected_run_length
    assert cfg.permutations * cfg.mmd_alpha >= 1.0  # p <= alpha is reachable
    alone = EmbeddingDriftConfig(mmd_budget_share=1.0, centroid=CentroidConfig(enabled=False),
                                 novelty=NoveltyConfig(enabled=False))
    assert alone.mmd_alpha == pytest.approx(cfg.test_every / cfg.expected_run_length)
    with pytest.raises(ValueError, match="add up to 1.3"):
        EmbeddingDriftConfig(mmd_budget_share=0.8)
