"""A robust multi-chart CUSUM for heavy-tailed streams (log cost per request or per action).

Method
------
* Location and scale are tracked online as a Huber M-estimate (Huber 1964) by stochastic
  approximation, started from the median and MAD of the first ``init_n`` values, so one
  runaway agent run cannot move the reference.
* Each value is standardised and clipped, ``psi = clip((x - m) / s, -c, c)``, then scaled
  to unit variance with a running estimate of ``E[psi^2]``. The clipped score has finite
  variance whatever the tails, and mean zero at the M-estimate: the CUSUM is calibrated.
* Several one-sided CUSUMs (Page 1954) with reference values ``k`` run side by side
  (a multi-chart CUSUM, Sparks 2000; Lorden 1971 for optimality), so a small drift and a
  sudden jump are both caught quickly. Each chart's limit ``h`` is solved from Siegmund's
  approximation (1985) of the in-control average run length ``arl0``.
* The reference adapts slowly (``half_life`` observations) but only while no chart is past
  half its limit: the detector does not learn from the change it is about to report.
* The last time a chart was at zero estimates the change point (the CUSUM MLE).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

_MAD_TO_SIGMA = 1.4826


def siegmund_limit(k: float, arl0: float) -> float:
    """Decision limit ``h`` of a one-sided CUSUM with reference ``k`` and in-control ARL ``arl0``.

    Solves ``(exp(2 k b) - 2 k b - 1) / (2 k^2) = arl0`` with ``b = h + 1.166`` (Siegmund
    1985, for unit-variance observations).

    >>> round(siegmund_limit(0.5, 930.0), 1)   # the textbook chart k=0.5, h=5
    5.0
    """
    if k <= 0 or arl0 <= 1:
        raise ValueError(f"siegmund_limit: need k > 0 and arl0 > 1, got k={k}, arl0={arl0}")

    def arl(b: float) -> float:
        x = 2 * k * b
        return (math.exp(min(x, 700.0)) - x - 1) / (2 * k * k)

    lo, hi = 0.0, 1.0
    while arl(hi) < arl0:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if arl(mid) < arl0 else (lo, mid)
    return max(0.0, hi - 1.166)


class RobustCusum:
    """Upward (and optionally downward) multi-chart CUSUM on Huber-clipped scores.

    Parameters
    ----------
    ks
        Reference values, in standard deviations of the clipped score: each chart is
        tuned to shifts of about ``2 k``.
    arl0
        In-control average run length of each chart (observations between false alarms).
    clip
        Huber constant ``c``, in robust standard deviations.
    warmup
        Observations used to learn the reference before any alarm (also after an alarm).
    half_life
        Observations over which the reference forgets, once warmed up.
    init_n
        Values buffered to start location and scale from the median and MAD.
    two_sided
        Also watch for decreases.

    >>> import random
    >>> rng = random.Random(1)
    >>> cs = RobustCusum(warmup=300)
    >>> alarms = [cs.update(rng.gauss(0, 1)) for _ in range(2000)]     # e.g. log cost
    >>> any(alarms)
    False
    >>> alarms = [cs.update(rng.gauss(1.0, 1)) for _ in range(200)]    # costs x e
    >>> 0 < alarms.index(True) < 100
    True
    """

    def __init__(self, ks: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0), arl0: float = 1e7,
                 clip: float = 2.0, warmup: int = 500, half_life: float = 5000.0,
                 init_n: int = 32, two_sided: bool = False) -> None:
        if not ks or min(ks) <= 0:
            raise ValueError(f"RobustCusum: ks must be positive reference values, got {ks}")
        if warmup < init_n:
            raise ValueError(f"RobustCusum: warmup ({warmup}) must be >= init_n ({init_n})")
        self.ks = tuple(float(k) for k in ks)
        self.hs = tuple(siegmund_limit(k, arl0) for k in self.ks)
        self.arl0, self.clip, self.warmup, self.half_life = arl0, clip, warmup, half_life
        self.init_n, self.two_sided = init_n, two_sided
        self._alpha_min = 1.0 - 0.5 ** (1.0 / half_life)
        self._e_abs_psi = _e_abs_clipped_normal(clip)
        self.n = 0            # values since the last (re)start
        self.m = 0.0          # location
        self.s = 1.0          # scale of the clipping
        self.v = 1.0          # E[psi^2]
        self.up = [0.0] * len(self.ks)
        self.down = [0.0] * len(self.ks)
        self._buf: list[float] = []
        self.alarm_chart = -1     # index of the chart that fired, -1 when none
        self.alarm_direction = 0  # +1 up, -1 down
        self.last_score = 0.0

    @property
    def warmed_up(self) -> bool:
        return self.n >= self.warmup

    @property
    def suspicious(self) -> bool:
        """Some chart is past half its limit: hold the reference still."""
        return any(s > h / 2 for s, h in zip(self.up, self.hs, strict=True)) or (
            self.two_sided and any(s > h / 2 for s, h in zip(self.down, self.hs, strict=True)))

    def update(self, x: float) -> bool:
        """Add one value; ``True`` when a chart crossed its limit (then it restarts)."""
        self.n += 1
        if self.n <= self.init_n:
            self._buf.append(x)
            if self.n == self.init_n:
                self._start(self._buf)
                self._buf = []
            return False
        psi = (x - self.m) / self.s
        psi = self.clip if psi > self.clip else -self.clip if psi < -self.clip else psi
        if not self.warmed_up or not self.suspicious:
            # 1/n steps while learning (the buffered start counts as init_n values).
            a = max(1.0 / self.n, self._alpha_min)
            self.m += a * self.s * psi
            # Scale: keep E|psi| at its Gaussian value so s tracks a standard deviation.
            self.s *= 1.0 + a * (abs(psi) / self._e_abs_psi - 1.0)
            self.v += a * (psi * psi - self.v)
        u = psi / math.sqrt(self.v) if self.v > 1e-12 else 0.0
        self.last_score = u
        if not self.warmed_up:
            return False
        fired = False
        for i, (k, h) in enumerate(zip(self.ks, self.hs, strict=True)):
            self.up[i] = max(0.0, self.up[i] + u - k)
            if self.up[i] > h and not fired:
                fired, self.alarm_chart, self.alarm_direction = True, i, 1
            if self.two_sided:
                self.down[i] = max(0.0, self.down[i] - u - k)
                if self.down[i] > h and not fired:
                    fired, self.alarm_chart, self.alarm_direction = True, i, -1
        return fired

    def _start(self, values: list[float]) -> None:
        self.m = statistics.median(values)
        mad = statistics.median(abs(v - self.m) for v in values) * _MAD_TO_SIGMA
        self.s = mad if mad > 1e-9 else max(statistics.pstdev(values), 1e-3)
        self.v = 1.0

    def restart(self, shift: float) -> None:
        """After an alarm: move the reference by ``shift`` and learn it again (no alarm meanwhile)."""
        self.m += shift
        self.n = self.init_n  # skip the median start; re-learn with fast steps
        self.up = [0.0] * len(self.ks)
        self.down = [0.0] * len(self.ks)
        self.alarm_chart, self.alarm_direction = -1, 0

    def to_state(self) -> dict[str, Any]:
        return {"n": self.n, "m": self.m, "s": self.s, "v": self.v, "up": self.up,
                "down": self.down, "buf": self._buf}

    def load_state(self, state: dict[str, Any]) -> None:
        self.n, self.m, self.s, self.v = int(state["n"]), state["m"], state["s"], state["v"]
        self.up, self.down = list(state["up"]), list(state["down"])
        self._buf = list(state.get("buf", []))


def _e_abs_clipped_normal(c: float) -> float:
    """E|clip(Z, -c, c)| for a standard normal Z."""
    phi0 = 1 / math.sqrt(2 * math.pi)
    tail = 0.5 * math.erfc(c / math.sqrt(2))
    return 2 * (phi0 - phi0 * math.exp(-c * c / 2)) + 2 * c * tail
