"""Spend budgets with multiwindow, multi-burn-rate alerts (Google SRE workbook, ch. 5).

Burn rate = spend rate / budget rate, where budget rate = ``amount_usd`` / period length.
A rule fires when the burn rate over its long window *and* its short window are both at
least ``burn_rate``: the long window proves the spend is significant, the short one that
it is still happening (so the alert clears soon after the spend stops).

Spend is kept in event-time buckets: one-minute buckets for windows up to 6 h and one-hour
buckets beyond, each in a ring with running window sums, so an update costs a few
additions and the state is a few hundred numbers. A window of ``w`` covers the buckets
``(now - w, now]`` by bucket index, i.e. the current partial bucket plus the full ones
before it; its rate is its spend divided by ``w``.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.cost.config import WORKBOOK_RULES, BudgetSpec, BurnRule, period_bounds
from detectors.findings import Finding

FINE_BUCKET_S = 60.0
COARSE_BUCKET_S = 3600.0
FINE_HORIZON_S = 6 * 3600.0


class WindowedSums:
    """Running sums of amounts over several trailing windows of whole buckets (event time).

    >>> w = WindowedSums(bucket_s=60, windows=[5, 60])     # 5 min and 1 h, in buckets
    >>> for minute in range(120):
    ...     _ = w.add(minute * 60.0, 1.0)
    >>> w.sums
    [5.0, 60.0]
    """

    def __init__(self, bucket_s: float, windows: list[int]) -> None:
        self.bucket_s = bucket_s
        self.windows = list(windows)
        self.n = max(windows)
        self.ring = [0.0] * self.n
        self.sums = [0.0] * len(windows)
        self.head: int | None = None

    def add(self, at: float, amount: float) -> bool:
        """Add ``amount`` at time ``at``; ``False`` when it is older than the ring holds."""
        b = int(math.floor(at / self.bucket_s))
        self.advance_to(b)
        assert self.head is not None
        if b <= self.head - self.n:
            return False
        self.ring[b % self.n] += amount
        for i, w in enumerate(self.windows):
            if b > self.head - w:
                self.sums[i] += amount
        return True

    def advance_to(self, b: int) -> None:
        if self.head is None:
            self.head = b
            return
        if b <= self.head:
            return
        if b - self.head >= self.n:
            self.ring = [0.0] * self.n
            self.sums = [0.0] * len(self.windows)
            self.head = b
            return
        for new in range(self.head + 1, b + 1):
            for i, w in enumerate(self.windows):
                self.sums[i] -= self.ring[(new - w) % self.n]
            self.ring[new % self.n] = 0.0
            if new % self.n == 0:  # re-add exactly now and then: no float drift
                self.head = new
                self._resum()
        self.head = b

    def _resum(self) -> None:
        assert self.head is not None
        for i, w in enumerate(self.windows):
            self.sums[i] = math.fsum(self.ring[(self.head - j) % self.n] for j in range(w))

    def to_state(self) -> dict[str, Any]:
        assert self.head is not None or not any(self.ring)
        cells = [] if self.head is None else [
            [self.head - j, self.ring[(self.head - j) % self.n]]
            for j in range(self.n) if self.ring[(self.head - j) % self.n]]
        return {"head": self.head, "cells": cells}

    def load_state(self, state: dict[str, Any]) -> None:
        self.head = state["head"]
        self.ring = [0.0] * self.n
        for b, v in state["cells"]:
            self.ring[int(b) % self.n] = float(v)
        if self.head is not None:
            self._resum()


class BurnRateBudget:
    """One budget's spend, burn-rate alerts and exhaustion, in event time.

    Parameters
    ----------
    budget
        The budget (scope, amount in USD, period, what exhaustion does).
    rules
        Burn-rate rules; default: the SRE workbook's 1 h/5 m at 14.4 and 6 h/30 m at 6
        (page), 1 d/2 h at 3 and 3 d/6 h at 1 (ticket). Windows up to 6 h must be whole
        minutes, longer ones whole hours.
    config_version
        Version of the budgets file, stored with every finding.

    ``update(at, cost_usd)`` returns the findings it caused: ``cost.budget_burn`` when a
    rule starts firing (page -> critical, ticket -> warning; again only after it cleared)
    and ``cost.budget_exhausted`` once per period when spend reaches the amount, with
    ``evidence["breaker"]`` true when ``on_exhaustion`` is ``breaker``.

    >>> from detectors.cost.config import BudgetSpec
    >>> b = BurnRateBudget(BudgetSpec(id="acme", scope={"tenant": "acme"}, amount_usd=1440.0,
    ...                               period="day", on_exhaustion="breaker"))
    >>> # budget rate: 1 USD/min; spend 20 USD/min for an hour = burn rate 20
    >>> found = [f for m in range(60) for f in b.update(m * 60.0, 20.0)]
    >>> [(f.kind, f.severity, f.evidence["long_window_s"]) for f in found]
    [('cost.budget_burn', 'critical', 3600.0)]
    >>> round(b.burn_rate(3600.0), 1), b.spent_usd
    (20.0, 1200.0)
    """

    def __init__(self, budget: BudgetSpec, rules: tuple[BurnRule, ...] = WORKBOOK_RULES,
                 config_version: str = "") -> None:
        self.budget, self.rules, self.config_version = budget, tuple(rules), config_version
        fine, coarse = set(), set()
        for r in self.rules:
            for w in (r.long_window, r.short_window):
                if w <= FINE_HORIZON_S:
                    _require_multiple(w, FINE_BUCKET_S, "minute", budget.id)
                    fine.add(int(w // FINE_BUCKET_S))
                else:
                    _require_multiple(w, COARSE_BUCKET_S, "hour", budget.id)
                    coarse.add(int(w // COARSE_BUCKET_S))
        self._fine = WindowedSums(FINE_BUCKET_S, sorted(fine)) if fine else None
        self._coarse = WindowedSums(COARSE_BUCKET_S, sorted(coarse)) if coarse else None
        self.period_start = self.period_end = float("-inf")
        self.spent_usd = 0.0
        self.exhausted = False
        self.firing: set[int] = set()   # indexes of rules currently firing
        self.late = 0                   # spend older than the period or the rings

    @property
    def breaker_open(self) -> bool:
        """The scope should be stopped: budget exhausted and the policy says breaker."""
        return self.exhausted and self.budget.on_exhaustion == "breaker"

    def budget_rate(self) -> float:
        """Budget per second in the current period (USD/s)."""
        length = self.period_end - self.period_start
        return self.budget.amount_usd / length if math.isfinite(length) else 0.0

    def spend(self, window_s: float) -> float:
        """Spend in the trailing window (USD)."""
        ring = self._fine if window_s <= FINE_HORIZON_S else self._coarse
        if ring is None:
            raise ValueError(f"budget {self.budget.id}: no rule uses a {window_s:g} s window")
        bucket = FINE_BUCKET_S if ring is self._fine else COARSE_BUCKET_S
        return ring.sums[ring.windows.index(int(window_s // bucket))]

    def burn_rate(self, window_s: float) -> float:
        rate = self.budget_rate()
        return self.spend(window_s) / window_s / rate if rate > 0 else 0.0

    def update(self, at: float, cost_usd: float) -> list[Finding]:
        """Charge ``cost_usd`` at event time ``at``; return new findings."""
        if at >= self.period_end:
            self.period_start, self.period_end = period_bounds(self.budget.period, at)
            self.spent_usd, self.exhausted = 0.0, False
        cost = max(0.0, float(cost_usd))
        kept = all([ring.add(at, cost) for ring in (self._fine, self._coarse) if ring is not None])
        if at >= self.period_start:
            self.spent_usd += cost
        if at < self.period_start or not kept:
            self.late += 1
        found = self._check_burn(at)
        if not self.exhausted and self.spent_usd >= self.budget.amount_usd:
            self.exhausted = True
            found.append(self._finding("cost.budget_exhausted", at, self.spent_usd,
                                       self.budget.amount_usd, "critical", {
                                           "breaker": self.budget.on_exhaustion == "breaker",
                                           "period_start": self.period_start,
                                           "period_end": self.period_end}))
        return found

    def _check_burn(self, at: float) -> list[Finding]:
        found = []
        for i, rule in enumerate(self.rules):
            long_b, short_b = self.burn_rate(rule.long_window), self.burn_rate(rule.short_window)
            if long_b >= rule.burn_rate and short_b >= rule.burn_rate:
                if i not in self.firing:
                    self.firing.add(i)
                    found.append(self._burn_finding(at, rule, long_b, short_b))
            else:
                self.firing.discard(i)
        return found

    def _burn_finding(self, at: float, rule: BurnRule, long_b: float, short_b: float) -> Finding:
        spend_rate = self.spend(rule.long_window) / rule.long_window
        left = self.budget.amount_usd - self.spent_usd
        eta = at + left / spend_rate if spend_rate > 0 and left > 0 else at
        return self._finding("cost.budget_burn", at, min(long_b, short_b), rule.burn_rate,
                             "critical" if rule.severity == "page" else "warning", {
                                 "alert": rule.severity, "burn_rate_long": long_b,
                                 "burn_rate_short": short_b,
                                 "long_window_s": rule.long_window,
                                 "short_window_s": rule.short_window,
                                 "spend_long_usd": self.spend(rule.long_window),
                                 "spend_short_usd": self.spend(rule.short_window),
                                 "projected_exhaustion_at": min(eta, 1e12)})

    def _finding(self, kind: str, at: float, score: float, threshold: float, severity: str,
                 extra: dict[str, Any]) -> Finding:
        return Finding(kind=kind, subject={**self.budget.scope, "budget": self.budget.id},
                       score=float(score), threshold=float(threshold), at=at, severity=severity,
                       evidence={**extra, "budget_usd": self.budget.amount_usd,
                                 "period": self.budget.period, "period_spent_usd": self.spent_usd,
                                 "config_version": self.config_version},
                       detector="BurnRateBudget")

    def to_state(self) -> dict[str, Any]:
        """Buckets (sparse), period spend and alert latches (JSON-serialisable)."""
        return {
            "fine": self._fine.to_state() if self._fine else None,
            "coarse": self._coarse.to_state() if self._coarse else None,
            "period": [self.period_start, self.period_end] if math.isfinite(self.period_start)
            else None,
            "spent": self.spent_usd, "exhausted": self.exhausted,
            "firing": sorted(self.firing), "late": self.late,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], budget: BudgetSpec,
                   rules: tuple[BurnRule, ...] = WORKBOOK_RULES,
                   config_version: str = "") -> BurnRateBudget:
        b = cls(budget, rules, config_version)
        if b._fine is not None and state.get("fine"):
            b._fine.load_state(state["fine"])
        if b._coarse is not None and state.get("coarse"):
            b._coarse.load_state(state["coarse"])
        if state.get("period"):
            b.period_start, b.period_end = (float(x) for x in state["period"])
        b.spent_usd, b.exhausted = float(state["spent"]), bool(state["exhausted"])
        b.firing = {i for i in state.get("firing", []) if i < len(b.rules)}
        b.late = int(state.get("late", 0))
        return b


def _require_multiple(window: float, bucket: float, unit: str, budget_id: str) -> None:
    if window < bucket or abs(window / bucket - round(window / bucket)) > 1e-9:
        raise ValueError(
            f"budget {budget_id}: burn window {window:g} s must be a whole number of {unit}s "
            f"({bucket:g} s); windows up to {FINE_HORIZON_S / 3600:g} h count in minutes, "
            "longer ones in hours"
        )
