"""EmbeddingDriftDetector: findings, quiet period, reference refresh, state round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.drift import (
    EmbeddingDriftConfig,
    EmbeddingDriftDetector,
    ReferenceConfig,
    RiskSampler,
)

SUBJECT = {"route": "chat", "model": "m", "field": "prompt"}


def small_config(**changes: object) -> EmbeddingDriftConfig:
    base: dict[str, object] = {
        "reference": ReferenceConfig(size=200),
        "window_size": 50,
        "test_every": 25,
        "n_permutations": 1500,
        "expected_run_length": 10_000,
        "centroid": {"window_size": 20},
        "realert_after": 100,
    }
    return EmbeddingDriftConfig.model_validate(base | changes)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def stream(seed: int, n_stable: int, n_shift: int, d: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    center = np.zeros(d)
    center[0] = 3.0
    stable = unit(rng.normal(size=(n_stable, d)) + center)
    moved = center.copy()
    moved[1] = 2.0
    return np.vstack([stable, unit(rng.normal(size=(n_shift, d)) + moved)])


def run(det: EmbeddingDriftDetector, vectors: np.ndarray, start: int = 0) -> list:
    return [(i, f) for i, v in enumerate(vectors, start) if (f := det.update(v, f"id{i}", at=1000.0 + i))]


def test_finding_carries_score_p_value_sizes_ids_and_version() -> None:
    det = EmbeddingDriftDetector(small_config(), SUBJECT, config_version="v7")
    found = run(det, stream(0, 1200, 200))
    assert found and found[0][0] >= 1200
    finding = found[0][1]
    ev = finding.evidence
    assert finding.kind == "drift.embedding" and finding.subject == SUBJECT
    assert ev["config_version"] == "v7" and ev["n_reference"] == 200
    assert ev["n_current"] in (20, 50) and 0 < ev["p_value"] <= ev["alpha"]
    assert ev["moved_ids"] and all(int(i[2:]) >= found[0][0] - 50 for i in ev["moved_ids"])
    assert finding.score > finding.threshold
    json.dumps(finding.to_dict())  # JSON-serialisable, no raw text


def test_quiet_period_after_a_finding_then_reports_again() -> None:
    det = EmbeddingDriftDetector(small_config(realert_after=150), SUBJECT)
    positions = [i for i, _ in run(det, stream(1, 400, 600))]
    assert len(positions) >= 2
    assert all(b - a > 150 for a, b in zip(positions, positions[1:], strict=False))


def test_state_round_trip_continues_identically() -> None:
    vectors = stream(2, 900, 300)
    whole = EmbeddingDriftDetector(small_config(), SUBJECT, "v1")
    expected = [(i, f.finding_id, f.score) for i, f in run(whole, vectors)]

    for cut in (120, 650):  # during the baseline, and while monitoring
        first = EmbeddingDriftDetector(small_config(), SUBJECT, "v1")
        head = run(first, vectors[:cut])
        state = json.loads(json.dumps(first.to_state(), allow_nan=False))  # standard JSON only
        restored = EmbeddingDriftDetector.from_state(state, small_config())
        tail = run(restored, vectors[cut:], start=cut)
        assert [(i, f.finding_id, f.score) for i, f in head + tail] == expected


def test_reference_can_be_stored_apart_from_the_state() -> None:
    det = EmbeddingDriftDetector(small_config(), SUBJECT)
    run(det, stream(3, 300, 0))
    state = det.to_state(include_reference=False)
    assert "reference" not in state
    with pytest.raises(ValueError, match="pass reference="):
        EmbeddingDriftDetector.from_state(state, small_config())
    restored = EmbeddingDriftDetector.from_state(state, small_config(), reference=det.reference_state())
    assert restored.reference_id == det.reference_id
    # float16: 2 bytes per number, base64 4/3
    size = len(json.dumps(det.reference_state()))
    assert size < 200 * 16 * 2 * 4 / 3 + 200


def test_refresh_is_explicit_and_recorded() -> None:
    det = EmbeddingDriftDetector(small_config(), SUBJECT)
    vectors = stream(4, 400, 400)
    run(det, vectors)
    old = det.reference_id
    with pytest.raises(ValueError, match="rolling"):
        det.refresh_reference(at=5.0, reason="accepted new traffic")
    finding = det.refresh_reference(at=5.0, reason="accepted new traffic", vectors=vectors[-300:])
    assert finding.kind == "drift.reference_refreshed" and finding.severity == "info"
    assert finding.evidence["previous_reference_id"] == old != det.reference_id
    assert [h["reason"] for h in det.reference_history] == ["baseline", "accepted new traffic"]
    assert run(det, stream(4, 0, 400)[-200:]) == []  # the new normal raises nothing


def test_rolling_reference_promotes_the_latest_items_on_request() -> None:
    cfg = small_config(reference=ReferenceConfig(mode="rolling", size=200))
    det = EmbeddingDriftDetector(cfg, SUBJECT)
    run(det, stream(5, 200, 300))
    det.refresh_reference(at=9.0, reason="rolled")
    assert det.reference is not None and det.reference.shape[0] == 200
    assert det.reference_history[-1]["reason"] == "rolled"


def test_risk_sampler_is_reproducible_and_respects_rates() -> None:
    sampler = RiskSampler({"low": 0.2, "high": 1.0}, default_rate=0.5, salt="s")
    kept_low = [sampler.keep(f"t{i}", "low") for i in range(20_000)]
    assert 0.18 < np.mean(kept_low) < 0.22
    assert kept_low == [RiskSampler({"low": 0.2}, salt="s").keep(f"t{i}", "low") for i in range(20_000)]
    assert all(sampler.keep(f"t{i}", "high") for i in range(100))
    assert 0.45 < np.mean([sampler.keep(f"t{i}", "unknown") for i in range(20_000)]) < 0.55
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RiskSampler({"low": 1.5})
