"""Scalar drift with river: per-signal detectors, no alarms when stable, state round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.drift import ScalarDriftConfig, ScalarDriftMonitor, SignalConfig
from detectors.drift.scalar import Value

SUBJECT = {"route": "chat", "model": "m"}


def traces(rng: np.random.Generator, n: int, latency_median: float = 800.0, error_rate: float = 0.01,
           long_share: float = 0.05, out_tokens: float = 200.0) -> list[dict[str, Value]]:
    return [
        {
            "latency_ms": float(rng.lognormal(np.log(latency_median), 0.4)),
            "input_tokens": int(rng.lognormal(np.log(300), 0.8)),
            "output_tokens": int(rng.lognormal(np.log(out_tokens), 0.6)),
            "refusal": bool(rng.random() < 0.02),
            "error": bool(rng.random() < error_rate),
            "tool_call": bool(rng.random() < 0.1),
            "finish_reason": "length" if rng.random() < long_share else "stop",
        }
        for _ in range(n)
    ]


def signals_found(monitor: ScalarDriftMonitor, batch: list[dict[str, Value]]) -> list[str]:
    return [f.subject["signal"] for t in batch for f in monitor.update(t, at=1.0)]


def test_stable_traffic_raises_nothing() -> None:
    monitor = ScalarDriftMonitor(subject=SUBJECT, config_version="v1")
    assert signals_found(monitor, traces(np.random.default_rng(0), 8_000)) == []


@pytest.mark.parametrize(
    ("change", "signal"),
    [
        ({"latency_median": 2000.0}, "latency_ms"),
        ({"error_rate": 0.08}, "error"),
        ({"long_share": 0.3}, "finish_reason=length"),
        ({"out_tokens": 600.0}, "output_tokens"),
    ],
)
def test_each_signal_detects_its_shift(change: dict[str, float], signal: str) -> None:
    rng = np.random.default_rng(1)
    monitor = ScalarDriftMonitor(subject=SUBJECT, config_version="v1")
    signals_found(monitor, traces(rng, 3000))
    found = signals_found(monitor, traces(rng, 2000, **change))
    assert signal in found


def test_finding_names_signal_method_and_version() -> None:
    rng = np.random.default_rng(2)
    monitor = ScalarDriftMonitor(subject=SUBJECT, config_version="v9")
    signals_found(monitor, traces(rng, 2000))
    findings = [f for t in traces(rng, 2000, error_rate=0.2) for f in monitor.update(t, at=5.0)]
    err = next(f for f in findings if f.subject["signal"] == "error")
    assert err.kind == "drift.scalar" and err.severity == "critical"
    assert err.evidence["method"] == "adwin" and err.evidence["config_version"] == "v9"
    assert err.score > err.threshold  # rate after vs before
    json.dumps(err.to_dict())


def test_state_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(3)
    batch = traces(rng, 1500) + traces(rng, 1500, error_rate=0.2, latency_median=3000.0)
    whole = ScalarDriftMonitor(subject=SUBJECT)
    expected = signals_found(whole, batch)
    first = ScalarDriftMonitor(subject=SUBJECT)
    head = signals_found(first, batch[:1700])
    state = json.loads(json.dumps(first.to_state(), allow_nan=False))  # standard JSON only
    assert len(json.dumps(state)) < 64_000
    restored = ScalarDriftMonitor.from_state(state, ScalarDriftConfig())
    assert head + signals_found(restored, batch[1700:]) == expected


def test_bad_params_and_text_values_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="latency_ms.params"):
        ScalarDriftMonitor(ScalarDriftConfig(signals={"latency_ms": SignalConfig(method="adwin", params={"nope": 1})}))
    monitor = ScalarDriftMonitor(ScalarDriftConfig(signals={"error": SignalConfig(method="adwin")}))
    with pytest.raises(ValueError, match="configure categories"):
        monitor.update({"error": "yes"})
