"""Issue scenarios end to end over the pure detectors: silent provider update, owned prompt
change, unregistered prompt version, unowned route, stable stream; each within a bounded
delay, one finding per change, and the same finding after a restart."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from detectors.findings import Finding
from detectors.ownership import (
    ChangeLedger,
    LedgerEntry,
    OwnershipRegistry,
    UnownedChangeDetector,
    UnownedComponentTracker,
    VersionWatcher,
    looks_like_refusal,
)
from detectors.ownership.config import OwnershipSettings, VersionSettings
from detectors.ownership.simulate import TrafficProfile, simulate

REGISTRY = OwnershipRegistry.from_yaml(
    Path(__file__).resolve().parents[1] / "deploy" / "config" / "owners.yaml")
BASE = TrafficProfile()  # route support-chat, owned by support-ai
PRE, POST = 8000, 3000  # traces before / after the change (2 traces/s)
MAX_DELAY_TRACES = 1500  # a change must be reported within this many traces (~12 min)


@dataclass
class Run:
    changes: list[tuple[int, Finding]] = field(default_factory=list)
    versions: list[Finding] = field(default_factory=list)
    components: list[Finding] = field(default_factory=list)
    change_t: float = 0.0


def run(after: TrafficProfile | None, seed: int = 0, events: tuple[tuple[float, LedgerEntry], ...] = (),
        base: TrafficProfile = BASE, pre: int = PRE, post: int = POST) -> Run:
    """Feed one stream to all three detectors. ``events`` are (delay, entry): the entry reaches
    the ledger ``delay`` s after the change and its ``at`` is an offset from the change time."""
    settings = OwnershipSettings()
    ledger, out = ChangeLedger(settings.ledger), Run()
    detector = UnownedChangeDetector(base.route, base.model, settings.change, settings.version)
    watcher = VersionWatcher(VersionSettings(learn_s=1800.0))
    tracker = UnownedComponentTracker(settings.components)
    arrivals: list[tuple[float, LedgerEntry]] = []
    for i, s in enumerate(simulate(base, pre + post, seed=seed, change_index=pre, after=after or base)):
        if i == pre:
            out.change_t = s.at
            arrivals = [(s.at + delay, replace(e, at=s.at + e.at)) for delay, e in events]
        for item in [a for a in arrivals if s.at >= a[0]]:
            ledger.add(item[1])
            arrivals.remove(item)
        if (f := detector.update(s, ledger, REGISTRY)) is not None:
            out.changes.append((i, f))
        out.versions += watcher.update(s, ledger, REGISTRY)
        out.components += tracker.update(s, REGISTRY)
    return out


def only_change_after(r: Run) -> tuple[int, Finding]:
    assert len(r.changes) == 1, [f.kind for _, f in r.changes]
    i, f = r.changes[0]
    assert PRE <= i < PRE + MAX_DELAY_TRACES
    assert abs(f.at - r.change_t) < 600.0  # the estimated change time is near the true one
    return i, f


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silent_provider_update_raises_one_unowned_alert_naming_the_fingerprint(seed: int) -> None:
    after = replace(BASE, system_fingerprint="fp_9z8y7x", tokens_log_mean=5.45, style_seed=2)
    r = run(after, seed)
    _, f = only_change_after(r)
    assert f.kind == "change.unowned_behaviour" and f.severity in ("warning", "critical")
    assert "output_tokens" in f.evidence["signals"]
    sus = f.evidence["suspect"]
    assert (sus["field"], sus["from"], sus["to"]) == ("system_fingerprint", "fp_a1b2c3", "fp_9z8y7x")
    assert abs(sus["changed_at"] - r.change_t) < 1.0
    assert f.evidence["page"]["team"] == "support-ai"
    assert "no change event" in f.evidence["summary"]
    # the new fingerprint itself is an unregistered version (info by default)
    assert [(v.subject["field"], v.severity) for v in r.versions] == [("system_fingerprint", "info")]


@pytest.mark.parametrize("seed", [0, 1])
def test_same_shift_with_a_matching_prompt_event_is_owned_and_not_alerted(seed: int) -> None:
    event = LedgerEntry("prompt", "support-system", "v13", at=0.0, old_version="v12",
                        owner="support-ai", scope_routes=("support-chat",),
                        link="https://git.example/support/pull/412", event_id="chg-412")
    after = replace(BASE, prompt_version="v13", tokens_log_mean=5.45)
    r = run(after, seed, events=((60.0, event),))  # CI publishes a minute after the rollout
    _, f = only_change_after(r)
    assert f.kind == "change.owned" and f.severity == "info"
    assert f.evidence["matched_event"]["event_id"] == "chg-412"
    assert f.evidence["owner"] == "support-ai" and f.evidence["match"] == "version"
    assert not UnownedChangeDetector("r", "m").feeds_breaker(f, "info")
    assert r.versions == []  # registered within the grace period


def test_a_prompt_event_does_not_own_a_provider_side_change() -> None:
    event = LedgerEntry("prompt", "support-system", "v13", at=0.0, owner="support-ai",
                        scope_routes=("support-chat",), event_id="unrelated")
    after = replace(BASE, system_fingerprint="fp_9z8y7x", tokens_log_mean=5.45)
    _, f = only_change_after(run(after, 3, events=((0.0, event),)))
    assert f.kind == "change.unowned_behaviour"


def test_new_prompt_version_in_traffic_without_an_event_is_an_unowned_change() -> None:
    r = run(replace(BASE, prompt_version="v13"), seed=4)
    assert r.changes == []  # behaviour did not move
    assert len(r.versions) == 1
    v = r.versions[0]
    assert v.kind == "change.unregistered_version" and v.severity == "warning"
    assert v.evidence["version"] == "v13" and v.evidence["previous_version"] == "v12"
    assert abs(v.at - r.change_t) < 1.0
    assert v.evidence["component_owner"]["team"] == "support-ai"


def test_route_with_no_owner_is_an_unowned_component_once() -> None:
    r = run(None, seed=5, base=replace(BASE, route="beta-labs", application="labs"), pre=3000, post=0)
    assert [(f.kind, f.subject["component_kind"], f.subject["component_id"]) for f in r.components] == [
        ("ownership.unowned_component", "route", "beta-labs"),
        ("ownership.unowned_component", "application", "labs"),
    ]
    assert r.changes == [] and r.versions == []


def test_stable_stream_produces_nothing() -> None:
    r = run(None, seed=6, pre=30_000, post=0)
    assert r.changes == [] and r.versions == [] and r.components == []


def test_error_rate_change_on_a_new_deployment_is_critical_and_feeds_the_breaker() -> None:
    after = replace(BASE, deployment="gpt4o-westeu-2", ttft_ms=520.0, error_rate=0.08)
    r = run(after, seed=7)
    _, f = only_change_after(r)
    assert f.kind == "change.unowned_behaviour" and f.severity == "critical"
    assert f.evidence["suspect"]["field"] == "deployment"
    assert UnownedChangeDetector("r", "m").feeds_breaker(f, OwnershipSettings().breaker_min_severity)
    assert [v.subject["field"] for v in r.versions] == ["deployment"]


def test_restart_in_the_middle_of_a_change_gives_the_same_finding() -> None:
    after = replace(BASE, system_fingerprint="fp_9z8y7x", tokens_log_mean=5.45)
    samples = list(simulate(BASE, PRE + POST, seed=8, change_index=PRE, after=after))
    ledger = ChangeLedger()
    whole = UnownedChangeDetector(BASE.route, BASE.model)
    expected = [f for s in samples if (f := whole.update(s, ledger)) is not None]
    assert len(expected) == 1
    det = UnownedChangeDetector(BASE.route, BASE.model)
    got = []
    for i, s in enumerate(samples):
        if i % 997 == 0 or det.change_detected:  # restart often, and while a change is pending
            state = json.dumps(det.to_state(), allow_nan=False)
            det = UnownedChangeDetector.from_state(json.loads(state))
        if (f := det.update(s, ledger)) is not None:
            got.append(f)
    assert [f.finding_id for f in got] == [f.finding_id for f in expected]
    assert got[0].evidence["suspect"] == expected[0].evidence["suspect"]


def test_detector_state_stays_small_with_embeddings() -> None:
    det = UnownedChangeDetector(BASE.route, BASE.model)
    for s in simulate(BASE, 5000, seed=9):
        det.update(s)
    assert len(json.dumps(det.to_state())) < 16_000


def test_settle_period_lets_a_late_ledger_event_own_the_change_via_advance() -> None:
    after = replace(BASE, prompt_version="v13", tokens_log_mean=5.5)
    det, ledger = UnownedChangeDetector(BASE.route, BASE.model), ChangeLedger()
    last = 0.0
    for s in simulate(BASE, PRE + POST, seed=10, change_index=PRE, after=after):
        assert det.update(s, ledger) is None, "emitted before the settle period ended"
        last = s.at
        if det.change_detected:
            break
    assert det.change_detected
    ledger.add(LedgerEntry("prompt", "support-system", "v13", at=last, owner="support-ai",
                           event_id="late"))
    f = det.advance(last + det.config.settle_s, ledger)
    assert f is not None and f.kind == "change.owned" and f.evidence["owner"] == "support-ai"


def test_looks_like_refusal() -> None:
    refusals = ["I'm sorry, but I can't help with that.", "I cannot assist with this request.",
                "As an AI, I won't provide instructions for that.",
                "Unfortunately, I am unable to share that information."]
    answers = ["I can't wait to show you the new features!", "Sure, here are three options.",
               "Your order shipped yesterday; I cannot see a delay on it."]
    assert all(looks_like_refusal(t) for t in refusals)
    assert not any(looks_like_refusal(t) for t in answers)


def test_without_a_version_change_the_nearest_relevant_event_in_scope_owns_it() -> None:
    older = LedgerEntry("toolset", "support-tools", "ts-6", at=-3000.0, owner="ml-platform",
                        scope_routes=("support-*",), event_id="older")
    nearest = LedgerEntry("guardrail_policy", "gp", "gp-4", at=-120.0, owner="trust-safety",
                          event_id="nearest")
    other_model = LedgerEntry("model", "claude-*", "2024-10", at=0.0, owner="ml-platform",
                              event_id="other-model")
    after = replace(BASE, refusal_rate=0.08)
    r = run(after, seed=11, events=((0.0, older), (0.0, nearest)))
    _, f = only_change_after(r)
    assert f.kind == "change.owned" and f.evidence["match"] == "window"
    assert f.evidence["matched_event"]["event_id"] == "nearest"
    assert f.evidence["owner"] == "trust-safety"
    r = run(after, seed=11, events=((0.0, other_model),))
    _, f = only_change_after(r)
    assert f.kind == "change.unowned_behaviour"
    assert f.evidence["suspect"]["component_kind"] == "guardrail_policy"
