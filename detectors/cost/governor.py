"""One object that runs every cost detector over a stream of :class:`CostSample` values.

The worker may use the pieces separately (one Faust table per detector key) or this
composition, which is what tests, benchmarks and ``warden replay`` drive:

* runs: calls are grouped into agent runs by :class:`AgentRunAggregator`; both
  regression detectors take one observation per closed run, because the calls of one
  run share their prompt and are not independent;
* cost per request (the run's mean cost per call, every run): one
  :class:`CostRegressionDetector` per ``request_key`` (default route and requested
  model: sees prompt growth, output growth, price changes and snapshot or deployment
  switches behind a model name);
* cost per successful action (successful runs, failed work carried in): one detector per
  ``action_key`` (default route and run shape: also sees agent loops, retries, failures,
  and switches of the requested model, which move traffic to a new per-model key);
* budgets: one :class:`BurnRateBudget` per budget of the policy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from detectors.cost.accounting import CostAccountant
from detectors.cost.budgets import BurnRateBudget
from detectors.cost.config import CostPolicy
from detectors.cost.prices import PriceCatalog
from detectors.cost.regression import CostRegressionDetector
from detectors.cost.runs import AgentRunAggregator, RunSummary
from detectors.cost.values import ChangeEvent, CostSample
from detectors.findings import Finding

KeyFn = Callable[[RunSummary], tuple[tuple[str, str], ...]]


def run_shape(run: RunSummary) -> str:
    """``"single"`` for a one-step run (a plain request and its retries), else ``"agent"``.

    Keys split by shape because the two cost an order of magnitude apart: mixed in one
    stream, the spread between them hides a change that touches only agent runs.
    """
    return "single" if run.steps <= 1 else "agent"


def by_route_and_model(run: RunSummary) -> tuple[tuple[str, str], ...]:
    return (("route", run.route), ("model", run.request_model))


def by_route_model_shape(run: RunSummary) -> tuple[tuple[str, str], ...]:
    return (("route", run.route), ("model", run.request_model), ("runs", run_shape(run)))


def by_route_shape(run: RunSummary) -> tuple[tuple[str, str], ...]:
    return (("route", run.route), ("runs", run_shape(run)))


class CostGovernor:
    """Accounting, run aggregation, regressions and budgets for a stream of calls.

    Parameters
    ----------
    catalog, policy
        Price catalog and cost policy (``prices.yaml``, ``budgets.yaml``).
    request_key, action_key
        Scope of the per-request and per-action regression detectors.

    ``update(sample, events=())`` returns every finding the call caused;
    ``drain_runs()`` hands over the :class:`RunSummary` of runs closed since the last call
    (the newest 10,000 at most), e.g. for an analytics table of cost per run.

    >>> from detectors.cost.prices import PriceCatalog
    >>> from detectors.cost.config import CostPolicy
    >>> cat = PriceCatalog(version="p1", entries=[{"provider": "openai", "model": "gpt-4o",
    ...     "input_per_mtok": 2.5, "output_per_mtok": 10.0, "effective_from": "2024-01-01"}])
    >>> gov = CostGovernor(cat, CostPolicy(version="b1", budgets=[
    ...     {"id": "acme", "scope": {"tenant": "acme"}, "amount_usd": 1.0, "period": "day",
    ...      "on_exhaustion": "breaker"}]))
    >>> s = CostSample(at=1.75e9, tenant="acme", application="a", route="chat",
    ...                provider="openai", request_model="gpt-4o", input_tokens=200_000,
    ...                output_tokens=60_000, trace_id="t1", span_id="s1")
    >>> [(f.kind, f.evidence.get("breaker")) for f in gov.update(s)]
    [('cost.budget_burn', None), ('cost.budget_exhausted', True)]
    """

    def __init__(self, catalog: PriceCatalog, policy: CostPolicy, *,
                 request_key: KeyFn = by_route_and_model,
                 action_key: KeyFn = by_route_shape) -> None:
        self.catalog, self.policy = catalog, policy
        self.request_key, self.action_key = request_key, action_key
        a = policy.accounting
        self.accountant = CostAccountant(catalog, rel_tolerance=a.rel_tolerance,
                                         abs_tolerance_usd=a.abs_tolerance_usd,
                                         realert_s=a.realert_s)
        r = policy.runs
        self.runs = AgentRunAggregator(r.idle_timeout_s, r.max_open_runs, r.close_on_final_answer)
        self.per_request: dict[tuple[tuple[str, str], ...], CostRegressionDetector] = {}
        self.per_action: dict[tuple[tuple[str, str], ...], CostRegressionDetector] = {}
        self.budgets: dict[str, BurnRateBudget] = {}
        self.runs_closed: deque[RunSummary] = deque(maxlen=10_000)
        self.unknown_cost = 0

    def _detector(self, table: dict[tuple[tuple[str, str], ...], CostRegressionDetector],
                  key: tuple[tuple[str, str], ...], metric: str) -> CostRegressionDetector:
        det = table.get(key)
        if det is None:
            det = table[key] = CostRegressionDetector(
                dict(key), metric, self.policy.regression, self.policy.version)
        return det

    def update(self, sample: CostSample, events: Sequence[ChangeEvent] = ()) -> list[Finding]:
        """Account one call and feed every detector it concerns."""
        costing = self.accountant.account(sample)
        found = list(costing.findings)
        if costing.cost_usd is None:
            self.unknown_cost += 1
        else:
            for budget in self.policy.budgets_for(sample.tenant, sample.application, sample.route):
                b = self.budgets.get(budget.id)
                if b is None:
                    b = self.budgets[budget.id] = BurnRateBudget(
                        budget, self.policy.rules_for(budget), self.policy.version)
                found.extend(b.update(sample.at, costing.cost_usd))
        for run in self.runs.update(sample, costing):
            found.extend(self._on_run(run, events))
        return found

    def _on_run(self, run: RunSummary, events: Sequence[ChangeEvent]) -> list[Finding]:
        self.runs_closed.append(run)
        found = []
        if run.attempts > run.unpriced_calls:  # some cost is known
            det = self._detector(self.per_request, self.request_key(run), "cost_per_request")
            found.append(det.update(run.request_unit(), events))
        unit = run.unit()
        if unit is not None:
            det = self._detector(self.per_action, self.action_key(run), "cost_per_successful_action")
            found.append(det.update(unit, events))
        return [f for f in found if f is not None]

    def drain_runs(self) -> list[RunSummary]:
        out = list(self.runs_closed)
        self.runs_closed.clear()
        return out

    def flush(self, events: Sequence[ChangeEvent] = ()) -> list[Finding]:
        """Close every open run (end of a replay)."""
        return [f for run in self.runs.flush() for f in self._on_run(run, events)]

    def to_state(self, include_open_runs: bool = True) -> dict[str, Any]:
        """Everything, JSON-serialisable (keys flattened to lists); without the open agent
        runs when ``include_open_runs`` is false (they are the bulk: a checkpoint stores
        them incrementally, see ``AgentRunAggregator.take_delta``)."""
        return {
            "accountant": self.accountant.to_state(), "runs": self.runs.to_state(include_open_runs),
            "per_request": [[list(k), d.to_state()] for k, d in self.per_request.items()],
            "per_action": [[list(k), d.to_state()] for k, d in self.per_action.items()],
            "budgets": {k: b.to_state() for k, b in self.budgets.items()},
            "unknown_cost": self.unknown_cost,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], catalog: PriceCatalog, policy: CostPolicy,
                   **keys: KeyFn) -> CostGovernor:
        gov = cls(catalog, policy, **keys)
        a, r = policy.accounting, policy.runs
        gov.accountant = CostAccountant.from_state(
            state["accountant"], catalog, rel_tolerance=a.rel_tolerance,
            abs_tolerance_usd=a.abs_tolerance_usd, realert_s=a.realert_s)
        gov.runs = AgentRunAggregator.from_state(
            state["runs"], idle_timeout_s=r.idle_timeout_s, max_open_runs=r.max_open_runs,
            close_on_final_answer=r.close_on_final_answer)
        for table, metric, name in ((gov.per_request, "cost_per_request", "per_request"),
                                    (gov.per_action, "cost_per_successful_action", "per_action")):
            for k, st in state[name]:
                key = tuple((a_, b_) for a_, b_ in k)
                table[key] = CostRegressionDetector.from_state(
                    st, policy.regression, scope=dict(key), metric=metric,
                    config_version=policy.version)
        specs = {b.id: b for b in policy.budgets}
        for bid, st in state["budgets"].items():
            if bid in specs:  # a budget removed from the policy is dropped
                gov.budgets[bid] = BurnRateBudget.from_state(
                    st, specs[bid], policy.rules_for(specs[bid]), policy.version)
        gov.unknown_cost = int(state.get("unknown_cost", 0))
        return gov
