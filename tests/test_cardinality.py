"""Cardinality caps without a broker (security issue 16): the governor, drift stage and breaker
decider hold state for at most the capped scopes; overflow traces are still redacted; idle
scopes give their slot or expire with a tombstone; a restart restores no more than the cap;
a scope or route with an open breaker is never evicted."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from detectors.findings import Finding
from streams.breaking import TRAFFIC, BreakerDecider
from streams.cardinality import OVERFLOW_ROUTE, SCOPE_CAP, ScopeAdmission, ScopeLimits
from streams.config import WardenSettings
from streams.governor import Governor, scope_limits
from streams.records import InferenceTrace
from streams.redaction import load_redactor
from tests.pipeline_helpers import TEST_KEY, fast_config, trace_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(tmp_path: Path) -> WardenSettings:
    return WardenSettings(config_dir=fast_config(tmp_path), pseudonym_key=TEST_KEY, scope_max_total=50,
                          scope_max_per_route=3, scope_max_per_tenant=1000, scope_reclaim_s=3600,
                          scope_ttl_s=7200)


def _governor(settings: WardenSettings, clock: Clock) -> Governor:
    base = Governor.from_settings(settings, load_redactor(settings))
    return Governor(base.redactor, base.config, limits=scope_limits(settings), clock=clock)


def _trace(route: str, model: str = "gpt-4o-mini", *, error: bool = False, seed: int = 0,
           tenant: str = "acme") -> InferenceTrace:
    trace = trace_for(route, model, error=error, rng=random.Random(seed))
    trace["tenant"] = tenant
    return InferenceTrace.model_validate(trace)


def _batch(governor: Governor, traces: list[InferenceTrace], states: dict[str, Any]) -> list[str]:
    """What the govern agent does with one batch (streams/app.py), tombstones included."""
    kinds, touched = [], set()
    for trace in traces:
        out = governor.govern(trace, states)
        kinds += [f.kind for f in out.findings]
        if out.overflow is None:
            touched.add(trace.partition_key)
    saved, traffic = governor.checkpoint(touched)
    states.update(saved)
    for key in governor.take_removed():
        states.pop(key, None)
    cap = governor.scope_cap_finding()
    return kinds + [f.kind for f in traffic] + ([cap.kind] if cap else [])


def test_random_routes_beyond_the_cap_hold_no_state_but_are_redacted(settings: WardenSettings) -> None:
    clock, states = Clock(), {}
    governor = _governor(settings, clock)
    flood = [_trace(f"rnd-{i:05d}", seed=i) for i in range(500)]
    kinds = _batch(governor, flood, states)
    assert len(states) == 50 and len(governor._scopes) == 50 and len(governor.admission) == 50
    overflowed = [governor.govern(t, states) for t in flood[50:60]]
    assert all(o.overflow == "total" and "redaction" in o.redacted for o in overflowed)
    assert kinds.count(SCOPE_CAP) == 1  # the on-call hears about it, once per interval
    assert SCOPE_CAP not in _batch(governor, flood[100:200], states)
    clock.now += 61
    assert SCOPE_CAP in _batch(governor, flood[200:300], states)


def test_models_per_route_and_routes_per_tenant_are_capped(settings: WardenSettings) -> None:
    clock, states = Clock(), {}
    settings = settings.model_copy(update={"scope_max_per_tenant": 40})
    governor = _governor(settings, clock)
    out = [governor.govern(_trace("one-route", f"model-{i}"), states) for i in range(5)]
    assert [o.overflow for o in out] == [None, None, None, "per_route", "per_route"]
    out = [governor.govern(_trace(f"r{i}", tenant="noisy"), states) for i in range(45)]
    assert [o.overflow for o in out].count("per_tenant") == 5


def test_overflow_leaks_are_reported_under_the_overflow_scope(settings: WardenSettings) -> None:
    clock, states = Clock(), {}
    governor = _governor(settings, clock)
    _batch(governor, [_trace(f"fill-{i}", seed=i) for i in range(50)], states)
    leaky = trace_for("late-route", "gpt-4o-mini", error=False, rng=random.Random(1))
    leaky["output_messages"] = [{"role": "assistant", "content": "key AKIAIOSFODNN7EXAMPLE, mail bob@example.com"}]
    out = governor.govern(InferenceTrace.model_validate(leaky), states)
    assert out.findings and {f.subject["route"] for f in out.findings} == {OVERFLOW_ROUTE}
    assert out.findings[0].evidence["scope"] == {"route": "late-route", "model": "gpt-4o-mini"}
    assert "bob@example.com" not in str(out.redacted)  # redacted like any trace


def test_a_known_route_is_still_governed_during_a_flood(settings: WardenSettings) -> None:
    clock, states = Clock(), {}
    governor = _governor(settings, clock)
    _batch(governor, [_trace("support-chat", seed=i) for i in range(30)], states)
    clock.now += 4000  # even long after: a spray only takes slots idle for reclaim_s
    _batch(governor, [_trace("support-chat", seed=99)], states)
    _batch(governor, [_trace(f"rnd-{i}", seed=i) for i in range(2000)], states)
    assert "support-chat|gpt-4o-mini" in states and len(states) == 50
    kinds = _batch(governor, [_trace("support-chat", error=i % 4 != 0, seed=i) for i in range(200)], states)
    assert "error_rate.high" in kinds


def test_idle_scopes_give_their_slot_at_the_cap_least_recently_seen_first(settings: WardenSettings) -> None:
    clock, states = Clock(), {}
    governor = _governor(settings, clock)
    _batch(governor, [_trace(f"old-{i}", seed=i) for i in range(50)], states)
    assert governor.govern(_trace("newcomer"), states).overflow == "total"
    clock.now += 3600
    _batch(governor, [_trace("old-0", seed=1)], states)  # seen again: now the most recent
    _batch(governor, [_trace("newcomer")], states)
    assert "newcomer|gpt-4o-mini" in states and len(states) == 50
    assert "old-0|gpt-4o-mini" in states and "old-1|gpt-4o-mini" not in states  # a tombstone


def test_a_tripped_scope_is_never_reclaimed_nor_expired(settings: WardenSettings) -> None:
    clock, states = Clock(), {}
    governor = _governor(settings, clock)
    kinds = _batch(governor, [_trace("broken", error=True, seed=i) for i in range(60)], states)
    assert "error_rate.high" in kinds and states["broken|gpt-4o-mini"]["tripped"] is True
    _batch(governor, [_trace(f"fill-{i}", seed=i) for i in range(49)], states)
    clock.now += 3601
    _batch(governor, [_trace(f"new-{i}", seed=i) for i in range(60)], states)
    assert "broken|gpt-4o-mini" in states  # the others gave their slots, the tripped one did not
    assert sum(k.startswith("new-") for k in states) == 49
    clock.now += 7201  # past the TTL: every idle scope is deleted but the tripped one
    _batch(governor, [_trace("later")], states)
    assert set(states) == {"broken|gpt-4o-mini", "later|gpt-4o-mini"}


def test_idle_scopes_expire_below_the_cap_with_a_tombstone(settings: WardenSettings) -> None:
    clock, states = Clock(), {}
    governor = _governor(settings, clock)
    _batch(governor, [_trace(f"once-{i}", seed=i) for i in range(10)], states)
    clock.now += 3000
    _batch(governor, [_trace("steady", seed=1)], states)
    clock.now += 4300  # once-* idle 7300 s > ttl; steady 4300 s
    _batch(governor, [_trace("steady", seed=2)], states)
    assert set(states) == {"steady|gpt-4o-mini"} and len(governor.admission) == 1


def test_idle_detectors_leave_memory_and_return_from_the_table(settings: WardenSettings) -> None:
    clock, states = Clock(), {}
    settings = settings.model_copy(update={"scope_idle_s": 0.001})
    governor = _governor(settings, clock)
    _batch(governor, [_trace("a", seed=i) for i in range(10)], states)
    time.sleep(0.01)  # in-memory idleness is monotonic time: let "a" pass scope_idle_s
    _batch(governor, [_trace("b")], states)
    assert "a|gpt-4o-mini" not in governor._scopes  # evicted; its state is in the table
    _batch(governor, [_trace("a", seed=99)], states)
    assert governor._scopes["a|gpt-4o-mini"].seq == 11 == states["a|gpt-4o-mini"]["seq"]


def test_a_restart_restores_the_capped_scopes_and_still_caps(settings: WardenSettings) -> None:
    clock, states = Clock(), {}
    _batch(_governor(settings, clock), [_trace(f"rnd-{i}", seed=i) for i in range(300)], states)
    restarted = _governor(settings, clock)
    out = restarted.govern(_trace("after-restart"), states)
    assert out.overflow == "total" and len(restarted.admission) == 50
    assert restarted.govern(_trace("rnd-7", seed=7), states).overflow is None


def test_a_restart_with_a_lowered_cap_trims_the_oldest(settings: WardenSettings) -> None:
    clock, states = Clock(), {}
    governor = _governor(settings, clock)
    for i in range(50):
        _batch(governor, [_trace(f"r-{i:02d}", seed=i)], states)
        clock.now += 1
    lowered = _governor(settings.model_copy(update={"scope_max_total": 20}), clock)
    _batch(lowered, [_trace("r-49", seed=1)], states)
    assert len(states) == 20 and "r-00|gpt-4o-mini" not in states and "r-49|gpt-4o-mini" in states


def test_admission_restores_oldest_first() -> None:
    admission = ScopeAdmission(ScopeLimits(max_total=2, reclaim_s=10))
    assert admission.restore([("new|m", "new", "t", 100.0, False), ("old|m", "old", "t", 5.0, False)]) == []
    assert admission.admit("x|m", "x", "t", 50.0, {"new|m": {}, "old|m": {}}) == (None, "old|m")


def test_the_drift_stage_bounds_its_scopes() -> None:
    from streams.drift_stage import DriftStage

    class Drift:  # what DriftStage needs of TraceDrift, without an encoder
        def __init__(self) -> None:
            self.scopes: dict[str, Any] = {}

        def vectors(self, traces: list[InferenceTrace]) -> list[None]:
            return [None] * len(traces)

        def observe(self, trace: InferenceTrace, vectors: object) -> list[Finding]:
            self.scopes.setdefault(trace.partition_key, _Scope())
            return []

    class _Scope:
        def to_state(self) -> dict[str, Any]:
            return {"subject": {"route": "x"}}

    stage = DriftStage(Drift(), limits=ScopeLimits(max_total=5, reclaim_s=100, ttl_s=1000))  # type: ignore[arg-type]
    states: dict[str, Any] = {}
    now = 1000.0
    _, due = stage.process([_trace(f"d-{i}", seed=i) for i in range(20)], states, now)
    states.update(due)
    assert len(states) == 5 and len(stage.drift.scopes) == 5
    _, due = stage.process([_trace("late")], states, now + 200)  # the oldest gives its slot
    states.update(due)
    for key in stage.take_removed():
        states.pop(key)
    assert len(states) == 5 and "late|gpt-4o-mini" in states
    _, due = stage.process([_trace("later")], states, now + 1500)  # the rest expire
    states.update(due)
    for key in stage.take_removed():
        states.pop(key)
    assert set(states) == {"later|gpt-4o-mini"}


def _traffic(route: str, at: float, errors: int = 0) -> Finding:
    return Finding(TRAFFIC, {"route": route, "model": "m"}, 10.0, 0.0, at, "info",
                   {"requests": 10, "errors": errors}, "govern")


def test_idle_breaker_routes_are_deleted_but_open_ones_kept(settings: WardenSettings) -> None:
    decider = BreakerDecider.from_settings(settings)
    states: dict[str, Any] = {}
    now = 1_000_000.0
    for i in range(20):
        decider.on_finding(_traffic(f"rnd-{i}", now), states)
    decider.on_finding(_traffic("real", now), states)
    target = "route=real|model=m"
    decider.on_finding(Finding("breaker.override", {"route": "real", "model": "m"}, 0.0, 0.0, now, "info",
                               {"target": target, "state": "open", "reason": "test", "operator": "t",
                                "until": now + 5 * 86_400}, "operator"), states)
    assert decider.engine("real", states).state(target) == "open"
    decider.tick(now + 2 * 86_400, states)  # past the inventory TTL
    assert set(states) == {"real"} and decider.forgotten == 20
