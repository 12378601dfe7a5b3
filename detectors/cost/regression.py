"""Online cost regressions with their cause: a robust CUSUM on log cost, plus attribution.

Log cost per unit (a request, or a successful action) splits *exactly* into additive
drivers, using counterfactual prices (the same tokens priced at a fixed reference price
``p_ref``, and at the price each model identity had when first seen, ``p_base``)::

    log cost = log steps                      agent_steps   (steps per run)
             + log(attempts / steps)          retries
             + log(tokens @ p_ref / attempts) input_tokens + output_tokens
             + log(tokens @ p_base / @ p_ref) model_switch  (model or deployment mix)
             + log(tokens @ price / @ p_base) price_change  (same model, new price)
             + log(own cost / tokens @ price) billing       (reported vs catalog, zero-cost)
             + log(cost / own cost)           failures      (failed runs carried in)

The CUSUM (:class:`~detectors.cost.cusum.RobustCusum`) decides *whether* cost moved; the
mean of each driver over the alarming chart's segment (since it last sat at zero, the
CUSUM change-point estimate) minus its baseline says *which* driver moved. The input and
output token split uses baseline cost shares. A driver "explains" the change when its
shift is at least ``driver_share_min`` of the total; the largest is ``evidence.driver``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from detectors.cost.config import RegressionConfig
from detectors.cost.cusum import RobustCusum
from detectors.cost.values import ChangeEvent, CostUnit, TokenPrice, events_near, safe_log
from detectors.findings import Finding

DRIVERS = ("agent_steps", "retries", "input_tokens", "output_tokens", "model_switch",
           "price_change", "billing", "failures")
# Tracked statistics: log cost, the additive drivers (tokens as one), and two auxiliaries
# that split tokens into input and output.
_STATS = ("log_cost", "agent_steps", "retries", "tokens", "model_switch", "price_change",
          "billing", "failures", "log_input", "log_output", "input_share")
_N = len(_STATS)
_DEFAULT_REF = TokenPrice(1.0, 4.0, 0.5)  # only weights tokens when nothing is priced
_MAX_IDENTITIES = 32


def _lr(a: float, b: float) -> float:
    return math.log(a / b) if a > 0 and b > 0 else 0.0


class CostRegressionDetector:
    """Detect a rise in log cost per request or per successful action, and name its driver.

    Parameters
    ----------
    scope
        Labels of the key this instance watches, e.g. ``{"route": "chat"}``; the finding's
        subject is the scope plus ``metric``.
    metric
        ``"cost_per_request"`` or ``"cost_per_successful_action"`` (a label).
    config
        CUSUM and attribution settings (``budgets.yaml`` ``regression:``).
    config_version
        Stored with every finding.

    ``update(unit, events=())`` returns a ``cost.regression`` finding or ``None``; pass
    the recent change ledger as ``events`` to have the ones near the change named.

    >>> import random
    >>> from detectors.cost.values import CostUnit, ModelUsage, TokenPrice
    >>> rng, p = random.Random(7), TokenPrice(2.5, 10.0, 1.25)
    >>> det = CostRegressionDetector({"route": "chat"})
    >>> def unit(t, grow=1.0):
    ...     u = ModelUsage("openai/gpt-4o", 2000 * grow * rng.lognormvariate(0, 0.5), 0.0,
    ...                    300 * rng.lognormvariate(0, 0.5), p)
    ...     return CostUnit(at=t, cost_usd=u.cost_at(p), usage=(u,))
    >>> [det.update(unit(t)) for t in range(3000)].count(None)
    3000
    >>> found = next(f for t in range(3000, 5000) if (f := det.update(unit(t, grow=1.5))))
    >>> found.evidence["driver"], found.at - 3000 < 300
    ('input_tokens', True)
    """

    def __init__(self, scope: Mapping[str, str], metric: str = "cost_per_request",
                 config: RegressionConfig | None = None, config_version: str = "") -> None:
        self.scope, self.metric = dict(scope), metric
        self.config = config or RegressionConfig()
        self.config_version = config_version
        c = self.config
        self.cusum = RobustCusum(ks=c.ks, arl0=c.arl0, clip=c.clip, warmup=c.warmup,
                                 half_life=c.half_life, two_sided=c.two_sided)
        self.base_mean = [0.0] * _N
        self.base_sq = [0.0] * _N
        self.base_n = 0
        n_charts = len(c.ks) * (2 if c.two_sided else 1)
        self.seg_sum = [[0.0] * _N for _ in range(n_charts)]
        self.seg_n = [0] * n_charts
        self.seg_start = [0.0] * n_charts
        self.p_ref: TokenPrice | None = None
        # identity -> [baseline TokenPrice or None, first seen at, last seen at]
        self.identities: dict[str, list[Any]] = {}
        self.alarms = 0
        self.suppressed = 0

    def _stats(self, unit: CostUnit) -> list[float]:
        if self.p_ref is None:
            first = next((u.price for u in unit.usage if u.price is not None), None)
            self.p_ref = first or _DEFAULT_REF
        ref = ref_in = model = priced = 0.0
        for u in unit.usage:
            ident = self.identities.get(u.identity)
            if ident is None:
                ident = self._remember(u.identity, u.price, unit.at)
            ident[2] = unit.at
            if ident[0] is None and u.price is not None:
                ident[0] = u.price  # first price seen since the last (re)baseline
            base = ident[0] or self.p_ref
            now = u.price or base
            r_in = u.input_cost_at(self.p_ref)
            ref_in += r_in
            ref += r_in + u.output_cost_at(self.p_ref)
            model += u.cost_at(base)
            priced += u.cost_at(now)
        ref_out = ref - ref_in
        steps, attempts = max(1, unit.steps), max(1, unit.attempts, unit.steps)
        own = unit.cost_usd if unit.own_cost_usd is None else unit.own_cost_usd
        log_cost = safe_log(unit.cost_usd)
        tokens = safe_log(ref) - math.log(attempts)
        parts = [math.log(steps), math.log(attempts / steps), tokens, _lr(model, ref),
                 _lr(priced, model), 0.0, _lr(unit.cost_usd, own)]
        parts[5] = log_cost - sum(parts)  # billing: what prices and tokens do not explain
        return [log_cost, *parts, safe_log(ref_in) - math.log(attempts),
                safe_log(ref_out) - math.log(attempts), ref_in / ref if ref > 0 else 0.5]

    def _remember(self, identity: str, price: TokenPrice | None, at: float) -> list[Any]:
        if len(self.identities) >= _MAX_IDENTITIES:
            oldest = min(self.identities, key=lambda k: self.identities[k][2])
            del self.identities[oldest]
        entry: list[Any] = [price, at, at]
        self.identities[identity] = entry
        return entry

    def update(self, unit: CostUnit, events: Sequence[ChangeEvent] = ()) -> Finding | None:
        """Add one unit; return a ``cost.regression`` finding when cost has moved."""
        x = self._stats(unit)
        learning = not self.cusum.warmed_up or not self.cusum.suspicious
        fired = self.cusum.update(x[0])
        if learning:
            self._learn(x)
        charts = self.cusum.up + (self.cusum.down if self.config.two_sided else [])
        for i, stat in enumerate(charts):
            if stat <= 0.0:
                self.seg_n[i] = 0
                continue
            if self.seg_n[i] == 0:
                self.seg_sum[i] = [0.0] * _N
                self.seg_start[i] = unit.at
            self.seg_n[i] += 1
            seg = self.seg_sum[i]
            for j in range(_N):
                seg[j] += x[j]
        if not fired:
            return None
        return self._alarm(unit, events)

    def _learn(self, x: list[float]) -> None:
        self.base_n += 1
        a = max(1.0 / self.base_n, 1.0 - 0.5 ** (1.0 / self.config.half_life))
        for j in range(_N):
            self.base_mean[j] += a * (x[j] - self.base_mean[j])
            self.base_sq[j] += a * (x[j] * x[j] - self.base_sq[j])

    def _alarm(self, unit: CostUnit, events: Sequence[ChangeEvent]) -> Finding | None:
        c = self.cusum
        chart = c.alarm_chart + (len(c.ks) if c.alarm_direction < 0 else 0)
        n = max(1, self.seg_n[chart])
        seg_mean = [s / n for s in self.seg_sum[chart]]
        shift = [m - b for m, b in zip(seg_mean, self.base_mean, strict=True)]
        total = shift[0]
        stat, limit = (c.up if c.alarm_direction > 0 else c.down)[c.alarm_chart], c.hs[c.alarm_chart]
        relative = math.expm1(total)
        if abs(relative) < self.config.min_relative_shift or total * c.alarm_direction <= 0:
            self.suppressed += 1  # significant but too small to matter: start over quietly
            c.restart(0.0)
            self.seg_n = [0] * len(self.seg_n)
            return None
        contrib = self._attribute(shift)
        sign = 1.0 if total > 0 else -1.0
        ranked = sorted(contrib, key=lambda d: -sign * contrib[d])
        explaining = [d for d in ranked
                      if sign * contrib[d] >= self.config.driver_share_min * abs(total)][:3]
        started = self.seg_start[chart]
        new_models = sorted(k for k, v in self.identities.items() if v[1] >= started)
        subject = {**self.scope, "metric": self.metric}
        near = [e for e in events_near(events, started, self.config.events_window_s, self.scope)
                if e.at <= unit.at]
        sd = [math.sqrt(max(sq - m * m, 0.0)) for sq, m in zip(self.base_sq, self.base_mean,
                                                                strict=True)]
        finding = Finding(
            kind="cost.regression", subject=subject, score=stat, threshold=limit, at=unit.at,
            severity="critical" if relative >= self.config.critical_relative_shift else "warning",
            evidence={
                "direction": "up" if total > 0 else "down",
                "driver": explaining[0] if explaining else ranked[0],
                "drivers": explaining or ranked[:1],
                "driver_shifts": {d: round(v, 4) for d, v in contrib.items()},
                "driver_shares": {d: round(v / total, 3) for d, v in contrib.items()},
                "driver_z": self._driver_z(shift, sd, n),
                "relative_change": relative, "log_shift": total,
                "baseline_cost_usd": math.exp(self.base_mean[0]),
                "recent_cost_usd": math.exp(seg_mean[0]),
                "change_started_at": started, "units_since_change": n,
                "chart_k": c.ks[c.alarm_chart], "new_models": new_models[:5],
                "events": [e.to_dict() for e in near[:10]], "unit": "log USD",
                "config_version": self.config_version,
            },
            detector="CostRegressionDetector",
        )
        self._rebase(seg_mean, total)
        self.alarms += 1
        return finding

    def _attribute(self, shift: list[float]) -> dict[str, float]:
        s = dict(zip(_STATS, shift, strict=True))
        w_in = min(1.0, max(0.0, self.base_mean[_STATS.index("input_share")]))
        raw_in, raw_out = w_in * s["log_input"], (1 - w_in) * s["log_output"]
        rest = s["tokens"] - raw_in - raw_out  # split what the shares miss by the same shares
        return {
            "agent_steps": s["agent_steps"], "retries": s["retries"],
            "input_tokens": raw_in + w_in * rest, "output_tokens": raw_out + (1 - w_in) * rest,
            "model_switch": s["model_switch"], "price_change": s["price_change"],
            "billing": s["billing"], "failures": s["failures"],
        }

    def _driver_z(self, shift: list[float], sd: list[float], n: int) -> dict[str, float]:
        out = {}
        for name in ("agent_steps", "retries", "log_input", "log_output", "model_switch",
                     "price_change", "failures"):
            j = _STATS.index(name)
            out[name] = round(shift[j] / (sd[j] / math.sqrt(n)), 2) if sd[j] > 1e-9 else 0.0
        return out

    def _rebase(self, seg_mean: list[float], total: float) -> None:
        """The new level is the new normal: move the references and learn again."""
        self.cusum.restart(total)
        var = [max(sq - b * b, 0.0) for sq, b in zip(self.base_sq, self.base_mean, strict=True)]
        self.base_mean = list(seg_mean)
        self.base_sq = [m * m + v for m, v in zip(seg_mean, var, strict=True)]
        self.base_n = self.cusum.init_n
        self.seg_n = [0] * len(self.seg_n)
        for v in self.identities.values():  # today's prices become each model's baseline
            v[0] = None

    def to_state(self) -> dict[str, Any]:
        """Reference, charts, driver baselines and segments (a few hundred numbers)."""
        return {
            "cusum": self.cusum.to_state(), "base_mean": self.base_mean, "base_sq": self.base_sq,
            "base_n": self.base_n, "seg_sum": self.seg_sum, "seg_n": self.seg_n,
            "seg_start": self.seg_start, "p_ref": self.p_ref.as_list() if self.p_ref else None,
            "identities": {k: [v[0].as_list() if v[0] else None, v[1], v[2]]
                           for k, v in self.identities.items()},
            "alarms": self.alarms, "suppressed": self.suppressed,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: RegressionConfig | None = None, *,
                   scope: Mapping[str, str], metric: str = "cost_per_request",
                   config_version: str = "") -> CostRegressionDetector:
        det = cls(scope, metric, config, config_version)
        det.cusum.load_state(state["cusum"])
        det.base_mean, det.base_sq = list(state["base_mean"]), list(state["base_sq"])
        det.base_n = int(state["base_n"])
        if len(state["seg_n"]) == len(det.seg_n):
            det.seg_sum = [list(s) for s in state["seg_sum"]]
            det.seg_n, det.seg_start = list(state["seg_n"]), list(state["seg_start"])
        det.p_ref = TokenPrice(*state["p_ref"]) if state.get("p_ref") else None
        det.identities = {k: [TokenPrice(*v[0]) if v[0] else None, v[1], v[2]]
                          for k, v in state["identities"].items()}
        det.alarms, det.suppressed = int(state["alarms"]), int(state["suppressed"])
        return det
