"""Agent runs: closing, bounded memory, cost per run and per successful action."""

from __future__ import annotations

import json

import pytest

from detectors.cost import AgentRunAggregator, CostAccountant, CostSample, PriceCatalog
from detectors.cost.synthetic import generate

T0 = 1_750_000_000.0
CAT = PriceCatalog.model_validate({"version": "p", "entries": [
    {"provider": "p", "model": "m", "input_per_mtok": 1.0, "output_per_mtok": 2.0,
     "effective_from": "2020-01-01"}]})
ACC = CostAccountant(CAT)


def call(trace: str, at: float, span: str, parent: str | None = None, tools: int = 0,
         ok: bool = True, attempt: int = 1, route: str = "r") -> CostSample:
    return CostSample(at=at, tenant="t", application="a", route=route, provider="p",
                      request_model="m", input_tokens=1_000_000, output_tokens=0, ok=ok,
                      attempt=attempt, trace_id=trace, span_id=span, parent_span_id=parent,
                      tool_calls=tools)  # each call costs exactly 1 USD


def feed(agg: AgentRunAggregator, samples: list[CostSample]) -> list:
    return [r for s in samples for r in agg.update(s, ACC.account(s))]


def test_plain_request_closes_at_once_and_costs_one_call():
    (run,) = feed(AgentRunAggregator(), [call("a", T0, "a0")])
    assert (run.steps, run.attempts, run.cost_usd, run.closed_by) == (1, 1, 1.0, "final_answer")
    assert run.action_cost_usd == 1.0 and run.succeeded


def test_agent_run_waits_for_final_answer_counting_retries():
    agg = AgentRunAggregator(idle_timeout_s=60)
    closed = feed(agg, [call("a", T0, "s0", tools=1), call("a", T0 + 1, "s1", "s0", tools=1),
                        call("a", T0 + 2, "s2", "s0", ok=False),
                        call("a", T0 + 3, "s2b", "s0", attempt=2, tools=2)])
    assert closed == [] and agg.n_open == 1
    (run,) = feed(agg, [call("a", T0 + 4, "s3", "s0")])
    assert (run.steps, run.attempts, run.errors, run.tool_calls) == (4, 5, 1, 4)
    assert run.cost_usd == pytest.approx(5.0)
    unit = run.unit()
    assert unit.steps == 4 and unit.attempts == 5 and unit.cost_usd == pytest.approx(5.0)
    req = run.request_unit()
    assert req.cost_usd == pytest.approx(1.0) and req.usage[0].uncached_input_tokens == 1e6


def test_idle_timeout_in_event_time_closes_abandoned_runs_as_failures():
    agg = AgentRunAggregator(idle_timeout_s=60)
    feed(agg, [call("a", T0, "s0", tools=1), call("a", T0 + 5, "s1", "s0", ok=False)])
    assert feed(agg, [call("b", T0 + 30, "b0", tools=1)]) == []
    (run,) = feed(agg, [call("c", T0 + 70, "c0", tools=1)])     # 65 s after a's last step
    assert run.trace_id == "a" and run.closed_by == "idle" and not run.succeeded
    assert run.unit() is None                                   # failed: carried forward
    assert [r.trace_id for r in agg.flush()] == ["b", "c"]


def test_cost_per_successful_action_carries_failed_runs():
    agg = AgentRunAggregator(idle_timeout_s=10)
    samples = [call("f1", T0, "x", ok=False),                   # fails, 1 USD
               call("f2", T0 + 1, "y", tools=1), call("f2", T0 + 2, "y2", "y", ok=False),  # 2 USD
               call("ok1", T0 + 30, "z"),                       # succeeds, 1 USD
               call("ok2", T0 + 31, "w")]                       # succeeds, 1 USD
    runs = feed(agg, samples) + agg.flush()
    succeeded = [r for r in runs if r.succeeded]
    assert [r.trace_id for r in succeeded] == ["ok1", "ok2"]
    assert [r.action_cost_usd for r in succeeded] == [pytest.approx(4.0), pytest.approx(1.0)]
    total = sum(r.cost_usd for r in runs)
    assert sum(r.action_cost_usd for r in succeeded) / len(succeeded) == pytest.approx(total / 2)


def test_failed_work_is_carried_per_scope_not_across_routes():
    agg = AgentRunAggregator(idle_timeout_s=10)
    runs = feed(agg, [call("f", T0, "x", ok=False, route="r1"), call("g", T0 + 20, "y", route="r2"),
                      call("h", T0 + 21, "z", route="r1")])
    costs = {r.trace_id: r.action_cost_usd for r in runs}
    assert costs == {"f": None, "g": 1.0, "h": 2.0}


def test_memory_is_bounded_by_evicting_least_recently_active_runs():
    agg = AgentRunAggregator(idle_timeout_s=1e6, max_open_runs=100)
    closed = feed(agg, [call(f"r{i}", T0 + i, "s", tools=1) for i in range(250)])
    assert agg.n_open == 100 and agg.evicted == 150
    assert [r.closed_by for r in closed] == ["evicted"] * 150
    assert closed[0].trace_id == "r0"


def test_late_step_after_close_is_counted_as_reopened():
    agg = AgentRunAggregator(idle_timeout_s=10)
    feed(agg, [call("a", T0, "s0")])
    feed(agg, [call("a", T0 + 1, "s1", "s0")])
    assert agg.reopened == 1


def test_state_round_trip_mid_stream_gives_identical_runs():
    stream = generate("stable", 3000, 0, seed=3).samples
    a = AgentRunAggregator(idle_timeout_s=120)
    head = feed(a, stream[:1500])
    state = json.loads(json.dumps(a.to_state()))
    b = AgentRunAggregator.from_state(state, idle_timeout_s=120)
    rest_a, rest_b = feed(a, stream[1500:]) + a.flush(), feed(b, stream[1500:]) + b.flush()
    assert head and rest_a == rest_b
    assert sum(r.attempts for r in head + rest_a) == len(stream)
