"""Drift state holds against a writer of the drift-state changelog (issue 16, scalar drift).

No pickle: scalar drift state is explicit JSON (detectors/drift/river_state.py) that a
hostile record can only make fail with ``InvalidDetectorState``, never run code; the drift
stage then counts and logs it and starts that scope afresh.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from river import drift

from detectors.drift import DriftConfig, ScalarDriftConfig, ScalarDriftMonitor
from detectors.drift.kswin import KSWIN
from detectors.drift.river_state import InvalidDetectorState, detector_state, restore_detector
from streams.drift_stage import DriftStage, TraceDrift
from streams.metrics import METRICS
from streams.state import dumps

SUBJECT = {"route": "chat", "model": "m"}


def _wire(state: Any) -> Any:
    """What the changelog holds and gives back: standard JSON (no NaN, no infinity)."""
    return json.loads(json.dumps(state, allow_nan=False))


# -- each detector on its own ---------------------------------------------------------------
DETECTORS: dict[str, tuple[Callable[[], Any], Callable[[np.random.Generator, int], float]]] = {
    # a rate that jumps from 2% to 30%
    "adwin": (lambda: drift.ADWIN(delta=1e-5),
              lambda rng, i: float(rng.random() < (0.3 if i >= 1500 else 0.02))),
    # a log-latency whose mean rises by 0.8
    "page_hinkley": (lambda: drift.PageHinkley(min_instances=100, delta=0.05, threshold=25.0),
                     lambda rng, i: float(rng.normal(7.5 if i >= 1500 else 6.7, 0.4))),
    # a token-count distribution that widens and moves
    "kswin": (lambda: KSWIN(alpha=1e-5, window_size=400, stat_size=100, seed=7),
              lambda rng, i: float(rng.normal(5.8, 0.9) if i >= 1500 else rng.normal(5.3, 0.6))),
}


def _detections(det: Any, values: list[float], start: int) -> list[int]:
    hits = []
    for i, x in enumerate(values):
        det.update(x)
        if det.drift_detected:
            hits.append(start + i)
    return hits


@pytest.mark.parametrize("method", sorted(DETECTORS))
def test_each_detector_decides_the_same_after_a_json_round_trip(method: str) -> None:
    build, draw = DETECTORS[method]
    rng = np.random.default_rng(11)
    values = [draw(rng, i) for i in range(4000)]
    expected = _detections(build(), values, 0)
    assert expected and expected[0] >= 1500, f"{method} must detect the change for this to mean anything"
    # Cuts: before any value, in the quiet part, at the first detection (drift_detected still
    # set, so the next update resets) and just after it, and late.
    for cut in sorted({0, 700, expected[0] + 1, expected[0] + 2, 3500}):
        first = build()
        head = _detections(first, values[:cut], 0)
        restored = build()  # a fresh detector of the configured kind and parameters
        restore_detector(restored, _wire(detector_state(first)))
        assert head + _detections(restored, values[cut:], cut) == expected, f"cut at {cut}"


# -- the whole monitor ------------------------------------------------------------------------
def _stream(seed: int, n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shifted = i > n // 2
        out.append({"latency_ms": float(rng.lognormal(np.log(2000 if shifted else 800), 0.4)),
                    "input_tokens": int(rng.lognormal(np.log(300), 0.8)),
                    "output_tokens": int(rng.lognormal(np.log(600 if shifted else 200), 0.6)),
                    "refusal": bool(rng.random() < 0.02),
                    "error": bool(rng.random() < (0.1 if shifted else 0.01)),
                    "tool_call": bool(rng.random() < 0.1),
                    "finish_reason": "length" if rng.random() < (0.3 if shifted else 0.05) else "stop"})
    return out


def _decisions(monitor: ScalarDriftMonitor, values: list[dict[str, Any]], start: int) -> list[tuple[int, str]]:
    return [(start + i, f.subject["signal"]) for i, v in enumerate(values) for f in monitor.update(v, at=1.0)]


@pytest.mark.parametrize("cut", [1500, 4001, 4777])
def test_monitor_round_trip_makes_the_same_decisions_as_never_stopping(cut: int) -> None:
    values = _stream(3, 8000)
    config = ScalarDriftConfig()
    expected = _decisions(ScalarDriftMonitor(config, SUBJECT, "v1"), values, 0)
    # one signal per method drifts: Page-Hinkley, KSWIN and ADWIN are all exercised
    assert {"latency_ms", "output_tokens", "error"} <= {signal for _, signal in expected}

    first = ScalarDriftMonitor(config, SUBJECT, "v1")
    before = _decisions(first, values[:cut], 0)
    wire = dumps(first.to_state())  # the bytes the changelog holds
    assert b"river" not in wire and b"pickle" not in wire
    restored = ScalarDriftMonitor.from_state(json.loads(wire), config)
    assert before + _decisions(restored, values[cut:], cut) == expected


# -- hostile state ---------------------------------------------------------------------------
class _Boom:
    """Unpickling this writes a file: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pwned"))


def _pickle_payload(marker: Path) -> str:
    return base64.b64encode(pickle.dumps(_Boom(marker))).decode()


def _warm_state(n: int = 600) -> dict[str, Any]:
    monitor = ScalarDriftMonitor(ScalarDriftConfig(), SUBJECT, "v1")
    for v in _stream(1, n):
        monitor.update(v)
    return _wire(monitor.to_state())


def test_pickle_payload_in_drift_state_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    state = _warm_state(300)
    # A v1 (pickled) record as an attacker would write it, and v2 records with the payload
    # wherever a blob could hide.
    legacy = {**state, "v": 1, "signals": {k: {**s, "river": _pickle_payload(marker)}
                                           for k, s in state["signals"].items()}}
    hidden = copy.deepcopy(state)
    for blob in hidden["signals"].values():
        blob["detector"] = _pickle_payload(marker)
    in_rows = copy.deepcopy(state)
    in_rows["signals"]["error"]["detector"]["rows"][0]["totals"][0] = _pickle_payload(marker)
    in_window = copy.deepcopy(state)
    in_window["signals"]["output_tokens"]["detector"]["window"][0] = _pickle_payload(marker)
    in_sum = copy.deepcopy(state)
    in_sum["signals"]["latency_ms"]["detector"]["sum_increase"] = _pickle_payload(marker)
    for bad in (legacy, hidden, in_rows, in_window, in_sum):
        with pytest.raises(InvalidDetectorState):
            ScalarDriftMonitor.from_state(bad, ScalarDriftConfig())
    assert not marker.exists()


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(state: dict[str, Any]) -> None:
        node = state
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
    return apply


def _drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def apply(state: dict[str, Any]) -> None:
        node = state
        for step in path[:-1]:
            node = node[step]
        del node[path[-1]]
    return apply


ERR, LAT, TOK = ("signals", "error", "detector"), ("signals", "latency_ms", "detector"), \
    ("signals", "output_tokens", "detector")


def _empty_middle_row(state: dict[str, Any]) -> None:
    # consistent width, but a row river would later remove from while it is empty
    det = state["signals"]["error"]["detector"]
    assert len(det["rows"]) >= 3
    det["width"] -= det["rows"][1]["fill"] * 2
    det["rows"][1]["fill"] = 0


HOSTILE: dict[str, Callable[[dict[str, Any]], None]] = {
    "v1": _set(("v",), 1),
    "no version": _drop(("v",)),
    "version a 5000-digit integer": _set(("v",), 10**5000),
    "subject not an object": _set(("subject",), ["chat"]),
    "subject value not text": _set(("subject", "route"), 7),
    "signals a list": _set(("signals",), []),
    "signal a string": _set(("signals", "error"), "x"),
    "config_version a number": _set(("config_version",), 3),
    "n missing": _drop(("signals", "error", "n")),
    "n negative": _set(("signals", "error", "n"), -1),
    "n a float": _set(("signals", "error", "n"), 2.5),
    "n a bool": _set(("signals", "error", "n"), True),
    "n a 5000-digit integer": _set(("signals", "error", "n"), 10**5000),
    "mean NaN": _set(("signals", "error", "mean"), float("nan")),
    "mean infinite": _set(("signals", "error", "mean"), float("inf")),
    "mean a huge integer": _set(("signals", "error", "mean"), 10**400),
    "mean text": _set(("signals", "error", "mean"), "0.5"),
    "mean_before a list": _set(("signals", "error", "mean_before"), [1.0]),
    "detector missing": _drop(("signals", "error", "detector")),
    "detector a list": _set(ERR, [1, 2]),
    "adwin params changed": _set((*ERR, "params", "delta"), 0.5),
    "adwin params missing": _drop((*ERR, "params")),
    "adwin width off": _set((*ERR, "width"), 1e9),
    "adwin total NaN": _set((*ERR, "total"), float("nan")),
    "adwin rows huge": _set((*ERR, "rows"), [{"fill": 1, "totals": [0.0] * 6, "variances": [0.0] * 6}] * 10_000),
    "adwin rows empty": _set((*ERR, "rows"), []),
    "adwin row totals long": _set((*ERR, "rows", 0, "totals"), [0.0] * 1_000_000),
    "adwin row fill over": _set((*ERR, "rows", 0, "fill"), 99),
    "adwin row fill negative": _set((*ERR, "rows", 0, "fill"), -1),
    "adwin middle row empty": _empty_middle_row,
    "adwin row not an object": _set((*ERR, "rows", 0), 5),
    "adwin tick near overflow": _set((*ERR, "tick"), 2**31 - 1),
    "adwin counter negative": _set((*ERR, "n_buckets"), -5),
    "adwin counter a float": _set((*ERR, "n_detections"), 1.5),
    "adwin drift_detected text": _set((*ERR, "drift_detected"), "yes"),
    "ph sum NaN": _set((*LAT, "sum_decrease"), float("nan")),
    "ph mean_n negative": _set((*LAT, "mean_n"), -3.0),
    "ph min_increase text": _set((*LAT, "min_increase"), "inf"),
    "ph mean missing": _drop((*LAT, "mean")),
    "ph params a string": _set((*LAT, "params"), "x" * 100_000),
    "kswin window huge": _set((*TOK, "window"), [0.0] * 2_000_000),
    "kswin window NaN": _set((*TOK, "window", 0), float("nan")),
    "kswin window a dict": _set((*TOK, "window"), {"0": 1.0}),
    "kswin n below window": _set((*TOK, "n"), 0),
    "kswin rng missing": _drop((*TOK, "rng")),
    "kswin rng state not hex": _set((*TOK, "rng", "state"), "zz"),
    "kswin rng state huge": _set((*TOK, "rng", "state"), "f" * 100_000),
    "kswin rng state a number": _set((*TOK, "rng", "state"), 12345),
    "kswin rng inc negative": _set((*TOK, "rng", "inc"), "-1"),
    "kswin uinteger over": _set((*TOK, "rng", "uinteger"), 2**40),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_state_raises_invalid_detector_state_only(name: str) -> None:
    state = _warm_state()
    assert "rows" in state["signals"]["error"]["detector"] and "window" in state["signals"]["output_tokens"]["detector"]
    HOSTILE[name](state)
    with pytest.raises(InvalidDetectorState):
        ScalarDriftMonitor.from_state(state, ScalarDriftConfig())


@pytest.mark.parametrize("state", [None, [], "v2", 2, {"v": 2}, {"v": "2"}, {"v": 2, "subject": {}, "signals": 1}])
def test_state_that_is_not_a_monitor_raises_invalid_detector_state(state: Any) -> None:
    with pytest.raises(InvalidDetectorState):
        ScalarDriftMonitor.from_state(state, ScalarDriftConfig())


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))]
    return [path]


def test_random_corruption_fails_cleanly_or_restores_a_working_monitor() -> None:
    """Any one value replaced by junk: InvalidDetectorState, or a monitor that keeps working
    (a junk value river never checks, e.g. a bucket slot past the fill, is harmless)."""
    state = _warm_state()
    leaves = _leaves(state["signals"])
    junk: list[Any] = [None, True, "x", [], {}, -1, 2**70, 10**400, float("nan"), float("inf"), -1e308, 0]
    rng = random.Random(5)
    rejected = 0
    tail = _stream(2, 300)
    for _ in range(400):
        bad = copy.deepcopy(state)
        path = ("signals", *rng.choice(leaves))
        _set(path, rng.choice(junk))(bad)
        try:
            monitor = ScalarDriftMonitor.from_state(bad, ScalarDriftConfig())
        except InvalidDetectorState:
            rejected += 1
            continue
        for v in tail:
            monitor.update(v)
        json.dumps(monitor.to_state(), allow_nan=True)  # and it can be written again
    assert rejected > 200


# -- the caller ---------------------------------------------------------------------------
def test_bad_drift_state_is_logged_counted_and_started_afresh(tmp_path: Path) -> None:
    from streams.records import InferenceTrace
    from tests.pipeline_helpers import traces

    trace = InferenceTrace.model_validate(next(traces(1)))
    marker = tmp_path / "pwned"
    drift_ = TraceDrift(DriftConfig(), "v1", embeddings=False)
    stage = DriftStage(drift_)
    bad = {"v": 1, "subject": SUBJECT, "version": "v1", "embedding": {},
           "scalar": {"v": 1, "subject": SUBJECT, "config_version": "v1",
                      "signals": {"error": {"river": _pickle_payload(marker)}}}}
    before = METRICS.state_rejected.labels("drift-state")._value.get()
    found, due = stage.process([trace], {trace.partition_key: bad}, now=100.0)
    assert METRICS.state_rejected.labels("drift-state")._value.get() == before + 1
    assert found == [] and due[trace.partition_key]["scalar"]["v"] == 2  # started afresh, saved anew
    assert math.isclose(drift_.scopes[trace.partition_key].scalar.detectors["error"].n, 1)  # type: ignore[union-attr]
    assert not marker.exists()
