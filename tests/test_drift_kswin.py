"""detectors/drift/kswin.py: river's KSWIN decisions with the KS test done in numpy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from river.drift import KSWIN as RiverKSWIN
from scipy import stats

from detectors.drift.kswin import KSWIN, _ks_count, critical_count


@pytest.mark.parametrize("stat_size,alpha", [(100, 1e-5), (30, 0.005), (50, 0.01)])
def test_each_test_decides_as_scipy_with_rivers_rule(stat_size: int, alpha: float) -> None:
    rng = np.random.default_rng(stat_size)
    k = critical_count(stat_size, alpha)
    for trial in range(600):
        shift = rng.choice([0.0, 0.2, 0.5, 1.0])
        if trial % 2:  # token counts: many ties
            a = np.log1p(rng.integers(10, 60, stat_size).astype(float))
            b = np.log1p(rng.integers(10, 60, stat_size) + int(shift * 20.0))
        else:
            a, b = rng.normal(0, 1, stat_size), rng.normal(shift, 1, stat_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st, p = stats.ks_2samp(a, b, method="auto")
        assert _ks_count(a, b) == round(st * stat_size)
        assert (_ks_count(a, b) >= k) == (p <= alpha and st > 0.1)


def test_detects_shifts_like_rivers_kswin_and_stays_quiet_without_one() -> None:
    rng = np.random.default_rng(3)
    params = {"alpha": 1e-5, "window_size": 400, "stat_size": 100, "seed": 7}
    delays: dict[str, list[int]] = {"ours": [], "river": []}
    false_alarms = {"ours": 0, "river": 0}
    for _ in range(10):
        values = np.concatenate([rng.lognormal(5, 0.5, 3000), rng.lognormal(5.4, 0.5, 1000)])
        for name, det in (("ours", KSWIN(**params)), ("river", RiverKSWIN(**params))):
            hits = []
            for i, x in enumerate(np.log1p(values)):
                det.update(float(x))
                if det.drift_detected:
                    hits.append(i)
            false_alarms[name] += sum(1 for i in hits if i < 3000)
            after = [i - 3000 for i in hits if i >= 3000]
            delays[name].append(after[0] if after else 10_000)
    assert false_alarms == {"ours": 0, "river": 0}
    assert max(delays["ours"]) < 1000 and max(delays["river"]) < 1000
    assert abs(np.median(delays["ours"]) - np.median(delays["river"])) < 60


def test_state_round_trips_as_json_and_bad_parameters_are_clear() -> None:
    import json

    from detectors.drift.river_state import detector_state, restore_detector

    det = KSWIN(alpha=0.001, window_size=60, stat_size=20, seed=1)
    for x in range(100):
        det.update(float(x % 7))
    copy = KSWIN(alpha=0.001, window_size=60, stat_size=20)  # the state carries the generator
    restore_detector(copy, json.loads(json.dumps(detector_state(det))))
    for x in range(50):
        det.update(float(x))
        copy.update(float(x))
        assert det.drift_detected == copy.drift_detected
    with pytest.raises(ValueError, match="window_size"):
        KSWIN(window_size=10, stat_size=30)
