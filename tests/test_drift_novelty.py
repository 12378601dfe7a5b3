"""Novelty count: exact Beta-binomial calibration, fast on new topics."""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.drift.novelty import NoveltyMonitor, leave_one_out_novelty


def topics(rng: np.random.Generator, n_topics: int, d: int = 24) -> np.ndarray:
    return rng.normal(size=(n_topics, d))


def draw(rng: np.random.Generator, centers: np.ndarray, which: list[int], n: int) -> np.ndarray:
    picks = rng.choice(which, size=n)
    return centers[picks] + 0.5 * rng.normal(size=(n, centers.shape[1]))


def test_leave_one_out_excludes_the_item_itself() -> None:
    x = np.eye(3)
    x[2] = x[1]  # a duplicate: its nearest other item is identical
    assert np.allclose(leave_one_out_novelty(x), [1.0, 0.0, 0.0])


def test_per_item_exceedance_matches_the_beta_binomial_tail() -> None:
    # Over many independent references the alarm rate per check matches alpha.
    rng = np.random.default_rng(0)
    centers = topics(rng, 8)
    rates = []
    for _ in range(30):
        monitor = NoveltyMonitor(draw(rng, centers, list(range(8)), 400), 40, 0.1, alpha=0.01)
        stable = draw(rng, centers, list(range(8)), 2000)
        flags = [monitor.update(v)[0] for v in stable]
        rates.append(np.mean(flags[40:]))
    # threshold rounding makes the true per-check rate <= alpha
    assert np.mean(rates) <= 0.013
    k, n, w = monitor.k, 400, 40
    assert monitor.p_value(monitor.threshold) <= 0.01 < monitor.p_value(monitor.threshold - 1)
    assert monitor.p_value(monitor.threshold) == stats.betabinom(w, k, n + 1 - k).sf(monitor.threshold - 1)


def test_new_topic_is_caught_within_a_few_dozen_items() -> None:
    rng = np.random.default_rng(1)
    centers = topics(rng, 6)
    monitor = NoveltyMonitor(draw(rng, centers, [0, 1, 2, 3, 4], 1000), 50, 0.05, alpha=3e-6)
    assert not any(monitor.update(v)[0] for v in draw(rng, centers, [0, 1, 2, 3, 4], 5000))
    hits = [monitor.update(v)[0] for v in draw(rng, centers, [5], 60)]
    assert True in hits and hits.index(True) < 25
