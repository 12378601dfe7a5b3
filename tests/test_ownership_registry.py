"""Ownership registry, unowned-component tracking and the ownership settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detectors.ownership import BehaviourSample, OwnershipRegistry, UnownedComponentTracker
from detectors.ownership.config import ComponentSettings, OwnershipSettings

OWNERS_YAML = Path(__file__).resolve().parents[1] / "deploy" / "config" / "owners.yaml"
DAY = 86400.0


def registry(**owners: dict[str, str]) -> OwnershipRegistry:
    return OwnershipRegistry.from_mapping({
        "version": "t1",
        "teams": {"a": {"oncall": "pd:a"}, "b": {"oncall": "pd:b", "contact": "#b"}},
        "owners": owners,
    })


def test_shipped_registry_loads_and_resolves_routes_models_and_policies() -> None:
    reg = OwnershipRegistry.from_yaml(OWNERS_YAML)
    assert reg.version
    assert reg.owner_of("route", "support-chat").team == "support-ai"
    assert reg.owner_of("model", "gpt-4o-2024-08-06").team == "ml-platform"
    assert reg.owner_of("guardrail_policy", "anything").team == "trust-safety"
    assert reg.owner_of("route", "an-unknown-route") is None


def test_exact_id_beats_patterns_and_the_most_specific_pattern_wins() -> None:
    reg = registry(route={"*": "a", "checkout-*": "b", "checkout-eu": "a"})
    assert reg.owner_of("route", "checkout-eu").team == "a"
    assert reg.owner_of("route", "checkout-us").team == "b"
    assert reg.owner_of("route", "search").team == "a"
    assert reg.owner_of("route", "checkout-us").matched_by == "route:checkout-*"


def test_owner_to_page_falls_back_from_route_to_application_to_model() -> None:
    reg = registry(application={"shop": "b"}, model={"gpt-*": "a"})
    assert reg.owner_to_page("r", "shop", "gpt-4o").team == "b"
    assert reg.owner_to_page("r", "other", "gpt-4o").team == "a"
    assert reg.owner_to_page("r", "other", "claude") is None


def test_errors_name_the_field_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"owners.route.x: team 'nobody' is not defined"):
        registry(route={"x": "nobody"})
    with pytest.raises(ValueError, match=r"owners.routes: unknown component kind"):
        registry(routes={"x": "a"})
    with pytest.raises(ValueError, match="missing 'version:'"):
        OwnershipRegistry.from_mapping({"teams": {}})


def test_registry_round_trips_through_its_published_form() -> None:
    reg = OwnershipRegistry.from_yaml(OWNERS_YAML)
    again = OwnershipRegistry.from_mapping(json.loads(json.dumps(reg.to_dict())))
    assert again.content_hash == reg.content_hash
    assert again.owner_of("prompt", "checkout-upsell") == reg.owner_of("prompt", "checkout-upsell")


def sample(at: float, route: str = "quiz", **kw: object) -> BehaviourSample:
    return BehaviourSample(at=at, route=route, request_model="gpt-4o", **kw)  # type: ignore[arg-type]


def test_unowned_component_is_reported_once_then_as_a_daily_count() -> None:
    reg = registry(model={"*": "a"}, route={"faq": "a"})
    tracker = UnownedComponentTracker()
    findings = []
    for i in range(500):  # 500 traces over ~1.2 days on an unowned route
        findings += tracker.update(sample(1000.0 + i * 200.0), reg)
    kinds = [f.kind for f in findings]
    assert kinds == ["ownership.unowned_component", "ownership.unowned_component.daily"]
    first, daily = findings
    assert first.subject == {"component_kind": "route", "component_id": "quiz"}
    assert "owners.route" in first.evidence["fix"]
    traces_day0 = sum(1 for i in range(500) if (1000.0 + i * 200.0) < DAY)
    assert daily.score == traces_day0 and daily.evidence["day"] == "1970-01-01"
    # the timer flushes the day that just ended without another trace
    flushed = tracker.advance(3 * DAY)
    assert [f.kind for f in flushed] == ["ownership.unowned_component.daily"]
    assert flushed[0].score == 500 - traces_day0
    assert tracker.advance(4 * DAY) == []


def test_owned_components_are_silent_and_a_registry_reload_takes_effect() -> None:
    tracker = UnownedComponentTracker()
    before = registry(model={"*": "a"})
    assert [f.subject["component_kind"] for f in tracker.update(sample(1.0, prompt_template_id="p"), before)] \
        == ["route", "prompt"]
    after = OwnershipRegistry.from_mapping({**before.to_dict(), "version": "t2",
                                            "owners": {"model": {"*": "a"}, "route": {"quiz": "b"},
                                                       "prompt": {"p": "b"}}})
    assert tracker.update(sample(2.0, prompt_template_id="p"), after) == []


def test_tracker_state_is_json_and_bounded() -> None:
    reg = registry(model={"*": "a"})
    tracker = UnownedComponentTracker(ComponentSettings(max_components=16))
    for i in range(100):
        tracker.update(sample(float(i), route=f"r{i}"), reg)
    state = json.loads(json.dumps(tracker.to_state()))
    assert len(state["seen"]) == 16
    restored = UnownedComponentTracker.from_state(state, ComponentSettings(max_components=16))
    assert restored.update(sample(200.0, route="r99"), reg) == []  # already reported


def test_settings_defaults_and_errors_name_the_key() -> None:
    s = OwnershipSettings()
    assert s.change.settle_s > 0 and s.versions.grace_s > 0
    assert OwnershipSettings.from_mapping({"version": "9", "ownership": {}}).version == "9"
    with pytest.raises(ValueError, match=r"ownership.versions.grace_sec"):
        OwnershipSettings.from_mapping({"ownership": {"versions": {"grace_sec": 1}}})
    with pytest.raises(ValueError, match=r"ownership.change.mean_shift.batch"):
        OwnershipSettings.from_mapping({"ownership": {"change": {"mean_shift": {"batch": 0}}}})
