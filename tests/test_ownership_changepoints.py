"""Single-signal change-point tests: detection within a bounded delay, silence on stable
input, downward shifts, and state that survives a restart (JSON) without changing results."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.ownership import CentroidShift, MeanShiftCusum, MixShift, RateShiftCusum


def feed(test: Any, values: list[Any], start: int = 0) -> int | None:
    """Index of the first value at which ``test`` reports a change, else ``None``."""
    for i, v in enumerate(values[start:], start):
        if test.update(v, at=float(i)):
            return i
    return None


def gauss(n: int, change: int, before: float, after: float, sd: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(before if i < change else after, sd) for i in range(n)]


def bernoulli(n: int, change: int, before: float, after: float, seed: int) -> list[bool]:
    rng = random.Random(seed)
    return [rng.random() < (before if i < change else after) for i in range(n)]


def test_mean_shift_detects_half_a_standard_deviation_both_ways() -> None:
    for seed in range(5):
        for after in (5.3, 4.7):
            cusum = MeanShiftCusum()
            hit = feed(cusum, gauss(8000, 3000, 5.0, after, 0.6, seed))
            assert hit is not None and 3000 <= hit < 3000 + 800
            assert cusum.direction == ("up" if after > 5.0 else "down")
            assert 2000 < cusum.change_at <= hit  # the run that crossed started near the change


def test_mean_shift_is_silent_on_heavy_tailed_stable_input() -> None:
    rng = np.random.default_rng(3)
    # log of lognormal token counts with 2% huge outliers (runaway generations)
    values = np.log1p(rng.lognormal(5.2, 0.6, 40_000))
    values[rng.random(40_000) < 0.02] = np.log1p(8192)
    assert feed(MeanShiftCusum(), list(values)) is None


def test_rate_shift_detects_rises_and_falls_and_ignores_a_stable_rate() -> None:
    for seed in range(5):
        up = RateShiftCusum()
        hit = feed(up, bernoulli(10_000, 3000, 0.02, 0.07, seed))
        assert hit is not None and 3000 <= hit < 4000 and up.direction == "up"
        down = RateShiftCusum()
        hit = feed(down, bernoulli(10_000, 3000, 0.20, 0.08, seed))
        assert hit is not None and 3000 <= hit < 4000 and down.direction == "down"
    assert feed(RateShiftCusum(), bernoulli(40_000, 40_000, 0.02, 0.02, 9)) is None


def test_mix_shift_names_the_category_that_moved_and_tolerates_noise() -> None:
    rng = random.Random(4)
    cats = ["stop", "length", "tool_calls", "content_filter"]
    stable = [rng.choices(cats, [0.7, 0.1, 0.18, 0.02])[0] for _ in range(20_000)]
    assert feed(MixShift(), stable) is None
    moved = stable[:3000] + [rng.choices(cats, [0.5, 0.1, 0.38, 0.02])[0] for _ in range(3000)]
    mix = MixShift()
    hit = feed(mix, moved)
    assert hit is not None and 3000 <= hit < 3000 + 2 * mix.config.window
    top = {m["category"]: m["after"] - m["before"] for m in mix.summary()["moved"][:2]}
    assert set(top) == {"stop", "tool_calls"} and top["tool_calls"] > 0.1


def test_mix_shift_accepts_weighted_multi_label_samples_and_caps_categories() -> None:
    mix = MixShift()
    for i in range(2000):
        mix.update({f"tool{i % 40}": 0.5, "search": 0.5}, at=float(i))
    assert len(mix.base) <= mix.config.max_categories
    assert "<other>" in mix.base
    assert not mix.drift_detected


def embeddings(n: int, change: int, seed: int, move: float = 0.5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    topics = [rng.normal(size=384) for _ in range(6)]
    style_a, style_b = rng.normal(size=384), rng.normal(size=384)
    out = []
    for i in range(n):
        style = style_a if i < change else (1 - move) * style_a + move * style_b
        out.append((topics[rng.integers(6)] + 0.5 * style + 1.5 * rng.normal(size=384)).astype(np.float32))
    return out


def test_centroid_shift_detects_a_new_completion_style_not_topic_noise() -> None:
    assert feed(CentroidShift(), embeddings(4000, 4000, 1)) is None
    shift = CentroidShift()
    hit = feed(shift, embeddings(4000, 1500, 2))
    assert hit is not None and 1500 <= hit < 1500 + 4 * shift.config.window


def _stateful_equivalence(make: Callable[[], Any], values: list[Any], cut: int) -> None:
    whole = make()
    expected = feed(whole, values)
    first = make()
    assert feed(first, values[:cut]) is None
    state = json.loads(json.dumps(first.to_state()))
    resumed = type(first).from_state(state, first.config)
    assert feed(resumed, values, start=cut) == expected


def test_state_round_trip_does_not_change_what_is_detected() -> None:
    _stateful_equivalence(MeanShiftCusum, gauss(6000, 3000, 5.0, 5.4, 0.6, 1), 2000)
    _stateful_equivalence(RateShiftCusum, bernoulli(8000, 3000, 0.02, 0.08, 1), 2500)
    cats = ["stop" if i % 7 else "length" for i in range(3000)] + ["content_filter"] * 500
    _stateful_equivalence(MixShift, cats, 1500)
    vecs = embeddings(3000, 1500, 5)
    _stateful_equivalence(CentroidShift, vecs, 1000)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=600))
def test_mean_shift_state_is_always_json_and_finite(values: list[float]) -> None:
    cusum = MeanShiftCusum()
    for i, v in enumerate(values):
        cusum.update(v, at=float(i))
    state = json.loads(json.dumps(cusum.to_state(), allow_nan=False))
    assert MeanShiftCusum.from_state(state).n == cusum.n
