"""Price every call from the catalog, check what callers reported, flag what has no price.

One :class:`CostAccountant` per worker (or per partition); its only state is a small
rate limiter so an unpriced model or a stale catalog gives one finding per model per
``realert_s``, not one per trace.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from detectors.cost.prices import PriceCatalog
from detectors.cost.values import CostSample, ModelUsage
from detectors.findings import Finding

_MAX_TRACKED_MODELS = 1024


@dataclass(frozen=True, slots=True)
class Costing:
    """The cost of one call and how it was established.

    ``cost_usd`` is what the call is charged in cost metrics: the reported cost when the
    caller gave one (what the provider bills), else the catalog's; ``None`` when neither
    is known (an unpriced model with no reported cost).
    """

    cost_usd: float | None
    computed_usd: float | None
    usage: ModelUsage
    price_key: str | None
    findings: tuple[Finding, ...] = ()


class CostAccountant:
    """Compute cost per call from a :class:`PriceCatalog`; report mismatches and unpriced models.

    Parameters
    ----------
    catalog
        The price catalog; its ``version`` goes into every finding.
    rel_tolerance
        Reported and computed cost may differ by this fraction of the computed cost
        (providers round, and bill cache writes we may not see) before it is a finding.
    abs_tolerance_usd
        ... or by this many dollars, whichever is larger (sub-cent rounding).
    realert_s
        At most one finding per (kind, provider, model) per this many seconds of event
        time; the finding counts what it stands for.

    Findings: ``cost.unpriced_model`` (no catalog entry covers the model at that time)
    and ``cost.reported_mismatch`` (score = relative difference).

    >>> from detectors.cost.prices import PriceCatalog
    >>> cat = PriceCatalog.model_validate({"version": "p1", "entries": [
    ...     {"provider": "openai", "model": "gpt-4o*", "input_per_mtok": 2.5,
    ...      "output_per_mtok": 10.0, "cached_input_per_mtok": 1.25, "effective_from": "2024-01-01"}]})
    >>> acc = CostAccountant(cat)
    >>> s = CostSample(at=1.75e9, tenant="t", application="a", route="r", provider="openai",
    ...                request_model="gpt-4o", input_tokens=10_000, cached_input_tokens=4_000,
    ...                output_tokens=1_000, reported_cost_usd=0.05)
    >>> c = acc.account(s)
    >>> round(c.computed_usd, 6), c.findings[0].kind
    (0.03, 'cost.reported_mismatch')
    """

    def __init__(
        self,
        catalog: PriceCatalog,
        *,
        rel_tolerance: float = 0.05,
        abs_tolerance_usd: float = 1e-5,
        realert_s: float = 3600.0,
    ) -> None:
        if rel_tolerance < 0 or abs_tolerance_usd < 0:
            raise ValueError("CostAccountant: rel_tolerance and abs_tolerance_usd must be >= 0")
        self.catalog = catalog
        self.rel_tolerance = rel_tolerance
        self.abs_tolerance_usd = abs_tolerance_usd
        self.realert_s = realert_s
        # (kind, provider, model) -> [last emitted at, occurrences since]
        self._last: OrderedDict[str, list[float]] = OrderedDict()

    def account(self, sample: CostSample) -> Costing:
        """Price one call. Never raises on unknown models or odd counts."""
        entry = self.catalog.lookup(sample.provider, sample.model, sample.at)
        if entry is None and sample.response_model and sample.response_model != sample.request_model:
            entry = self.catalog.lookup(sample.provider, sample.request_model, sample.at)
        cached = max(0, min(sample.cached_input_tokens, sample.input_tokens)) \
            if (entry is None or entry.cached_included_in_input) else max(0, sample.cached_input_tokens)
        uncached = max(0, sample.input_tokens - cached) \
            if (entry is None or entry.cached_included_in_input) else max(0, sample.input_tokens)
        price = entry.price if entry is not None else None
        usage = ModelUsage(sample.identity, float(uncached), float(cached),
                           float(max(0, sample.output_tokens)), price)
        findings: list[Finding] = []
        computed = usage.cost_at(price) if price is not None else None
        reported = sample.reported_cost_usd
        if computed is None:
            f = self._limited("cost.unpriced_model", sample, score=1.0, threshold=0.0, evidence={
                "reported_cost_usd": reported, "route": sample.route, "tenant": sample.tenant,
            })
            if f is not None:
                findings.append(f)
        elif reported is not None:
            diff = abs(reported - computed)
            if diff > max(self.abs_tolerance_usd, self.rel_tolerance * computed):
                rel = diff / computed if computed > 0 else float("inf")
                f = self._limited("cost.reported_mismatch", sample, score=min(rel, 1e9),
                                  threshold=self.rel_tolerance, evidence={
                                      "reported_cost_usd": reported, "computed_cost_usd": computed,
                                      "price_key": entry.key if entry else None,
                                      "route": sample.route, "tenant": sample.tenant,
                                      "trace_id": sample.trace_id,
                                  })
                if f is not None:
                    findings.append(f)
        cost = reported if reported is not None else computed
        return Costing(cost, computed, usage, entry.key if entry else None, tuple(findings))

    def _limited(self, kind: str, sample: CostSample, *, score: float, threshold: float,
                 evidence: dict[str, Any]) -> Finding | None:
        key = f"{kind}|{sample.provider}|{sample.model}"
        last = self._last.get(key)
        if last is not None and sample.at - last[0] < self.realert_s:
            last[1] += 1
            return None
        count = 1 + (int(last[1]) if last is not None else 0)
        self._last[key] = [sample.at, 0.0]
        self._last.move_to_end(key)
        while len(self._last) > _MAX_TRACKED_MODELS:
            self._last.popitem(last=False)
        return Finding(
            kind=kind,
            subject={"provider": sample.provider, "model": sample.model},
            score=float(score),
            threshold=float(threshold),
            at=sample.at,
            severity="warning",
            evidence={**evidence, "occurrences": count, "realert_s": self.realert_s,
                      "config_version": self.catalog.version},
            detector="CostAccountant",
        )

    def to_state(self) -> dict[str, Any]:
        """The rate limiter's memory (JSON-serialisable)."""
        return {"last": [[k, v[0], v[1]] for k, v in self._last.items()]}

    @classmethod
    def from_state(cls, state: dict[str, Any], catalog: PriceCatalog, **kwargs: Any) -> CostAccountant:
        acc = cls(catalog, **kwargs)
        for key, at, n in state.get("last", []):
            acc._last[key] = [float(at), float(n)]
        return acc
