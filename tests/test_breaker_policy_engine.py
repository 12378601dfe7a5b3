"""BreakerPolicyEngine: trips, half-open probes, back-off, capacity cap, overrides (issue 8)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from detectors.breaker import BreakerPolicy, BreakerPolicyEngine, Transition, load_policy
from detectors.findings import Finding

GPT = {"route": "checkout", "model": "gpt-4o"}
GPT_T = "model=gpt-4o,route=checkout"
MODELS = ("gpt-4o", "claude", "llama", "mistral")


def policy(**defaults: Any) -> BreakerPolicy:
    return BreakerPolicy.model_validate({"version": "test-1", "defaults": defaults})


def engine(pol: BreakerPolicy | None = None, models: tuple[str, ...] = MODELS) -> BreakerPolicyEngine:
    eng = BreakerPolicyEngine(pol or load_policy())
    for m in models:  # the route's capacity as seen in traffic
        eng.on_trace({"route": "checkout", "model": m, "tenant": "acme"}, True, now=0.0)
    return eng


def finding(kind: str = "error_rate.high", severity: str = "critical", at: float = 10.0,
            subject: dict | None = None, **evidence: Any) -> Finding:
    return Finding(kind, subject or GPT, 0.9, 0.5, at=at, severity=severity, evidence=evidence)


def probes(eng: BreakerPolicyEngine, outcomes: list[bool], start: float,
           scope: dict | None = None) -> list[Transition]:
    out: list[Transition] = []
    for i, ok in enumerate(outcomes):
        out += eng.on_trace({**(scope or GPT), "tenant": "acme"}, ok, now=start + i * 0.1)
    return out


def trip(eng: BreakerPolicyEngine, now: float, subject: dict | None = None) -> list[Transition]:
    return eng.on_finding(finding(at=now, subject=subject), now)


# -- trips -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kind", "severity", "count"),
    [
        ("error_rate.high", "critical", 1),
        ("redaction.secret_in_completion", "warning", 1),
        ("redaction.pii_in_completion", "warning", 3),
        ("drift.embedding", "critical", 1),
        ("cost.budget_exhausted", "warning", 1),
        ("change.unowned_behaviour", "critical", 1),
    ],
)
def test_trips_on_each_finding_kind(kind: str, severity: str, count: int) -> None:
    eng = engine()
    fs = [finding(kind, severity, at=10.0 + i) for i in range(count)]
    results = [eng.on_finding(f, f.at) for f in fs]
    assert all(r == [] for r in results[:-1])  # PII needs 3 within 600 s
    [t] = results[-1]
    assert (t.target, t.from_state, t.to_state, t.alert_only) == (GPT_T, "closed", "open", False)
    assert set(t.finding_ids) == {f.finding_id for f in fs}
    assert t.policy_version == load_policy().version and kind in t.reason
    assert t.cooldown_until == fs[-1].at + 30 and t.trip_count == 1
    json.dumps(t.to_dict())


@pytest.mark.parametrize(
    ("kind", "severity"),
    [("drift.embedding", "warning"), ("change.unowned_behaviour", "warning"),
     ("error_rate.recovered", "info"), ("latency.high", "critical")],
)
def test_findings_below_policy_do_not_trip(kind: str, severity: str) -> None:
    eng = engine()
    assert eng.on_finding(finding(kind, severity), 10.0) == []
    assert eng.state(GPT_T) == "closed"


def test_pii_findings_spread_beyond_the_window_do_not_trip() -> None:
    eng = engine()
    out = [eng.on_finding(finding("redaction.pii_in_completion", at=t), t) for t in (0, 400, 800)]
    assert out == [[], [], []]
    replay = finding("redaction.pii_in_completion", at=800)
    assert eng.on_finding(replay, 801) == []  # a replayed finding counts once


def test_budget_opt_out_is_alert_only() -> None:
    eng = engine()
    [t] = eng.on_finding(finding("cost.budget_exhausted", "warning", breaker=False), 10.0)
    assert t.alert_only and t.to_state == "closed" and "alert only" in t.reason
    assert eng.state(GPT_T) == "closed"


def test_min_traffic_turns_a_trip_into_an_alert() -> None:
    pol = policy(trips=[{"kind": "error_rate.high", "min_traffic": 50}])
    eng = engine(pol)
    [t] = trip(eng, 10.0)
    assert t.alert_only and "min_traffic" in t.reason
    probes(eng, [True] * 60, start=11.0)
    assert [x.to_state for x in trip(eng, 20.0)] == ["open"]


# -- half-open probing -------------------------------------------------------------------

def test_half_open_probes_close_the_breaker() -> None:
    eng = engine()
    trip(eng, 10.0)
    assert eng.tick(39.9) == []
    [h] = eng.tick(40.0)
    assert (h.from_state, h.to_state, h.probe_share) == ("open", "half_open", 0.05)
    assert probes(eng, [True] * 19, start=41.0) == []
    [c] = probes(eng, [True], start=45.0)
    assert (c.from_state, c.to_state, c.probe_share) == ("half_open", "closed", 0.0)
    assert "probes passed" in c.reason


def test_failed_probes_reopen_with_a_longer_cooldown() -> None:
    eng = engine()
    trip(eng, 10.0)
    eng.tick(40.0)
    # 10% of 20 → at most 2 failures; the third reopens without waiting for 20 probes.
    out = probes(eng, [True, False, True, False, False], start=41.0)
    [r] = out
    assert (r.from_state, r.to_state, r.trip_count) == ("half_open", "open", 2)
    assert r.cooldown_until == pytest.approx(41.4 + 60)


def test_tripping_finding_during_half_open_reopens() -> None:
    eng = engine()
    trip(eng, 10.0)
    eng.tick(40.0)
    [r] = eng.on_finding(finding("redaction.secret_in_completion", "critical", at=41.0), 41.0)
    assert (r.from_state, r.to_state) == ("half_open", "open")


def test_probes_only_count_traffic_the_breaker_covers() -> None:
    eng = engine()
    trip(eng, 10.0)
    eng.tick(40.0)
    assert probes(eng, [False] * 30, start=41.0, scope={"route": "checkout", "model": "claude"}) == []
    assert probes(eng, [False] * 30, start=30.0) == []  # late traces from before half-open
    assert eng.state(GPT_T) == "half_open"


# -- back-off ----------------------------------------------------------------------------

def test_backoff_grows_is_capped_and_decays_after_a_quiet_period() -> None:
    eng = engine(policy(cooldown_s=10, backoff_multiplier=3, max_cooldown_s=100, trip_decay_s=500))
    now, cooldowns = 0.0, []
    for _ in range(4):
        [t] = trip(eng, now)
        cooldowns.append(t.cooldown_until - now)
        now = t.cooldown_until
        eng.tick(now)
        now += 1
    assert cooldowns == [10, 30, 90, 100]
    eng.tick(now)
    probes(eng, [True] * 20, start=now)
    assert eng.state(GPT_T) == "closed"
    [t] = trip(eng, now + 100)  # not quiet long enough: still backing off
    assert t.trip_count == 5 and t.cooldown_until - (now + 100) == 100
    eng.tick(t.cooldown_until)
    probes(eng, [True] * 20, start=t.cooldown_until + 1)
    later = t.cooldown_until + 10 + 500
    [t2] = trip(eng, later)
    assert (t2.trip_count, t2.cooldown_until - later) == (1, 10)


# -- capacity cap ------------------------------------------------------------------------

def test_capacity_cap_keeps_half_the_route_serving() -> None:
    eng = engine()  # 4 models, max_open_share 0.5
    opened = [trip(eng, 10.0, {"route": "checkout", "model": m})[0] for m in MODELS]
    assert [t.to_state for t in opened] == ["open", "open", "closed", "closed"]
    assert all(t.alert_only and "capacity cap" in t.reason for t in opened[2:])
    assert "75%" in opened[2].reason
    # Once one closes again, another may open.
    eng.tick(40.0)
    probes(eng, [True] * 20, start=41.0)
    assert trip(eng, 50.0, {"route": "checkout", "model": "llama"})[0].to_state == "open"


def test_single_model_route_is_never_blacked_out_unless_the_policy_says_so() -> None:
    eng = engine(models=("gpt-4o",))
    [t] = trip(eng, 10.0)
    assert t.alert_only and "capacity cap" in t.reason
    whole_route = engine(models=MODELS)
    [t] = trip(whole_route, 10.0, {"route": "checkout"})
    assert t.alert_only and "100%" in t.reason
    allowed = engine(policy(max_open_share=1.0), models=("gpt-4o",))
    assert trip(allowed, 10.0)[0].to_state == "open"
    secrets = engine(policy(trips=[{"kind": "error_rate.high", "ignore_capacity_cap": True}]),
                     models=("gpt-4o",))
    assert trip(secrets, 10.0)[0].to_state == "open"


def test_deployments_count_as_capacity_and_tenant_targets_are_exempt() -> None:
    eng = BreakerPolicyEngine(load_policy())
    for dep in ("east", "west", "north"):
        eng.on_trace({"route": "checkout", "model": "gpt-4o", "deployment": dep}, True, 0.0)
    eng.on_trace({"route": "checkout", "model": "claude"}, True, 0.0)
    # gpt-4o covers 3 of 4 members → above 50%.
    assert trip(eng, 10.0)[0].alert_only
    assert trip(eng, 10.0, {**GPT, "deployment": "east"})[0].to_state == "open"
    tenant = {**GPT, "tenant": "acme"}
    assert trip(eng, 10.0, tenant)[0].to_state == "open"


def test_repeated_alert_only_records_are_suppressed_for_a_while() -> None:
    eng = engine(models=("gpt-4o",))
    assert len(trip(eng, 10.0)) == 1
    assert trip(eng, 20.0) == []
    assert len(trip(eng, 10.0 + 300)) == 1


# -- manual override ---------------------------------------------------------------------

def test_manual_close_wins_over_findings_until_it_expires() -> None:
    eng = engine()
    trip(eng, 10.0)
    [o] = eng.override(GPT_T, "closed", "false positive, INC-42", "alice", now=12.0, until=612.0)
    assert (o.from_state, o.to_state, o.operator, o.expires_at) == ("open", "closed", "alice", 612.0)
    [a] = trip(eng, 20.0)
    assert a.alert_only and "manual override by alice" in a.reason and a.to_state == "closed"
    assert eng.tick(611.0) == []
    [e] = eng.tick(612.0)
    assert (e.to_state, e.operator, e.expires_at) == ("closed", None, None)
    assert "expired" in e.reason
    assert trip(eng, 700.0)[0].to_state == "open"


def test_manual_open_ends_in_probing_and_bypasses_the_cap() -> None:
    eng = engine(models=("gpt-4o",))
    [o] = eng.override("route=checkout,model=gpt-4o", "open", "vendor outage", "bob", now=5.0)
    assert o.to_state == "open" and o.expires_at == 5.0 + 3600 and o.cooldown_until is None
    assert eng.tick(3000.0) == []  # the automatic cooldown does not apply
    [r] = eng.release("model=gpt-4o,route=checkout", "carol", now=3001.0, reason="vendor fixed")
    assert (r.from_state, r.to_state, r.operator) == ("open", "half_open", "carol")
    assert "carol" in r.reason and eng.release(GPT_T, "carol", now=3002.0) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("half_open", "r", "op"), "open' or 'closed"),
        (("open", "r", " "), "operator"),
        (("open", "r", "op", 10.0, 5.0), "not after now"),
        (("open", "r", "op", 10.0, 10.0 + 8 * 86400), "override_max_s"),
    ],
)
def test_override_validation(args: tuple, needle: str) -> None:
    state, reason, operator, *rest = args
    now, until = (rest + [10.0, None])[:2] if rest else (10.0, None)
    with pytest.raises(ValueError, match=needle):
        engine().override(GPT_T, state, reason, operator, now=now, until=until)


# -- records and state -------------------------------------------------------------------

def test_current_record_and_deterministic_ids() -> None:
    eng = engine()
    [t] = trip(eng, 10.0)
    cur = eng.current(GPT_T)
    assert cur is not None and (cur.to_state, cur.reason, cur.finding_ids) == (
        "open", t.reason, t.finding_ids)
    [t2] = trip(engine(), 10.0)
    assert t2.transition_id == t.transition_id


def test_fallback_hint_is_carried_while_not_closed() -> None:
    eng = engine(policy(fallback="gpt-4o-mini"))
    assert trip(eng, 10.0)[0].fallback == "gpt-4o-mini"
    assert eng.tick(40.0)[0].fallback == "gpt-4o-mini"
    assert probes(eng, [True] * 20, start=41.0)[0].fallback is None


def test_state_roundtrip_mid_probe_continues_identically() -> None:
    a = engine()
    trip(a, 10.0)
    trip(a, 10.0, {"route": "checkout", "model": "claude"})
    a.override("tenant=acme", "open", "fraud", "dave", now=11.0, until=100.0)
    a.tick(40.0)
    probes(a, [True] * 5 + [False], start=41.0)
    state = json.loads(json.dumps(a.to_state()))
    b = BreakerPolicyEngine.from_state(state, load_policy())

    def rest(eng: BreakerPolicyEngine) -> list[dict]:
        out = probes(eng, [True] * 20, start=42.0)
        out += eng.tick(100.0) + trip(eng, 101.0)
        return [t.to_dict() for t in out]

    assert rest(a) == rest(b) and len(rest(engine())) >= 1


def test_idle_targets_are_forgotten_so_state_stays_small() -> None:
    eng = engine(policy(trip_decay_s=100))
    for i, m in enumerate(MODELS[:2]):
        trip(eng, 10.0 + i, {"route": "checkout", "model": m})
    assert [t.to_state for t in eng.tick(41.0)] == ["half_open", "half_open"]
    probes(eng, [True] * 20, start=41.0)
    probes(eng, [True] * 20, start=41.0, scope={"route": "checkout", "model": "claude"})
    eng.tick(200.0)
    assert eng.targets() == [] and eng.current(GPT_T) is None
    eng.tick(10_000.0)  # route members unseen past inventory_ttl_s leave too
    assert eng.to_state() == {"v": 1, "targets": {}, "routes": {}}


def test_policy_reload_keeps_state_and_stamps_the_new_version() -> None:
    eng = engine()
    trip(eng, 10.0)
    eng.set_policy(BreakerPolicy.model_validate({"version": "v2"}))
    [h] = eng.tick(40.0)
    assert h.policy_version == "v2" and eng.state(GPT_T) == "half_open"
