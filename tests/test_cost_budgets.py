"""Budgets and multiwindow burn-rate alerts, checked against hand-computed cases."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.cost import (
    BudgetSpec,
    BurnRateBudget,
    BurnRule,
    CostPolicy,
    WindowedSums,
    period_bounds,
)

DAY0 = 1_749_945_600.0  # 2025-06-15 00:00 UTC, a day boundary
PAGE_1H = BurnRule(severity="page", long_window="1h", short_window="5m", burn_rate=14.4)


def budget(amount: float = 1440.0, period: str = "day", on_exhaustion: str = "alert",
           rules: tuple[BurnRule, ...] = (PAGE_1H,)) -> BurnRateBudget:
    spec = BudgetSpec(id="b1", scope={"tenant": "acme"}, amount_usd=amount, period=period,
                      on_exhaustion=on_exhaustion)
    return BurnRateBudget(spec, rules, config_version="budgets-test")


def at_minute(m: float) -> float:
    return DAY0 + m * 60.0 + 30.0


def test_steady_burn_fires_when_both_windows_cross_by_hand():
    # 1440 USD/day = 1 USD/min. Spending 15 USD/min: after m+1 minutes the 1 h window
    # holds 15(m+1) USD, a burn of 15(m+1)/60; it reaches 14.4 at m+1 = 58 (14.5).
    # The 5 m window is full from minute 4 on: 75 USD / 5 min = burn 15.
    b = budget()
    fired = {m: b.update(at_minute(m), 15.0) for m in range(60)}
    assert [m for m, f in fired.items() if f] == [57]
    (f,) = fired[57]
    assert f.kind == "cost.budget_burn" and f.severity == "critical"
    assert f.evidence["burn_rate_long"] == pytest.approx(14.5)
    assert f.evidence["burn_rate_short"] == pytest.approx(15.0)
    assert f.evidence["spend_long_usd"] == pytest.approx(870.0)
    assert f.threshold == 14.4 and f.score == pytest.approx(14.5)
    assert f.subject == {"tenant": "acme", "budget": "b1"}
    assert f.evidence["config_version"] == "budgets-test"
    json.dumps(f.to_dict())


def test_long_window_alone_does_not_fire_short_window_must_agree():
    b = budget()
    assert b.update(at_minute(0), 800.0) == []       # long burn 13.3, short 160
    # Minute 30: the hour holds 870 (burn 14.5) but the last 5 minutes only 70 (burn 14).
    assert b.update(at_minute(30), 70.0) == []
    assert b.burn_rate(3600) == pytest.approx(14.5)
    assert b.burn_rate(300) == pytest.approx(14.0)
    # Minute 31: 880 in the hour (14.67), 80 in 5 minutes (16): both above.
    (f,) = b.update(at_minute(31), 10.0)
    assert f.evidence["burn_rate_short"] == pytest.approx(16.0)


def test_alert_clears_when_spend_stops_and_can_fire_again():
    b = budget()
    assert b.update(at_minute(0), 900.0)              # burn 15 long, 180 short: fires
    assert b.update(at_minute(1), 1.0) == []          # still firing: no repeat
    assert b.update(at_minute(10), 0.0) == []         # short window empty: clears
    assert not b.firing
    (again,) = b.update(at_minute(11), 100.0)         # 1001 in the hour, 100 in 5 min
    assert again.kind == "cost.budget_burn"


def test_ticket_rule_on_hour_buckets_by_hand():
    # 3.5 USD/min against 1 USD/min: the 1 d window's burn is 3.5(m+1)/1440, which
    # reaches 3 at m+1 = 1234.3, so it fires at minute 1234; the 2 h window burns 3.5.
    ticket = BurnRule(severity="ticket", long_window="1d", short_window="2h", burn_rate=3.0)
    b = budget(rules=(ticket,))
    found = {m: b.update(at_minute(m), 3.5) for m in range(1300)}
    burns = [(m, f.severity) for m, fs in found.items() for f in fs if f.kind == "cost.budget_burn"]
    assert burns == [(1234, "warning")]
    # and the day's 1440 USD are gone after 412 minutes
    assert [m for m, fs in found.items() for f in fs if f.kind == "cost.budget_exhausted"] == [411]
    assert b.firing == {0}


def test_exhaustion_opens_breaker_once_per_period_then_resets():
    b = budget(amount=100.0, on_exhaustion="breaker", rules=(PAGE_1H,))
    kinds = []
    for i in range(15):
        kinds.append([f.kind for f in b.update(DAY0 + i * 600.0, 10.0)])
    exhausted_at = [i for i, k in enumerate(kinds) if "cost.budget_exhausted" in k]
    assert exhausted_at == [9]                        # the tenth 10 USD reaches 100
    assert b.breaker_open and b.spent_usd == pytest.approx(150.0)
    found = b.update(DAY0 + 86400.0 + 1, 1.0)         # next day: a new period
    assert not b.exhausted and not b.breaker_open and b.spent_usd == pytest.approx(1.0)
    assert all(f.kind != "cost.budget_exhausted" for f in found)


def test_exhaustion_finding_carries_breaker_flag_from_config():
    for policy, breaker in (("breaker", True), ("alert", False)):
        b = budget(amount=5.0, on_exhaustion=policy)
        (f,) = [f for f in b.update(DAY0, 6.0) if f.kind == "cost.budget_exhausted"]
        assert f.evidence["breaker"] is breaker and f.severity == "critical"
        assert f.evidence["period_end"] == DAY0 + 86400
        assert b.breaker_open is breaker


def test_late_spend_from_previous_period_is_counted_apart():
    b = budget(amount=1000.0)
    b.update(DAY0 + 86400 + 10, 5.0)
    b.update(DAY0 + 86400 - 10, 7.0)                 # yesterday, arriving late
    assert b.spent_usd == pytest.approx(5.0) and b.late == 1
    assert b.spend(3600) == pytest.approx(12.0)       # but it did burn in the last hour


def test_period_bounds_calendar_and_fixed():
    assert period_bounds("day", DAY0 + 5) == (DAY0, DAY0 + 86400)
    start, end = period_bounds("week", DAY0)          # Sunday 2025-06-15
    assert (end - start) == 7 * 86400 and DAY0 - start == 6 * 86400
    start, end = period_bounds("month", DAY0)
    assert (end - start) == 30 * 86400
    assert period_bounds("7d", 10 * 86400.0) == (7 * 86400.0, 14 * 86400.0)


def test_config_errors_name_the_field_and_fix():
    with pytest.raises(ValueError, match="short_window"):
        BurnRule(severity="page", long_window="5m", short_window="1h", burn_rate=1)
    with pytest.raises(ValueError, match="whole number of minutes"):
        budget(rules=(BurnRule(severity="page", long_window="1h", short_window=90,
                               burn_rate=2),))
    with pytest.raises(ValueError, match="scope keys"):
        BudgetSpec(id="x", scope={"team": "a"}, amount_usd=1)
    with pytest.raises(ValueError, match="appears twice"):
        CostPolicy(version="v", budgets=[{"id": "a", "amount_usd": 1}, {"id": "a", "amount_usd": 2}])


def test_policy_matches_budgets_by_scope():
    policy = CostPolicy(version="v", budgets=[
        {"id": "tenant", "scope": {"tenant": "acme"}, "amount_usd": 10},
        {"id": "route", "scope": {"tenant": "acme", "route": "chat"}, "amount_usd": 1},
        {"id": "all", "amount_usd": 100}])
    assert [b.id for b in policy.budgets_for("acme", "app", "chat")] == ["tenant", "route", "all"]
    assert [b.id for b in policy.budgets_for("globex", "app", "chat")] == ["all"]


def test_state_round_trip_continues_identically():
    rules = CostPolicy(version="v").burn_rules
    a = budget(amount=2000.0, rules=rules)
    for m in range(0, 400, 3):
        a.update(at_minute(m), 2.0 + (m % 7))
    state = json.loads(json.dumps(a.to_state()))
    b = BurnRateBudget.from_state(state, a.budget, rules, "budgets-test")
    assert len(json.dumps(state)) < 20_000
    for m in range(400, 2000, 2):
        fa, fb = a.update(at_minute(m), 20.0), b.update(at_minute(m), 20.0)
        assert [f.to_dict() for f in fa] == [f.to_dict() for f in fb]
    for w in (300, 1800, 3600, 7200, 21600, 86400, 259200):
        assert a.spend(w) == pytest.approx(b.spend(w))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-400, 4000), st.floats(0, 100)), min_size=1, max_size=80))
def test_windowed_sums_match_brute_force(events):
    ws = WindowedSums(bucket_s=60, windows=[1, 5, 60])
    kept = []
    head = None
    for sec, amount in sorted(events, key=lambda e: e[0] + (e[0] % 7) * 300):  # some late
        b = math.floor(sec / 60)
        head = b if head is None else max(head, b)
        if ws.add(float(sec), amount):
            kept.append((b, amount))
        else:
            assert b <= head - 60
    for i, w in enumerate(ws.windows):
        brute = sum(a for b, a in kept if head - w < b <= head)
        assert ws.sums[i] == pytest.approx(brute, abs=1e-6)
