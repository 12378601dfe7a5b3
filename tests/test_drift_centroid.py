"""Centroid shift: the saddlepoint tail against exact and simulated ones; the monitor's alarms."""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.drift.centroid import CentroidShiftMonitor, quadratic_form_isf, quadratic_form_sf


def test_equal_weights_match_the_chi_square_tail() -> None:
    for dof in (3, 20, 384):
        for alpha in (1e-2, 1e-4, 1e-6):
            x = stats.chi2.isf(alpha, dof)
            assert abs(quadratic_form_sf(np.ones(dof), x) / alpha - 1) < 0.05
            assert abs(quadratic_form_isf(np.ones(dof), alpha) / x - 1) < 0.01


def test_unequal_weights_match_simulation() -> None:
    rng = np.random.default_rng(0)
    weights = np.sort(rng.gamma(0.5, 1.0, size=50))[::-1]
    draws = (rng.standard_normal((400_000, 50)) ** 2) @ weights
    for alpha in (1e-2, 1e-3, 1e-4):
        threshold = quadratic_form_isf(weights, alpha)
        assert abs(np.mean(draws > threshold) / alpha - 1) < 0.3


def test_no_alarm_on_a_stable_stream_and_alarm_on_a_shift() -> None:
    rng = np.random.default_rng(1)
    cov = np.diag(np.linspace(2.0, 0.05, 24))
    reference = rng.multivariate_normal(np.zeros(24), cov, size=800)
    monitor = CentroidShiftMonitor(reference, window_size=30, alpha=1e-5)
    stable = rng.multivariate_normal(np.zeros(24), cov, size=20_000)
    assert not any(monitor.update(v)[0] for v in stable)
    shifted = rng.multivariate_normal(np.full(24, 0.6), cov, size=60)
    hits = [i for i, v in enumerate(shifted) if monitor.update(v)[0]]
    assert hits and hits[0] < 30
    assert 0.0 < monitor.p_value(monitor.score()) < 1e-5
    assert monitor.cosine_distance() > 0.0


def test_false_alarm_rate_at_a_looser_alpha() -> None:
    rng = np.random.default_rng(2)
    reference = rng.standard_normal((1000, 16))
    monitor = CentroidShiftMonitor(reference, window_size=20, alpha=1e-3)
    alarms = sum(monitor.update(v)[0] for v in rng.standard_normal((30_000, 16)))
    assert alarms <= 3 * 30_000 * 1e-3  # nominal 30 per-item exceedances (correlated windows)
