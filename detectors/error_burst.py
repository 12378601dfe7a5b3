"""Error bursts on quiet routes: a Bernoulli CUSUM against the scope's own error rate.

A share over a window needs traffic: a route with two calls a minute never fills a
50-request window, so it can fail half its calls for a quarter of an hour unseen. This
detector decides call by call instead. It keeps the scope's baseline error share
``p0`` (a forgetting average with a prior, floored) and runs the Bernoulli CUSUM of
Reynolds & Stoumbos ("A CUSUM Chart for Monitoring a Proportion When Inspecting
Continuously", Journal of Quality Technology 31(1), 1999) for a burst share ``p1``::

    S <- max(0, S + log(p1 / p0))              after a failed call
    S <- max(0, S + log((1 - p1) / (1 - p0)))  after a successful one

and trips when ``S >= threshold`` with at least ``min_errors`` failures in the current
excursion (``S > 0``): a quiet route at 0.5 % errors trips on 15 failures in 31 calls
after its fourth failure, a busy route at a steady 8 % has a baseline of 8 % and a burst
share of 40 %, and its noise seldom trips: learning its baseline from a fresh start,
the defaults give one false trip per 2.4 million calls at 0.5 %, 1.2 million at 2 % and
0.58 million at 8 % (bench/bench_error_burst.py; docs/BREAKER.md). While tripped the
baseline does not learn and ``S`` is capped one failure above ``threshold``, so recovery
(``S`` back at 0) takes a bounded number of good calls (about 55 at a 0.5 % baseline).
Feed it first attempts only: retries of failures fail together, which a Bernoulli test
reads as a burst (the caller, ``ErrorRateDetector``, skips them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# A scope whose *usual* share is above this is the window rule's (its open threshold is
# 25 %); capping p0 keeps p0 < p1 and 1 - p0 > 0 whatever the prior and the history.
MAX_BASELINE_SHARE = 0.5
MAX_BURST_SHARE = 0.99


class ErrorBurstConfig(BaseModel):
    """Settings of :class:`ErrorBurstDetector` (``error_rate.burst:`` in the breaker policy).

    Shares are in [0, 1]; ``threshold`` is in nats of log-likelihood ratio.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    threshold: float = Field(default=11.5, gt=0)
    min_errors: int = Field(default=4, ge=1)
    burst_ratio: float = Field(default=5.0, gt=1, description="p1 = max(min_burst_share, ratio * p0)")
    min_burst_share: float = Field(default=0.25, gt=0, lt=1)
    min_baseline_calls: int = Field(default=200, ge=0, description="calls seen before it decides")
    baseline_calls: int = Field(default=5000, ge=10, description="memory of the baseline, calls")
    prior_share: float = Field(default=0.01, gt=0, lt=1)
    prior_calls: float = Field(default=100.0, ge=0)
    min_baseline_share: float = Field(default=0.002, gt=0, lt=1)


class ErrorBurstDetector:
    """Bernoulli CUSUM of one scope's call outcomes against its own baseline.

    ``update(is_error)`` returns ``"tripped"`` when a burst is found, ``"recovered"`` when
    the statistic is back at zero after one, and ``None`` otherwise.

    Examples
    --------
    A quiet route at 0.5 % errors, then 15 failures in 31 calls:

    >>> import random
    >>> rng = random.Random(7)
    >>> det = ErrorBurstDetector()
    >>> quiet = [det.update(rng.random() < 0.005) for _ in range(2000)]
    >>> quiet.count("tripped")
    0
    >>> burst = [det.update(i % 2 == 0 and i < 30) for i in range(31)]
    >>> burst.index("tripped"), det.high      # at its 4th failure, the 7th call
    (6, True)
    >>> later = [det.update(False) for _ in range(200)]
    >>> later.count("recovered"), det.high
    (1, False)

    A busy route with a steady 8 % failing never trips on its noise:

    >>> noisy = ErrorBurstDetector()
    >>> sum(noisy.update(rng.random() < 0.08) == "tripped" for _ in range(20_000))
    0
    """

    def __init__(self, config: ErrorBurstConfig | None = None) -> None:
        self.config = config or ErrorBurstConfig()
        self.calls = 0.0  # forgetting counts of the baseline
        self.failures = 0.0
        self.seen = 0
        self.statistic = 0.0
        self.errors = 0  # failures in the current excursion (statistic > 0)
        self.excursion_calls = 0
        self.high = False

    @property
    def baseline(self) -> float:
        """The scope's usual error share (prior-weighted, floored)."""
        cfg = self.config
        total = self.calls + cfg.prior_calls
        share = (self.failures + cfg.prior_share * cfg.prior_calls) / total if total > 0 else cfg.prior_share
        return min(MAX_BASELINE_SHARE, max(cfg.min_baseline_share, share))

    @property
    def burst_share(self) -> float:
        """The share the test looks for: ``burst_ratio`` times the baseline, at least
        ``min_burst_share`` (a quiet route's 0.5 % x 5 would call 2.5 % a burst)."""
        cfg = self.config
        return min(MAX_BURST_SHARE, max(cfg.min_burst_share, cfg.burst_ratio * self.baseline))

    def update(self, is_error: bool) -> str | None:
        """Count one call outcome; see the class docstring for what it returns."""
        cfg = self.config
        p0, p1 = self.baseline, self.burst_share
        step = math.log(p1 / p0) if is_error else math.log((1 - p1) / (1 - p0))
        self.statistic = max(0.0, self.statistic + step)
        if self.statistic > 0.0:
            self.errors += int(is_error)
            self.excursion_calls += 1
        else:
            self.errors = self.excursion_calls = 0
        self.seen += 1
        if not self.high:
            # A burst in progress barely moves a 5000-call memory; once tripped, it stops.
            keep = 1.0 - 1.0 / cfg.baseline_calls
            self.calls = self.calls * keep + 1.0
            self.failures = self.failures * keep + float(is_error)
        if not cfg.enabled:
            return None
        if self.high:
            self.statistic = min(self.statistic, cfg.threshold + math.log(p1 / p0))
            if self.statistic == 0.0:
                self.high = False
                return "recovered"
            return None
        if (self.seen > cfg.min_baseline_calls and self.statistic >= cfg.threshold
                and self.errors >= cfg.min_errors):
            self.high = True
            return "tripped"
        return None

    def evidence(self) -> dict[str, Any]:
        """Figures for a finding: the test, its statistic and the excursion behind it."""
        return {"test": "bernoulli_cusum", "statistic": round(self.statistic, 3),
                "cusum_threshold": self.config.threshold, "baseline_share": round(self.baseline, 5),
                "burst_share": round(self.burst_share, 4), "burst_errors": self.errors,
                "burst_calls": self.excursion_calls}

    def to_state(self) -> dict[str, Any]:
        """Plain JSON (floats, ints, a bool): the scope-state changelog holds it as is."""
        return {"calls": self.calls, "failures": self.failures, "seen": self.seen,
                "s": self.statistic, "errors": self.errors, "excursion": self.excursion_calls,
                "high": self.high}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: ErrorBurstConfig | None = None) -> ErrorBurstDetector:
        """Rebuild from :meth:`to_state`; missing keys start fresh. Values are clamped into
        their ranges (failures <= calls, statistic >= 0, finite): a damaged record must cost
        the scope some history, never make every later call raise or the test go blind."""
        det = cls(config)
        det.calls = _finite(state.get("calls"), 0.0, det.config.baseline_calls)
        det.failures = _finite(state.get("failures"), 0.0, det.calls)
        det.seen = int(_finite(state.get("seen"), 0, 2**62))
        det.statistic = _finite(state.get("s"), 0.0, 1e6)
        det.excursion_calls = int(_finite(state.get("excursion"), 0, 2**62))
        det.errors = int(_finite(state.get("errors"), 0, det.excursion_calls))
        det.high = bool(state.get("high", False))
        return det


def _finite(value: Any, low: float, high: float) -> float:
    """``value`` as a float in [low, high]; ``low`` when it is missing or not a finite number."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return float(low)
    return float(low) if not math.isfinite(x) else min(float(high), max(float(low), x))
