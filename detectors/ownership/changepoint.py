"""Online change-point tests for single behaviour signals (continuous values and rates).

Both learn a baseline during a warm-up, then keep adapting it slowly (an exponentially
weighted estimate over ``memory`` samples) so that slow seasonal drift is absorbed while
abrupt shifts, the kind a silent model update causes, accumulate evidence in a CUSUM.
After ``drift_detected`` they stay frozen until ``reset()`` re-learns a baseline.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.ownership.config import MeanShiftSettings, RateShiftSettings


class MeanShiftCusum:
    """Two-sided CUSUM on standardized batch means (Page, 1954, "Continuous inspection schemes").

    Samples are winsorized at ``clip`` baseline sd, averaged in batches of ``batch`` (which
    makes heavy-tailed token counts and latencies close to normal), standardized by the
    baseline mean and standard error (inflated by the observed dispersion of batch means,
    which absorbs autocorrelation), and fed to ``S+ = max(0, S+ + z - k)`` and
    ``S- = max(0, S- - z - k)``; a change is declared when either exceeds ``h``. The change
    time is the start of the run that crossed, the classic CUSUM estimate.

    Parameters
    ----------
    config
        ``MeanShiftSettings`` (units of ``k`` and ``h``: standard errors of a batch mean).

    >>> import random
    >>> rng = random.Random(1)
    >>> cusum = MeanShiftCusum()
    >>> t = 0.0
    >>> while not cusum.drift_detected:  # log output tokens: mean 5.0, then 5.4 at t=1000
    ...     t += 1.0
    ...     _ = cusum.update(rng.gauss(5.0 if t < 1000 else 5.4, 0.6), at=t)
    >>> 1000 <= cusum.detected_at < 1400, cusum.direction
    (True, 'up')
    """

    def __init__(self, config: MeanShiftSettings | None = None) -> None:
        self.config = config or MeanShiftSettings()
        self.reset()

    def reset(self) -> None:
        """Forget the baseline; learn a new one from the next ``warmup`` samples."""
        self.n, self.mean, self.var, self.ratio = 0.0, 0.0, 0.0, 1.0
        self.b_sum = self.b_sq = self.b_n = 0.0
        self.b_start = 0.0
        self.s_hi = self.s_lo = 0.0
        self.hi = [0.0, 0.0, 0.0]  # run start time, sum of batch means, batches
        self.lo = [0.0, 0.0, 0.0]
        self.drift_detected = False
        self.detected_at = self.change_at = 0.0
        self.direction = ""
        self.after = 0.0

    @property
    def scale(self) -> float:
        """Baseline standard deviation of one sample."""
        return max(math.sqrt(self.var), self.config.min_scale)

    def update(self, x: float, at: float) -> bool:
        """Add one sample (``at`` in epoch seconds); ``True`` once a change is detected."""
        cfg = self.config
        if self.drift_detected:
            return True
        if self.n < cfg.warmup:
            self._learn(x)
            return False
        s = self.scale
        x = min(max(x, self.mean - cfg.clip * s), self.mean + cfg.clip * s)
        if self.b_n == 0:
            self.b_start = at
        self.b_sum += x
        self.b_sq += x * x
        self.b_n += 1
        if self.b_n >= cfg.batch:
            self._step(at)
        return self.drift_detected

    def _learn(self, x: float) -> None:
        # Welford; winsorize once a rough scale exists so one outlier cannot set the baseline.
        if self.n >= 30:
            s = self.config.clip * 1.5 * self.scale
            x = min(max(x, self.mean - s), self.mean + s)
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.var += (delta * (x - self.mean) - self.var) / self.n

    def _step(self, at: float) -> None:
        cfg, s = self.config, self.scale
        bm = self.b_sum / self.b_n
        z = (bm - self.mean) * math.sqrt(self.b_n) / (s * math.sqrt(self.ratio))
        for run, sign in ((self.hi, 1.0), (self.lo, -1.0)):
            stat = max(0.0, (self.s_hi if sign > 0 else self.s_lo) + sign * z - cfg.k)
            if stat > 0 and run[2] == 0:
                run[0] = self.b_start
            run[1], run[2] = (run[1] + bm, run[2] + 1) if stat > 0 else (0.0, 0.0)
            if sign > 0:
                self.s_hi = stat
            else:
                self.s_lo = stat
        if max(self.s_hi, self.s_lo) > cfg.h:
            run = self.hi if self.s_hi >= self.s_lo else self.lo
            self.drift_detected, self.detected_at, self.change_at = True, at, run[0]
            self.direction = "up" if run is self.hi else "down"
            self.after = run[1] / max(run[2], 1.0)
        else:
            self._adapt(bm, z, at)
        self.b_sum = self.b_sq = self.b_n = 0.0

    def _adapt(self, bm: float, z: float, at: float) -> None:
        # Merge the batch into the baseline (exponential weights over ``memory`` samples).
        a = self.b_n / min(self.n + self.b_n, self.config.memory)
        if self.config.memory_s is not None and self.n >= self.config.warmup:
            a = max(a, min((at - self.b_start) / self.config.memory_s, 0.5))
        within = max(self.b_sq / self.b_n - bm * bm, 0.0)
        d = bm - self.mean
        self.mean += a * d
        self.var = (1 - a) * self.var + a * within + a * (1 - a) * d * d
        batches = min(self.n / self.b_n, self.config.memory / self.config.batch)
        self.ratio = min(max(self.ratio + (z * z * self.ratio - self.ratio) / batches, 1.0), 4.0)
        self.n += self.b_n

    def partial(self) -> dict[str, Any] | None:
        """Evidence short of a change (statistic past half the threshold), else ``None``."""
        if self.drift_detected or max(self.s_hi, self.s_lo) < self.config.h / 2:
            return None
        run = self.hi if self.s_hi >= self.s_lo else self.lo
        return self._evidence("up" if run is self.hi else "down", run[0], run[1] / max(run[2], 1.0))

    def summary(self) -> dict[str, Any]:
        """Evidence of the detected change (baseline and post-change level, in input units)."""
        return {**self._evidence(self.direction, self.change_at, self.after),
                "detected_at": self.detected_at}

    def _evidence(self, direction: str, change_at: float, after: float) -> dict[str, Any]:
        return {"method": "two-sided CUSUM on batch means (Page 1954)",
                "direction": direction, "before": round(self.mean, 4), "after": round(after, 4),
                "shift_sd": round((after - self.mean) / self.scale, 3),
                "statistic": round(max(self.s_hi, self.s_lo), 3), "threshold": self.config.h,
                "changed_at": change_at}

    def to_state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _MEAN_FIELDS}

    @classmethod
    def from_state(cls, state: dict[str, Any],
                   config: MeanShiftSettings | None = None) -> MeanShiftCusum:
        obj = cls(config)
        for k in _MEAN_FIELDS:
            setattr(obj, k, list(state[k]) if isinstance(state[k], list) else state[k])
        return obj


_MEAN_FIELDS = ("n", "mean", "var", "ratio", "b_sum", "b_sq", "b_n", "b_start", "s_hi", "s_lo",
                "hi", "lo", "drift_detected", "detected_at", "change_at", "direction", "after")


class RateShiftCusum:
    """Two-sided Bernoulli CUSUM on a rate (Reynolds & Stoumbos, 1999, "A CUSUM chart for
    monitoring a proportion when inspecting continuously", J. Quality Technology 31(1)).

    Each sample adds its log-likelihood ratio of the alternative rate ``p1`` against the
    baseline ``p0``; up: ``p1 = max(p0 * ratio, p0 + min_shift)``; down (only when the
    baseline is high enough to fall by ``min_shift``): ``p1 = p0 / ratio``. Alarm when the
    sum exceeds ``h`` nats (in-control run length roughly ``exp(h)`` samples or more).

    >>> import random
    >>> rng = random.Random(2)
    >>> cusum = RateShiftCusum()
    >>> t = 0
    >>> while not cusum.drift_detected:  # refusal rate 2% then 8% from t=2000
    ...     t += 1
    ...     _ = cusum.update(rng.random() < (0.02 if t < 2000 else 0.08), at=float(t))
    >>> 2000 <= cusum.detected_at < 2600, cusum.direction
    (True, 'up')
    """

    def __init__(self, config: RateShiftSettings | None = None) -> None:
        self.config = config or RateShiftSettings()
        self.reset()

    def reset(self) -> None:
        """Forget the baseline rate; learn a new one from the next ``warmup`` samples."""
        self.n, self.p = 0.0, 0.0
        self.s_up = self.s_dn = 0.0
        self.up = [0.0, 0.0, 0.0]  # run start time, events, samples
        self.dn = [0.0, 0.0, 0.0]
        self.drift_detected = False
        self.detected_at = self.change_at = 0.0
        self.direction = ""
        self.after = 0.0

    def update(self, event: bool, at: float) -> bool:
        """Add one sample (``event``: it was an error/refusal); ``True`` once changed."""
        cfg = self.config
        if self.drift_detected:
            return True
        x = 1.0 if event else 0.0
        if self.n < cfg.warmup:
            self.n += 1
            self.p += (x - self.p) / self.n
            return False
        p0 = min(max(self.p, 0.5 / self.n), 1 - 0.5 / self.n)
        p_up = min(max(p0 * cfg.ratio, p0 + cfg.min_shift), 0.999)
        self.s_up = self._run(self.up, self.s_up, x, p0, p_up, at)
        p_dn = p0 / cfg.ratio
        if p0 - p_dn >= cfg.min_shift:
            self.s_dn = self._run(self.dn, self.s_dn, x, p0, p_dn, at)
        if max(self.s_up, self.s_dn) > cfg.h:
            run = self.up if self.s_up >= self.s_dn else self.dn
            self.drift_detected, self.detected_at, self.change_at = True, at, run[0]
            self.direction = "up" if run is self.up else "down"
            self.after = run[1] / max(run[2], 1.0)
            return True
        self.n += 1
        self.p += (x - self.p) / min(self.n, cfg.memory)
        return False

    @staticmethod
    def _run(run: list[float], stat: float, x: float, p0: float, p1: float, at: float) -> float:
        llr = math.log(p1 / p0) if x else math.log((1 - p1) / (1 - p0))
        stat = max(0.0, stat + llr)
        if stat > 0:
            if run[2] == 0:
                run[0] = at
            run[1] += x
            run[2] += 1
        else:
            run[1] = run[2] = 0.0
        return stat

    def partial(self) -> dict[str, Any] | None:
        """Evidence short of a change (statistic past half the threshold), else ``None``."""
        if self.drift_detected or max(self.s_up, self.s_dn) < self.config.h / 2:
            return None
        run = self.up if self.s_up >= self.s_dn else self.dn
        return self._evidence("up" if run is self.up else "down", run[0], run[1] / max(run[2], 1.0))

    def summary(self) -> dict[str, Any]:
        """Evidence of the detected change (rates as fractions)."""
        return {**self._evidence(self.direction, self.change_at, self.after),
                "detected_at": self.detected_at}

    def _evidence(self, direction: str, change_at: float, after: float) -> dict[str, Any]:
        return {"method": "two-sided Bernoulli CUSUM (Reynolds & Stoumbos 1999)",
                "direction": direction, "before": round(self.p, 5), "after": round(after, 5),
                "statistic": round(max(self.s_up, self.s_dn), 3), "threshold": self.config.h,
                "changed_at": change_at}

    def to_state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _RATE_FIELDS}

    @classmethod
    def from_state(cls, state: dict[str, Any],
                   config: RateShiftSettings | None = None) -> RateShiftCusum:
        obj = cls(config)
        for k in _RATE_FIELDS:
            setattr(obj, k, list(state[k]) if isinstance(state[k], list) else state[k])
        return obj


_RATE_FIELDS = ("n", "p", "s_up", "s_dn", "up", "dn", "drift_detected", "detected_at",
                "change_at", "direction", "after")
