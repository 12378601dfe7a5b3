"""Agent runs: group calls by trace id, close runs, and charge failed work to the next success.

A run (one trace tree) ends when the model gives its final answer (an ``ok`` step with no
tool call, from the root step or a direct child of it) or, since runs have no reliable
end marker, when no step arrived for ``idle_timeout_s`` of *event* time. Memory is
bounded: past ``max_open_runs`` the least recently active run is closed early and counted.

Cost per successful action = cost of every attempt of every run (failed runs included)
divided by the runs that succeeded. As a stream, each successful run carries the cost of
the failed runs of its scope since the previous success (``action_cost_usd``), so the
mean of that stream is exactly cost per successful action.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from detectors.cost.accounting import Costing
from detectors.cost.values import CostSample, CostUnit, ModelUsage, TokenPrice

_RECENTLY_CLOSED_MAX = 4096
_MAX_SCOPES = 1024


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One closed agent run (a plain request is a run of one step plus its retries).

    ``closed_by`` is ``"final_answer"``, ``"idle"``, ``"evicted"`` or ``"flush"``.
    ``action_cost_usd`` is ``None`` for a failed run (its cost is carried to the next
    success of the same scope).
    """

    trace_id: str
    tenant: str
    application: str
    route: str
    request_model: str
    started_at: float
    ended_at: float
    cost_usd: float
    steps: int
    attempts: int
    tool_calls: int
    errors: int
    unpriced_calls: int
    succeeded: bool
    closed_by: str
    usage: tuple[ModelUsage, ...]
    action_cost_usd: float | None = None

    @property
    def model(self) -> str:
        """The identity that consumed the most tokens: the run's main model."""
        if not self.usage:
            return ""
        top = max(self.usage, key=lambda u: u.uncached_input_tokens + u.cached_input_tokens
                  + u.output_tokens)
        return top.identity

    def unit(self) -> CostUnit | None:
        """The cost-per-successful-action observation, or ``None`` for a failed run."""
        if self.action_cost_usd is None:
            return None
        return CostUnit(at=self.ended_at, cost_usd=self.action_cost_usd, usage=self.usage,
                        own_cost_usd=self.cost_usd, steps=max(1, self.steps),
                        attempts=max(1, self.attempts, self.steps), model=self.model)

    def request_unit(self) -> CostUnit:
        """The cost-per-request observation of this run: its mean cost per call.

        Calls of one run share their prompt and context, so they are not independent
        observations; one value per run keeps a CUSUM calibrated (a single agent run over
        a pasted document would otherwise look like a regression).
        """
        n = max(1, self.attempts)
        usage = tuple(ModelUsage(u.identity, u.uncached_input_tokens / n,
                                 u.cached_input_tokens / n, u.output_tokens / n, u.price)
                      for u in self.usage)
        return CostUnit(at=self.ended_at, cost_usd=self.cost_usd / n, usage=usage,
                        model=self.model)

    def to_row(self) -> dict[str, Any]:
        """Flat values for an analytics table (cost per run / per successful action)."""
        return {
            "trace_id": self.trace_id, "tenant": self.tenant, "application": self.application,
            "route": self.route, "request_model": self.request_model, "model": self.model,
            "started_at": self.started_at,
            "ended_at": self.ended_at, "cost_usd": self.cost_usd, "steps": self.steps,
            "attempts": self.attempts, "tool_calls": self.tool_calls, "errors": self.errors,
            "succeeded": self.succeeded, "closed_by": self.closed_by,
            "action_cost_usd": self.action_cost_usd,
        }


class _OpenRun:
    __slots__ = ("tenant", "application", "route", "request_model", "first", "last", "cost", "steps", "attempts",
                 "tool_calls", "errors", "unpriced", "last_ok", "root", "usage")

    def __init__(self, s: CostSample) -> None:
        self.tenant, self.application, self.route = s.tenant, s.application, s.route
        self.request_model = s.request_model
        self.first = self.last = s.at
        self.cost = 0.0
        self.steps = self.attempts = self.tool_calls = self.errors = self.unpriced = 0
        self.last_ok = False
        self.root: str | None = None
        # identity -> [uncached, cached, output, price list or None]
        self.usage: dict[str, list[Any]] = {}

    def add(self, s: CostSample, c: Costing) -> None:
        self.first, self.last = min(self.first, s.at), max(self.last, s.at)
        self.cost += c.cost_usd or 0.0
        self.unpriced += c.cost_usd is None
        self.steps += s.attempt <= 1
        self.attempts += 1
        self.tool_calls += s.tool_calls
        self.errors += not s.ok
        self.last_ok = s.ok
        if s.parent_span_id is None and self.root is None:
            self.root = s.span_id
        u = self.usage.get(c.usage.identity)
        if u is None:
            price = c.usage.price.as_list() if c.usage.price is not None else None
            self.usage[c.usage.identity] = [c.usage.uncached_input_tokens,
                                           c.usage.cached_input_tokens, c.usage.output_tokens, price]
        else:
            u[0] += c.usage.uncached_input_tokens
            u[1] += c.usage.cached_input_tokens
            u[2] += c.usage.output_tokens

    def is_final_answer(self, s: CostSample) -> bool:
        return s.ok and s.tool_calls == 0 and (
            s.parent_span_id is None or s.parent_span_id == self.root)

    def to_list(self) -> list[Any]:
        return [self.tenant, self.application, self.route, self.request_model, self.first, self.last, self.cost,
                self.steps, self.attempts, self.tool_calls, self.errors, self.unpriced,
                self.last_ok, self.root, self.usage]

    @classmethod
    def from_list(cls, v: list[Any]) -> _OpenRun:
        run = cls.__new__(cls)
        (run.tenant, run.application, run.route, run.request_model, run.first, run.last, run.cost, run.steps,
         run.attempts, run.tool_calls, run.errors, run.unpriced, run.last_ok, run.root,
         run.usage) = v
        return run


class AgentRunAggregator:
    """Close agent runs on final answer or idle timeout, in bounded memory.

    Parameters
    ----------
    idle_timeout_s
        A run with no step for this many seconds of event time (behind the newest event
        seen) is closed.
    max_open_runs
        Cap on open runs; the least recently active one is closed early (``evicted``).
    close_on_final_answer
        Close at the model's final answer. Turn off for frameworks that do not report
        tool calls (every step would look final).

    >>> from detectors.cost.prices import PriceCatalog
    >>> from detectors.cost.accounting import CostAccountant
    >>> acc = CostAccountant(PriceCatalog(version="p", entries=[{"provider": "p", "model": "m",
    ...     "input_per_mtok": 1.0, "output_per_mtok": 2.0, "effective_from": "2020-01-01"}]))
    >>> agg = AgentRunAggregator(idle_timeout_s=60)
    >>> def step(at, span, parent, tools, attempt=1, ok=True):
    ...     s = CostSample(at=at, tenant="t", application="a", route="r", provider="p",
    ...                    request_model="m", input_tokens=1000, output_tokens=100, ok=ok,
    ...                    attempt=attempt, trace_id="run1", span_id=span,
    ...                    parent_span_id=parent, tool_calls=tools)
    ...     return agg.update(s, acc.account(s))
    >>> step(1.6e9, "s1", None, tools=1), step(1.6e9 + 2, "s2", "s1", tools=1, ok=False)
    ([], [])
    >>> step(1.6e9 + 3, "s3", "s1", tools=1, attempt=2)
    []
    >>> [(r.steps, r.attempts, r.succeeded, r.closed_by) for r in step(1.6e9 + 5, "s4", "s1", 0)]
    [(3, 4, True, 'final_answer')]
    """

    def __init__(self, idle_timeout_s: float = 300.0, max_open_runs: int = 10_000,
                 close_on_final_answer: bool = True) -> None:
        if idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0 seconds, got {idle_timeout_s}")
        if max_open_runs < 1:
            raise ValueError(f"max_open_runs must be >= 1, got {max_open_runs}")
        self.idle_timeout_s = idle_timeout_s
        self.max_open_runs = max_open_runs
        self.close_on_final_answer = close_on_final_answer
        self._open: OrderedDict[str, _OpenRun] = OrderedDict()
        # Runs touched (updated, opened, closed) since the last take_delta(), in the order of
        # their last touch: what an incremental checkpoint writes.
        self._touched: OrderedDict[str, None] = OrderedDict()
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._carried: OrderedDict[str, float] = OrderedDict()  # scope -> failed cost
        self.watermark = float("-inf")
        self.evicted = 0
        self.reopened = 0

    @property
    def n_open(self) -> int:
        return len(self._open)

    def update(self, sample: CostSample, costing: Costing) -> list[RunSummary]:
        """Add one call; return the runs that closed because of it (possibly none)."""
        closed: list[RunSummary] = []
        if sample.at > self.watermark:  # idle runs close first, in event-time order
            self.watermark = sample.at
            closed.extend(self._close_idle(self.watermark))
        run = self._open.get(sample.trace_id)
        if run is None:
            if sample.trace_id in self._closed:
                self.reopened += 1  # a step arrived after its run was closed
            run = self._open[sample.trace_id] = _OpenRun(sample)
            if len(self._open) > self.max_open_runs:
                old_id, old = self._open.popitem(last=False)
                self.evicted += 1
                closed.append(self._close(old_id, old, "evicted"))
        run.add(sample, costing)
        self._open.move_to_end(sample.trace_id)
        self._touch(sample.trace_id)
        if self.close_on_final_answer and run.is_final_answer(sample):
            del self._open[sample.trace_id]
            closed.append(self._close(sample.trace_id, run, "final_answer"))
        return closed

    def flush(self, now: float | None = None) -> list[RunSummary]:
        """Close runs idle at ``now`` (event time), or every open run when ``now`` is None."""
        if now is not None:
            return self._close_idle(now)
        out = [self._close(tid, run, "flush") for tid, run in self._open.items()]
        self._open.clear()
        return out

    def _close_idle(self, now: float) -> list[RunSummary]:
        out = []
        limit = now - self.idle_timeout_s
        while self._open:
            tid, run = next(iter(self._open.items()))
            if run.last >= limit:
                break
            del self._open[tid]
            out.append(self._close(tid, run, "idle"))
        return out

    def _touch(self, trace_id: str) -> None:
        self._touched[trace_id] = None
        self._touched.move_to_end(trace_id)

    def _close(self, trace_id: str, run: _OpenRun, why: str) -> RunSummary:
        self._touch(trace_id)
        self._closed[trace_id] = None
        if len(self._closed) > _RECENTLY_CLOSED_MAX:
            self._closed.popitem(last=False)
        succeeded = why == "final_answer" or (run.last_ok and run.errors < run.attempts)
        scope = f"{run.tenant}|{run.application}|{run.route}"
        carried = self._carried.pop(scope, 0.0)
        if succeeded:
            action_cost: float | None = run.cost + carried
        else:
            action_cost = None
            self._carried[scope] = carried + run.cost
            while len(self._carried) > _MAX_SCOPES:
                self._carried.popitem(last=False)
        usage = tuple(
            ModelUsage(ident, u[0], u[1], u[2], TokenPrice(*u[3]) if u[3] is not None else None)
            for ident, u in run.usage.items()
        )
        return RunSummary(trace_id, run.tenant, run.application, run.route, run.request_model,
                          run.first, run.last,
                          run.cost, run.steps, run.attempts, run.tool_calls, run.errors,
                          run.unpriced, succeeded, why, usage, action_cost)

    def take_delta(self) -> list[list[Any]]:
        """``[trace_id, run or None]`` for every run touched since the last call, in the
        order of their last touch (None: closed). Applied in order with
        :meth:`apply_delta` to the open runs of an earlier state, they give the open runs
        of now, in the same order; an incremental checkpoint writes this, not every run."""
        delta = [[tid, self._open[tid].to_list() if tid in self._open else None] for tid in self._touched]
        self._touched.clear()
        return delta

    def apply_delta(self, delta: list[list[Any]]) -> None:
        for tid, run in delta:
            self._open.pop(tid, None)
            if run is not None:
                self._open[tid] = _OpenRun.from_list(run)

    def to_state(self, include_open: bool = True) -> dict[str, Any]:
        """Open runs (unless ``include_open`` is false: a checkpoint that stores them as
        deltas), recently closed ids and carried failed cost (JSON-serialisable)."""
        return {
            "open": [[tid, run.to_list()] for tid, run in self._open.items()] if include_open else [],
            "closed": list(self._closed),
            "carried": [[k, v] for k, v in self._carried.items()],
            "watermark": self.watermark if self.watermark != float("-inf") else None,
            "evicted": self.evicted, "reopened": self.reopened,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], **config: Any) -> AgentRunAggregator:
        agg = cls(**config)
        for tid, v in state.get("open", []):
            agg._open[tid] = _OpenRun.from_list(v)
        for tid in state.get("closed", []):
            agg._closed[tid] = None
        for k, v in state.get("carried", []):
            agg._carried[k] = float(v)
        wm = state.get("watermark")
        agg.watermark = float("-inf") if wm is None else float(wm)
        agg.evicted, agg.reopened = int(state.get("evicted", 0)), int(state.get("reopened", 0))
        return agg
