"""Breaker policy file, target strings and the client's pure admission rules (issue 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.breaker import (
    DEFAULT_POLICY_PATH,
    BreakerPolicy,
    admit,
    allow_when_stale,
    covering_targets,
    covers,
    load_policy,
    parse_target,
    target_key,
)

# -- targets -----------------------------------------------------------------------------


def test_target_key_is_canonical() -> None:
    assert target_key({"route": "checkout", "model": "gpt-4o"}) == "model=gpt-4o,route=checkout"
    assert target_key({"model": "gpt-4o", "route": "checkout", "tenant": ""}) == (
        "model=gpt-4o,route=checkout"
    )


@given(st.dictionaries(st.sampled_from(["route", "model", "deployment", "tenant"]),
                       st.text(min_size=1, max_size=12), max_size=4))
def test_target_roundtrip_for_any_values(scope: dict[str, str]) -> None:
    assert parse_target(target_key(scope)) == scope


@pytest.mark.parametrize("bad", ["route", "route=", "Route=x", "route=a,,model=b"])
def test_parse_target_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError, match="key=value"):
        parse_target(bad)


def test_covering_targets_and_covers() -> None:
    scope = {"route": "r", "model": "m", "tenant": "t"}
    targets = covering_targets(scope)
    assert len(targets) == 7 and targets[0] == "model=m,route=r,tenant=t"
    assert all(covers(parse_target(t), scope) for t in targets)
    assert not covers({"route": "r", "model": "other"}, scope)


# -- policy ------------------------------------------------------------------------------


def test_default_policy_file_loads_with_documented_defaults() -> None:
    policy = load_policy()
    assert DEFAULT_POLICY_PATH.name == "breaker-policy.yaml" and policy.version
    name, s = policy.settings_for({"route": "anything", "model": "m"})
    kinds = {r.kind for r in s.trips}
    assert kinds == {
        "error_rate.high", "redaction.secret_in_completion", "redaction.pii_in_completion",
        "drift.embedding", "cost.budget_exhausted", "change.unowned_behaviour",
    }
    assert s.max_open_share < 1.0  # never black out a route by default
    doc = (Path(__file__).resolve().parents[1] / "docs" / "BREAKER.md").read_text()
    for field in ("cooldown_s", "probe_share", "max_open_share", "trip_decay_s", "min_traffic"):
        assert field in doc


def test_scopes_first_match_wins_and_trips_replace_defaults() -> None:
    policy = BreakerPolicy.model_validate({
        "version": "v",
        "scopes": [
            {"name": "acme-checkout", "match": {"route": "checkout", "tenant": "acme"},
             "cooldown_s": 5, "trips": [{"kind": "error_rate.high"}]},
            {"name": "checkout", "match": {"route": "check*"}, "cooldown_s": 60},
        ],
    })
    name, s = policy.settings_for({"route": "checkout", "tenant": "acme"})
    assert (name, s.cooldown_s, [r.kind for r in s.trips]) == ("acme-checkout", 5, ["error_rate.high"])
    name, s = policy.settings_for({"route": "checkout", "model": "m"})
    assert (name, s.cooldown_s, len(s.trips)) == ("checkout", 60, 6)
    assert policy.settings_for({"route": "search"})[0] == "defaults"


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({}, "version"),
        ({"version": "v", "cooldown": 3}, "cooldown"),
        ({"version": "v", "scopes": [{"name": "s", "match": {"region": "eu"}}]}, "region"),
        ({"version": "v", "scopes": [{"name": "bad", "cooldown_s": -1}]}, "bad"),
        ({"version": "v", "scopes": [{"name": "typo", "cooldwn_s": 1}]}, "cooldwn_s"),
        ({"version": "v", "defaults": {"cooldown_s": 100, "max_cooldown_s": 10}}, "max_cooldown_s"),
        ({"version": "v", "defaults": {"trips": [{"kind": "x", "min_severity": "huge"}]}},
         "min_severity"),
    ],
)
def test_policy_errors_name_the_field(doc: dict, needle: str, tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=needle):
        load_policy(path)


def test_cooldown_backoff_is_capped() -> None:
    s = load_policy().defaults
    assert [s.cooldown(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert s.cooldown(50) == s.max_cooldown_s


# -- admission rules used by the serving client ------------------------------------------


@pytest.mark.parametrize(
    ("known", "age", "limit", "mode", "expected"),
    [
        (True, 0.0, 30.0, "closed", True),     # fresh: last known state
        (False, 29.9, 30.0, "open", False),    # fresh: last known state, even if fail-open
        (False, 30.0, 30.0, "open", False),    # at the limit still trusted
        (False, 30.1, 30.0, "open", True),     # stale + fail-open → allow
        (True, 31.0, 30.0, "closed", False),   # stale + fail-closed → deny
        (False, -5.0, 30.0, "closed", False),  # clock skew counts as fresh
    ],
)
def test_staleness_rule(known: bool, age: float, limit: float, mode: str, expected: bool) -> None:
    assert allow_when_stale(known, age, limit, mode) is expected  # type: ignore[arg-type]


def test_staleness_rule_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="fail_mode"):
        allow_when_stale(True, 1.0, 1.0, "maybe")  # type: ignore[arg-type]


def test_half_open_admission_lets_the_probe_share_through() -> None:
    draws = [i / 1000 for i in range(1000)]
    assert sum(admit("half_open", 0.05, d) for d in draws) == 50
    assert all(admit("closed", 0.0, d) for d in draws)
    assert not any(admit("open", 1.0, d) for d in draws)
    with pytest.raises(ValueError, match="state"):
        admit("ajar", 0.1, 0.0)
