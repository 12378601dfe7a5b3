"""Price catalog lookup and cost accounting (detectors/cost/prices.py, accounting.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detectors.cost import (
    CostAccountant,
    CostSample,
    PriceCatalog,
    load_cost_policy,
    load_price_catalog,
)

ROOT = Path(__file__).resolve().parents[1]
T_2025 = 1_750_000_000.0  # 2025-06-15


def catalog(*entries: dict) -> PriceCatalog:
    return PriceCatalog.model_validate({"version": "test-1", "entries": list(entries)})


def entry(model: str, inp: float, out: float, start: str = "2024-01-01", **kw) -> dict:
    return {"provider": "openai", "model": model, "input_per_mtok": inp, "output_per_mtok": out,
            "effective_from": start, **kw}


def sample(**kw) -> CostSample:
    base = dict(at=T_2025, tenant="t", application="a", route="r", provider="openai",
                request_model="gpt-4o", input_tokens=1000, output_tokens=100)
    base.update(kw)
    return CostSample(**base)


def test_shipped_config_files_load():
    cat = load_price_catalog(ROOT / "deploy/config/prices.yaml")
    policy = load_cost_policy(ROOT / "deploy/config/budgets.yaml")
    assert cat.version and policy.version
    assert cat.lookup("openai", "gpt-4o-mini-2024-07-18", T_2025) is not None
    assert cat.lookup("anthropic", "claude-sonnet-4-20250514", T_2025) is not None


def test_exact_name_beats_glob_and_specific_glob_beats_generic():
    cat = catalog(entry("gpt-4o*", 1.0, 1.0), entry("gpt-4o-mini*", 2.0, 2.0),
                  entry("gpt-4o-mini-2024-07-18", 3.0, 3.0))
    assert cat.lookup("openai", "gpt-4o-mini-2024-07-18", T_2025).input_per_mtok == 3.0
    assert cat.lookup("openai", "gpt-4o-mini-2025", T_2025).input_per_mtok == 2.0
    assert cat.lookup("openai", "gpt-4o-2024", T_2025).input_per_mtok == 1.0
    assert cat.lookup("anthropic", "gpt-4o", T_2025) is None


def test_effective_dates_and_open_entry_ends_at_next():
    cat = catalog(entry("m", 1.0, 1.0, "2024-01-01"), entry("m", 2.0, 2.0, "2025-01-01"),
                  entry("old", 1.0, 1.0, "2024-01-01", effective_to="2024-06-01"))
    jan_2024, jul_2024 = 1_704_200_000.0, 1_720_000_000.0
    assert cat.lookup("openai", "m", jan_2024).input_per_mtok == 1.0
    assert cat.lookup("openai", "m", T_2025).input_per_mtok == 2.0
    assert cat.lookup("openai", "m", 1_700_000_000.0) is None  # before any entry
    assert cat.lookup("openai", "old", jul_2024) is None
    events = cat.change_events()
    assert [(e.kind, e.id) for e in events] == [("price", "openai/m")]
    assert events[0].version == "test-1"


def test_overlap_and_currency_errors_name_the_fix():
    with pytest.raises(ValueError, match="overlap.*effective_to"):
        catalog(entry("m", 1.0, 1.0, "2024-01-01", effective_to="2025-06-01"),
                entry("m", 2.0, 2.0, "2025-01-01"))
    with pytest.raises(ValueError, match="USD"):
        PriceCatalog.model_validate({"version": "x", "currency": "EUR", "entries": []})
    with pytest.raises(ValueError, match="effective_to"):
        catalog(entry("m", 1.0, 1.0, "2025-01-01", effective_to="2024-01-01"))


def test_bad_file_names_the_path(tmp_path):
    p = tmp_path / "prices.yaml"
    p.write_text("version: v\nentries:\n  - {provider: openai, model: m}\n")
    with pytest.raises(ValueError, match="prices.yaml"):
        load_price_catalog(p)


def test_cost_with_cached_tokens_inside_or_beside_input():
    inside = catalog(entry("m", 2.0, 8.0, cached_input_per_mtok=0.5))
    beside = catalog(entry("m", 2.0, 8.0, cached_input_per_mtok=0.5,
                           cached_included_in_input=False))
    s = sample(request_model="m", input_tokens=10_000, cached_input_tokens=4_000,
               output_tokens=1_000)
    # inside: 6,000 at 2.0 + 4,000 at 0.5 + 1,000 at 8.0 per million
    assert CostAccountant(inside).account(s).cost_usd == pytest.approx(0.012 + 0.002 + 0.008)
    # beside: 10,000 at 2.0 + 4,000 at 0.5 + 1,000 at 8.0
    assert CostAccountant(beside).account(s).cost_usd == pytest.approx(0.020 + 0.002 + 0.008)


def test_response_model_priced_first_then_request_model():
    cat = catalog(entry("gpt-4o", 2.0, 8.0), entry("gpt-4o-2024-08-06", 1.0, 4.0))
    acc = CostAccountant(cat)
    snap = acc.account(sample(response_model="gpt-4o-2024-08-06"))
    alias = acc.account(sample(response_model="gpt-4o-unknown-snapshot"))
    assert snap.price_key.startswith("openai/gpt-4o-2024-08-06")
    assert alias.price_key.startswith("openai/gpt-4o@") and not alias.findings


def test_reported_mismatch_beyond_tolerance_is_a_finding():
    acc = CostAccountant(catalog(entry("gpt-4o", 2.0, 8.0)), rel_tolerance=0.05)
    computed = (1000 * 2.0 + 100 * 8.0) / 1e6
    ok = acc.account(sample(reported_cost_usd=computed * 1.04))
    bad = acc.account(sample(reported_cost_usd=computed * 1.5, at=T_2025 + 1))
    assert not ok.findings and ok.cost_usd == pytest.approx(computed * 1.04)
    (f,) = bad.findings
    assert f.kind == "cost.reported_mismatch"
    assert f.score == pytest.approx(0.5) and f.threshold == 0.05
    assert f.evidence["computed_cost_usd"] == pytest.approx(computed)
    assert f.evidence["config_version"] == "test-1"
    json.dumps(f.to_dict())


def test_unpriced_model_is_a_rate_limited_finding_not_a_crash():
    acc = CostAccountant(catalog(entry("gpt-4o", 2.0, 8.0)), realert_s=3600)
    results = [acc.account(sample(request_model="mystery", at=T_2025 + i * 60)) for i in range(120)]
    found = [f for r in results for f in r.findings]
    assert [f.kind for f in found] == ["cost.unpriced_model", "cost.unpriced_model"]
    assert found[1].evidence["occurrences"] == 60  # the 59 suppressed plus itself
    assert results[0].cost_usd is None and results[0].usage.price is None
    reported = acc.account(sample(request_model="mystery", reported_cost_usd=0.01))
    assert reported.cost_usd == 0.01  # a reported cost still counts


def test_accountant_state_round_trip_keeps_the_rate_limit():
    cat = catalog(entry("gpt-4o", 2.0, 8.0))
    acc = CostAccountant(cat)
    assert acc.account(sample(request_model="mystery")).findings
    state = json.loads(json.dumps(acc.to_state()))
    again = CostAccountant.from_state(state, cat)
    assert not again.account(sample(request_model="mystery", at=T_2025 + 10)).findings
