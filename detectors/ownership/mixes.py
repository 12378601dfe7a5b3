"""Change tests for mixes: categorical mixes (finish reasons, tool calls) and the centroid
of completion embeddings."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import chi2

from detectors.ownership.config import CentroidShiftSettings, MixShiftSettings

OTHER = "<other>"


class MixShift:
    """Windowed G-test of a categorical mix against an adaptive baseline mix.

    Every ``window`` samples the window's category counts are tested against the baseline
    proportions (add-1/2 smoothed) with the likelihood-ratio G statistic, chi-square with
    K-1 degrees of freedom (Sokal & Rohlf, "Biometry", G-test of goodness of fit). A change
    needs both ``p < alpha`` and a total-variation distance of at least ``min_tv``, so a
    large volume cannot turn a negligible difference into an alarm. Windows without a change
    are merged into the baseline (exponential weights over ``memory`` samples).

    A sample is one category, or a mapping of categories to weights summing to 1 (a trace
    that called two tools gives each 0.5). Categories beyond ``max_categories`` share
    ``"<other>"``.

    >>> mix = MixShift()
    >>> for i in range(1000):  # finish reasons: 90% stop, 10% length
    ...     _ = mix.update("length" if i % 10 == 0 else "stop", at=float(i))
    >>> for i in range(1000, 1600):  # then 40% content_filter
    ...     _ = mix.update("content_filter" if i % 5 < 2 else "stop", at=float(i))
    >>> mix.drift_detected, mix.summary()["moved"][0]["category"]
    (True, 'content_filter')
    """

    def __init__(self, config: MixShiftSettings | None = None) -> None:
        self.config = config or MixShiftSettings()
        self.reset()

    def reset(self) -> None:
        """Forget the baseline mix; learn a new one from the next ``warmup`` samples."""
        self.base: dict[str, float] = {}
        self.n = 0.0
        self.win: dict[str, float] = {}
        self.win_n = 0.0
        self.win_start = 0.0
        self.drift_detected = False
        self.detected_at = self.change_at = 0.0
        self.stat = self.p_value = self.tv = 0.0
        self.moved: list[dict[str, Any]] = []

    def _slot(self, category: str) -> str:
        known = category in self.base or category in self.win
        if known or len(self.base.keys() | self.win.keys()) < self.config.max_categories - 1:
            return category
        return OTHER

    def update(self, sample: str | Mapping[str, float], at: float) -> bool:
        """Add one sample; ``True`` once the mix has changed."""
        if self.drift_detected:
            return True
        items = {sample: 1.0} if isinstance(sample, str) else sample
        target = self.base if self.n < self.config.warmup else self.win
        if target is self.win and self.win_n == 0:
            self.win_start = at
        for category, weight in items.items():
            slot = self._slot(category)
            target[slot] = target.get(slot, 0.0) + weight
        if target is self.base:
            self.n += 1
            return False
        self.win_n += 1
        if self.win_n >= self.config.window:
            self._test(at)
        return self.drift_detected

    def partial(self) -> dict[str, Any] | None:
        """Evidence from the unfinished window (a quarter full or more, ``p < sqrt(alpha)``)."""
        if self.drift_detected or self.win_n < self.config.window / 4 or not self.base:
            return None
        g, tv, p_value, moved = self._compare()
        if p_value >= math.sqrt(self.config.alpha) or tv < self.config.min_tv:
            return None
        return {"method": "windowed G-test (partial window)", "statistic": round(g, 3),
                "p_value": p_value, "tv": round(tv, 4), "moved": moved,
                "changed_at": self.win_start, "window": self.win_n}

    def _compare(self) -> tuple[float, float, float, list[dict[str, Any]]]:
        cats = self.base.keys() | self.win.keys()
        total = sum(self.base.values())
        g, tv = 0.0, 0.0
        for c in cats:
            p_base = (self.base.get(c, 0.0) + 0.5) / (total + 0.5 * len(cats))
            observed = self.win.get(c, 0.0)
            if observed > 0:
                g += 2.0 * observed * math.log(observed / (self.win_n * p_base))
            tv += abs(observed / self.win_n - self.base.get(c, 0.0) / total)
        tv /= 2.0
        p_value = float(chi2.sf(max(g, 0.0), max(len(cats) - 1, 1)))
        moves = [(self.win.get(c, 0.0) / self.win_n - self.base.get(c, 0.0) / total, c) for c in cats]
        moved = [{"category": c, "before": round(self.base.get(c, 0.0) / total, 4),
                  "after": round(self.win.get(c, 0.0) / self.win_n, 4)}
                 for _, c in sorted(moves, key=lambda m: -abs(m[0]))[:3]]
        return g, tv, p_value, moved

    def _test(self, at: float) -> None:
        g, tv, p_value, moved = self._compare()
        total = sum(self.base.values())
        if p_value < self.config.alpha and tv >= self.config.min_tv:
            self.drift_detected, self.detected_at, self.change_at = True, at, self.win_start
            self.stat, self.p_value, self.tv, self.moved = g, p_value, tv, moved
            return
        for c, weight in self.win.items():
            self.base[c] = self.base.get(c, 0.0) + weight
        self.n += self.win_n
        scale = self.config.memory / (total + self.win_n)
        if scale < 1.0:
            self.base = {c: w * scale for c, w in self.base.items() if w * scale > 1e-3}
        self.win, self.win_n = {}, 0.0

    def summary(self) -> dict[str, Any]:
        return {"method": "windowed G-test vs baseline mix (total variation as effect size)",
                "statistic": round(self.stat, 3), "p_value": self.p_value,
                "threshold": self.config.alpha, "tv": round(self.tv, 4), "moved": self.moved,
                "changed_at": self.change_at, "detected_at": self.detected_at}

    def to_state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _MIX_FIELDS}

    @classmethod
    def from_state(cls, state: dict[str, Any], config: MixShiftSettings | None = None) -> MixShift:
        obj = cls(config)
        for k in _MIX_FIELDS:
            setattr(obj, k, state[k])
        return obj


_MIX_FIELDS = ("base", "n", "win", "win_n", "win_start", "drift_detected", "detected_at",
               "change_at", "stat", "p_value", "tv", "moved")


def _pack(vec: np.ndarray | None) -> str | None:
    return None if vec is None else base64.b64encode(vec.astype(np.float32).tobytes()).decode()


def _unpack(text: str | None) -> np.ndarray | None:
    return None if text is None else np.frombuffer(base64.b64decode(text), np.float32).astype(np.float64)


class CentroidShift:
    """Cosine distance of window centroids of completion embeddings from the baseline centroid.

    Embeddings are L2-normalised. After ``warmup`` embeddings form the baseline centroid,
    each window of ``window`` embeddings gives ``d = 1 - cos(window centroid, baseline)``.
    The first ``null_windows`` windows learn the typical ``d`` of an unchanged stream (it
    depends on the dispersion of completions and the window size); afterwards a change is
    declared when ``d`` exceeds ``ratio`` times that null mean in ``consecutive`` windows in
    a row (a centroid test in the spirit of Rabanser et al., 2019, "Failing loudly").

    >>> rng = np.random.default_rng(0)
    >>> base, other = rng.normal(size=384), rng.normal(size=384)
    >>> shift = CentroidShift()
    >>> for i in range(2000):
    ...     centre = base if i < 1200 else 0.6 * base + 0.8 * other
    ...     _ = shift.update(centre + 2.0 * rng.normal(size=384), at=float(i))
    >>> shift.drift_detected, 1200 <= shift.detected_at < 1400
    (True, True)
    """

    def __init__(self, config: CentroidShiftSettings | None = None) -> None:
        self.config = config or CentroidShiftSettings()
        self.reset()

    def reset(self) -> None:
        """Forget the baseline centroid; learn a new one from the next ``warmup`` embeddings."""
        self.n = 0.0
        self.centroid: np.ndarray | None = None
        self.win_sum: np.ndarray | None = None
        self.win_n = 0.0
        self.win_start = 0.0
        self.null_mean = 0.0
        self.null_n = 0.0
        self.streak = 0.0
        self.streak_start = 0.0
        self.drift_detected = False
        self.detected_at = self.change_at = 0.0
        self.distance = 0.0

    def update(self, embedding: np.ndarray, at: float) -> bool:
        """Add one completion embedding; ``True`` once the centroid has moved."""
        if self.drift_detected:
            return True
        v = np.asarray(embedding, dtype=np.float64).ravel()
        norm = float(np.linalg.norm(v))
        if norm == 0.0 or not math.isfinite(norm):
            return False
        v = v / norm
        if self.centroid is not None and v.shape != self.centroid.shape:
            raise ValueError(f"embedding has {v.size} dimensions, the baseline {self.centroid.size}; "
                             "use one encoder per (route, model) or reset() after changing it")
        if self.centroid is None or self.n < self.config.warmup:
            self.n += 1
            self.centroid = v.copy() if self.centroid is None else self.centroid + (v - self.centroid) / self.n
            return False
        if self.win_sum is None or self.win_n == 0:
            self.win_sum, self.win_start = np.zeros_like(v), at
        self.win_sum = self.win_sum + v
        self.win_n += 1
        if self.win_n >= self.config.window:
            self._test(at)
        return self.drift_detected

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        # Only called with a full or partial window, i.e. after the warm-up.
        assert self.win_sum is not None and self.centroid is not None
        return self.win_sum / self.win_n, self.centroid

    def _distance(self) -> float:
        c, mu = self._vectors()
        return 1.0 - float(c @ mu) / max(float(np.linalg.norm(c) * np.linalg.norm(mu)), 1e-12)

    def partial(self) -> dict[str, Any] | None:
        """Evidence short of a change: a window over the ratio, or the unfinished window
        (half full or more) over twice the ratio (its null distance is larger), else ``None``."""
        cfg = self.config
        if self.drift_detected or self.null_n < cfg.null_windows:
            return None
        if self.streak >= 1:
            return {**self.summary(), "changed_at": self.streak_start}
        d = self._distance() if self.win_n >= max(cfg.window / 2, 1) else 0.0
        if d > 2 * cfg.ratio * self.null_mean:
            return {**self.summary(), "statistic": round(d, 5), "changed_at": self.win_start,
                    "window": self.win_n}
        return None

    def _test(self, at: float) -> None:
        cfg = self.config
        c, mu = self._vectors()
        d = self._distance()
        self.distance = d
        if self.null_n >= cfg.null_windows and d > cfg.ratio * self.null_mean:
            self.streak += 1
            if self.streak == 1:
                self.streak_start = self.win_start
            if self.streak >= cfg.consecutive:
                self.drift_detected, self.detected_at = True, at
                self.change_at = self.streak_start
            self.win_sum, self.win_n = None, 0.0
            return
        self.streak = 0.0
        self.null_n += 1
        self.null_mean += (d - self.null_mean) / min(self.null_n, 50.0)
        a = self.win_n / min(self.n + self.win_n, cfg.memory)
        self.centroid = mu + a * (c - mu)
        self.n += self.win_n
        self.win_sum, self.win_n = None, 0.0

    def summary(self) -> dict[str, Any]:
        return {"method": "cosine distance of window centroid to baseline centroid",
                "statistic": round(self.distance, 5),
                "threshold": round(self.config.ratio * self.null_mean, 5),
                "null_mean": round(self.null_mean, 5),
                "changed_at": self.change_at, "detected_at": self.detected_at}

    def to_state(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in _CENTROID_FIELDS}
        state["centroid"], state["win_sum"] = _pack(self.centroid), _pack(self.win_sum)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any],
                   config: CentroidShiftSettings | None = None) -> CentroidShift:
        obj = cls(config)
        for k in _CENTROID_FIELDS:
            setattr(obj, k, state[k])
        obj.centroid, obj.win_sum = _unpack(state["centroid"]), _unpack(state["win_sum"])
        return obj


_CENTROID_FIELDS = ("n", "win_n", "win_start", "null_mean", "null_n", "streak", "streak_start",
                    "drift_detected", "detected_at", "change_at", "distance")
