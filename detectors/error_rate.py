"""Error rate per (route, model) over a sliding window, with hysteresis.

The method is the failure-percentage check of Envoy's outlier detection
(``failure_percentage_threshold`` with ``failure_percentage_request_volume``): over a
window, the share of failed requests is compared with a threshold once the window holds
a minimum number of requests. Two things are added for governance:

* hysteresis: the detector *trips* at ``open_threshold`` and only *recovers* at the lower
  ``close_threshold``, so a rate hovering at the threshold does not flap;
* transitions, not samples: one ``error_rate.high`` finding when it trips, one
  ``error_rate.recovered`` when it recovers (plus, while it stays tripped, at most one
  reminder every ``renotify_s`` so a breaker closed by its probes can trip again).

Two windows, each optional:

* a time window (event time): the last ``window_s`` seconds in ``bucket_s`` buckets;
* a count window: the last ``last_n`` outcomes, kept as a bit set, which gives low
  traffic routes a decision where the time window never reaches ``min_requests``.

The time window is used when it holds ``min_requests``; otherwise the count window is,
when it does; otherwise there is no decision (no evidence either way).

Routes too quiet for the time window also get a per-call test against their own
baseline (``burst``, :mod:`detectors.error_burst`, a Bernoulli CUSUM): a quiet A/B arm
failing half its calls trips within a handful of failures, long before any window fills.
Busy routes (the time window decides) keep the window rule alone, so their noise at a
steady 8 % never trips. The detector is tripped while either rule says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.error_burst import ErrorBurstConfig, ErrorBurstDetector
from detectors.findings import Finding

DETECTOR = "ErrorRateDetector/1"
HIGH = "error_rate.high"
RECOVERED = "error_rate.recovered"
MAX_BUCKETS = 3600
MAX_LAST_N = 100_000


class ErrorRateConfig(BaseModel):
    """Thresholds and windows of :class:`ErrorRateDetector` (``error_rate:`` in the policy).

    Shares are in [0, 1], times in seconds. ``window_s: null`` or ``last_n: null``
    disables that window; at least one must stay enabled.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: float | None = Field(default=30.0, gt=0)
    bucket_s: float = Field(default=5.0, gt=0)
    last_n: int | None = Field(default=100, ge=1, le=MAX_LAST_N)
    count_window_max_age_s: float = Field(default=900.0, gt=0)
    min_requests: int = Field(default=50, ge=1)
    open_threshold: float = Field(default=0.25, gt=0, le=1)
    close_threshold: float = Field(default=0.10, ge=0, lt=1)
    renotify_s: float | None = Field(default=60.0, gt=0)
    burst: ErrorBurstConfig = Field(default_factory=ErrorBurstConfig)
    version: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ErrorRateConfig:
        if self.close_threshold >= self.open_threshold:
            raise ValueError(
                f"error_rate.close_threshold ({self.close_threshold}) must be below "
                f"open_threshold ({self.open_threshold}); lower it to leave a hysteresis gap"
            )
        if self.window_s is None and self.last_n is None:
            raise ValueError("error_rate: set window_s or last_n (both are null)")
        if self.window_s is not None:
            if self.bucket_s > self.window_s:
                raise ValueError(
                    f"error_rate.bucket_s ({self.bucket_s}) exceeds window_s ({self.window_s}); "
                    "use a bucket no longer than the window"
                )
            if math.ceil(self.window_s / self.bucket_s) > MAX_BUCKETS:
                raise ValueError(
                    f"error_rate.window_s/bucket_s gives more than {MAX_BUCKETS} buckets; "
                    "use longer buckets"
                )
        if self.last_n is not None and self.min_requests > self.last_n:
            raise ValueError(
                f"error_rate.min_requests ({self.min_requests}) exceeds last_n ({self.last_n}); "
                "the count window could never decide: raise last_n or lower min_requests"
            )
        return self

    @property
    def n_buckets(self) -> int:
        return 0 if self.window_s is None else math.ceil(self.window_s / self.bucket_s)


class ErrorRateDetector:
    """Error share of one (route, model) with trip/recover hysteresis.

    Parameters
    ----------
    config
        Windows and thresholds (:class:`ErrorRateConfig`).
    subject
        Scope copied into every finding, e.g. ``{"route": "checkout", "model": "gpt-4o"}``.

    Feed one call per request: ``update(is_error, at)`` with ``at`` the request's event
    time in epoch seconds. It returns an ``error_rate.high`` finding (critical; score is
    the error share, threshold ``open_threshold``) when the detector trips, an
    ``error_rate.recovered`` finding (info; threshold ``close_threshold``) when it
    recovers, and ``None`` otherwise.

    Examples
    --------
    >>> cfg = ErrorRateConfig(window_s=60, bucket_s=5, last_n=None, min_requests=10,
    ...                       open_threshold=0.5, close_threshold=0.2)
    >>> det = ErrorRateDetector(cfg, {"route": "checkout", "model": "gpt-4o"})
    >>> found = [det.update(is_error=(i % 4 != 0), at=1000.0 + i) for i in range(12)]
    >>> [(i, f.kind) for i, f in enumerate(found) if f]
    [(9, 'error_rate.high')]
    >>> det.tripped, round(det.rate, 2)
    (True, 0.75)
    >>> later = [det.update(is_error=False, at=1100.0 + i) for i in range(10)]
    >>> [(i, f.kind, f.severity) for i, f in enumerate(later) if f]
    [(9, 'error_rate.recovered', 'info')]
    >>> ErrorRateDetector.from_state(det.to_state(), cfg).tripped
    False

    A quiet route (one call every 30 s never fills either window) failing half its calls
    trips on the burst test at its fourth failure:

    >>> quiet = ErrorRateDetector(ErrorRateConfig(), {"route": "assistant-ab", "model": "haiku"})
    >>> [quiet.update(is_error=(i % 200 == 7), at=30.0 * i) for i in range(400)].count(None)
    400
    >>> burst = [quiet.update(is_error=(i % 2 == 0), at=12_000.0 + 30 * i) for i in range(31)]
    >>> [(i, f.kind, f.evidence["window"], f.evidence["burst"]["burst_errors"])
    ...  for i, f in enumerate(burst) if f and not f.evidence["repeat"]]  # then reminders
    [(6, 'error_rate.high', 'burst', 4)]
    """

    def __init__(self, config: ErrorRateConfig, subject: Mapping[str, str]) -> None:
        self.config = config
        self.subject = dict(subject)
        nb = config.n_buckets
        # Ring of buckets: slot i holds absolute bucket number _ids[i] (-1 = empty).
        self._ids = [-1] * nb
        self._req = [0] * nb
        self._err = [0] * nb
        self._bits = 0  # newest outcome in bit 0; 1 = error
        self._filled = 0
        self._watermark = -math.inf
        self._last_at = -math.inf
        self.tripped = False  # either rule
        self.window_tripped = False
        self.burst_tripped = False
        self.burst = ErrorBurstDetector(config.burst)
        self._notified_at = -math.inf

    # -- windows -------------------------------------------------------------------
    def _time_window(self) -> tuple[int, int]:
        if not self._ids:
            return 0, 0
        newest = math.floor(self._watermark / self.config.bucket_s)
        oldest = newest - len(self._ids) + 1
        req = err = 0
        for bid, r, e in zip(self._ids, self._req, self._err, strict=True):
            if oldest <= bid <= newest:
                req += r
                err += e
        return req, err

    def _add_to_time_window(self, is_error: bool, at: float) -> None:
        nb = len(self._ids)
        if nb == 0:
            return
        self._watermark = max(self._watermark, at)
        bid = math.floor(at / self.config.bucket_s)
        if bid <= math.floor(self._watermark / self.config.bucket_s) - nb:
            return  # later than the window: it can no longer change the rate
        slot = bid % nb
        if self._ids[slot] != bid:
            self._ids[slot], self._req[slot], self._err[slot] = bid, 0, 0
        self._req[slot] += 1
        self._err[slot] += int(is_error)

    def _add_to_count_window(self, is_error: bool, at: float) -> None:
        n = self.config.last_n
        if n is None:
            return
        if at - self._last_at > self.config.count_window_max_age_s:
            # A long silence: outcomes from before it say little about the route now.
            self._bits, self._filled = 0, 0
        self._last_at = max(self._last_at, at)
        self._bits = ((self._bits << 1) | int(is_error)) & ((1 << n) - 1)
        self._filled = min(self._filled + 1, n)

    def window(self) -> tuple[str, int, int]:
        """The window that decides now: ``(name, requests, errors)``; name is
        ``"time"``, ``"count"`` or ``"none"`` (too little traffic in both)."""
        req, err = self._time_window()
        if self._ids and req >= self.config.min_requests:
            return "time", req, err
        if self.config.last_n is not None and self._filled >= self.config.min_requests:
            return "count", self._filled, self._bits.bit_count()
        return "none", max(req, self._filled), 0

    @property
    def rate(self) -> float:
        """Error share of the deciding window (0.0 when there is none)."""
        name, req, err = self.window()
        return err / req if name != "none" and req else 0.0

    # -- update --------------------------------------------------------------------
    def update(self, is_error: bool, at: float, retry: bool = False) -> Finding | None:
        """Count one request outcome at event time ``at`` (epoch seconds).

        ``retry``: the call retries a failed one (``attempt > 1``). The windows count it;
        the burst test does not, since a retry of a failure fails far more often than a
        fresh call and pairs of failures would read as a burst to a per-call test.
        """
        self._add_to_time_window(is_error, at)
        self._add_to_count_window(is_error, at)
        burst = None if retry else self.burst.update(is_error)
        name, req, err = self.window()
        rate = err / req if name != "none" and req else 0.0
        cfg = self.config
        if name != "none":
            if rate >= cfg.open_threshold:
                self.window_tripped = True
            elif rate <= cfg.close_threshold:
                self.window_tripped = False
        if burst == "tripped" and name != "time":  # a busy route is the window's to judge
            self.burst_tripped = True
        elif not self.burst.high:
            self.burst_tripped = False
        now = max(self._watermark, self._last_at)
        if not self.tripped and (self.window_tripped or self.burst_tripped):
            self.tripped, self._notified_at = True, now
            return self._decision(HIGH, rate, now, name, req, err, False)
        if self.tripped and not (self.window_tripped or self.burst_tripped):
            self.tripped = False
            return self._decision(RECOVERED, rate, now, name, req, err, False)
        still_high = (name != "none" and rate >= cfg.open_threshold) or (
            self.burst_tripped and self.burst.statistic >= cfg.burst.threshold)
        if self.tripped and cfg.renotify_s is not None and still_high and now - self._notified_at >= cfg.renotify_s:
            self._notified_at = now
            return self._decision(HIGH, rate, now, name, req, err, True)
        return None

    def _decision(self, kind: str, rate: float, at: float, window: str, req: int, err: int,
                  repeat: bool) -> Finding:
        cfg = self.config
        threshold = cfg.open_threshold if kind == HIGH else cfg.close_threshold
        if kind == HIGH and self.burst_tripped and not (window != "none" and rate >= cfg.open_threshold):
            # The burst test decided: its excursion is the evidence, its burst share the bar.
            calls = max(self.burst.excursion_calls, 1)
            return self._finding(kind, self.burst.errors / calls, self.burst.burst_share, at, "burst",
                                 calls, self.burst.errors, repeat)
        return self._finding(kind, rate, threshold, at, window, req, err, repeat)

    def _finding(
        self, kind: str, rate: float, threshold: float, at: float,
        window: str, req: int, err: int, repeat: bool,
    ) -> Finding:
        cfg = self.config
        evidence: dict[str, Any] = {
            "unit": "error_share",
            "window": window,
            "requests": req,
            "errors": err,
            "window_s": cfg.window_s,
            "bucket_s": cfg.bucket_s,
            "last_n": cfg.last_n,
            "min_requests": cfg.min_requests,
            "open_threshold": cfg.open_threshold,
            "close_threshold": cfg.close_threshold,
            "repeat": repeat,
            "config_version": cfg.version,
        }
        if cfg.burst.enabled:
            evidence["burst"] = self.burst.evidence()
        severity = "critical" if kind == HIGH else "info"
        return Finding(kind, dict(self.subject), rate, threshold, at, severity, evidence, DETECTOR)

    # -- state ---------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Compact JSON-serialisable state: non-empty buckets, the count window as hex."""
        live = [i for i, bid in enumerate(self._ids) if bid >= 0]
        return {
            "v": 1,
            "subject": self.subject,
            "bucket_s": self.config.bucket_s,
            "buckets": [[self._ids[i], self._req[i], self._err[i]] for i in live],
            "bits": format(self._bits, "x"),
            "filled": self._filled,
            "watermark": None if math.isinf(self._watermark) else self._watermark,
            "last_at": None if math.isinf(self._last_at) else self._last_at,
            "tripped": self.tripped,
            "window_tripped": self.window_tripped,
            "burst_tripped": self.burst_tripped,
            "burst": self.burst.to_state(),
            "notified_at": None if math.isinf(self._notified_at) else self._notified_at,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: ErrorRateConfig) -> ErrorRateDetector:
        """Rebuild from :meth:`to_state`; buckets are re-slotted for ``config``'s window,
        so a changed window or ``last_n`` keeps what still fits."""
        det = cls(config, state.get("subject", {}))
        wm, last, notified = state.get("watermark"), state.get("last_at"), state.get("notified_at")
        det._watermark = -math.inf if wm is None else float(wm)
        det._last_at = -math.inf if last is None else float(last)
        det._notified_at = -math.inf if notified is None else float(notified)
        nb = len(det._ids)
        # Bucket numbers only mean the same thing under the same bucket width.
        same_width = state.get("bucket_s") == config.bucket_s
        for bid, req, err in state.get("buckets", []) if nb and same_width else []:
            slot = int(bid) % nb
            if int(bid) > det._ids[slot]:
                det._ids[slot], det._req[slot], det._err[slot] = int(bid), int(req), int(err)
        if config.last_n is not None:
            det._bits = int(state.get("bits", "0") or "0", 16) & ((1 << config.last_n) - 1)
            det._filled = min(int(state.get("filled", 0)), config.last_n)
        det.tripped = bool(state.get("tripped", False))
        det.window_tripped = bool(state.get("window_tripped", det.tripped))
        det.burst_tripped = bool(state.get("burst_tripped", False))
        det.burst = ErrorBurstDetector.from_state(state.get("burst") or {}, config.burst)
        return det
