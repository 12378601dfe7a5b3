"""Change ledger and VersionWatcher (versions in traffic with no change event)."""

from __future__ import annotations

import json

from detectors.ownership import BehaviourSample, ChangeLedger, LedgerEntry, VersionWatcher
from detectors.ownership.config import LedgerSettings, VersionSettings


def entry(kind: str = "prompt", cid: str = "faq-sys", new: str = "v2", at: float = 1000.0,
          **kw: object) -> LedgerEntry:
    return LedgerEntry(kind, cid, new, at=at, **kw)  # type: ignore[arg-type]


def test_in_scope_filters_by_time_route_globs_tenant_and_kind() -> None:
    ledger = ChangeLedger()
    ledger.add(entry(at=100.0, scope_routes=("faq",), event_id="a"))
    ledger.add(entry(at=200.0, scope_routes=("checkout-*",), event_id="b"))
    ledger.add(entry("toolset", "tools", "t9", at=300.0, event_id="c"))  # everywhere
    ledger.add(entry(at=400.0, scope_tenants=("globex",), event_id="d"))
    ids = lambda es: [e.event_id for e in es]  # noqa: E731
    assert ids(ledger.in_scope("faq", 0.0, 1000.0)) == ["a", "c", "d"]
    assert ids(ledger.in_scope("faq", 0.0, 1000.0, tenants=["acme"])) == ["a", "c"]
    assert ids(ledger.in_scope("checkout-eu", 150.0, 350.0)) == ["b", "c"]
    assert ids(ledger.in_scope("faq", 0.0, 1000.0, kinds=["toolset"])) == ["c"]
    assert ids(ledger.in_scope("faq", 100.0, 100.0)) == ["a"]  # window bounds inclusive


def test_registered_versions_match_ids_globs_old_versions_and_any_id() -> None:
    ledger = ChangeLedger()
    ledger.add(entry("model", "gpt-4o*", "fp_new", old_version="fp_old", event_id="m"))
    assert ledger.is_registered("model", "fp_new", "gpt-4o-mini") is not None
    assert ledger.is_registered("model", "fp_old", "gpt-4o") is not None
    assert ledger.is_registered("model", "fp_new", "claude-3") is None
    assert ledger.is_registered("model", "fp_new") is not None
    assert ledger.is_registered("prompt", "fp_new") is None


def test_replays_are_deduplicated_and_retention_is_bounded_but_versions_stay_known() -> None:
    ledger = ChangeLedger(LedgerSettings(retention_s=1000.0, max_entries=50))
    assert ledger.add(entry(event_id="x")) is True
    assert ledger.add(entry(event_id="x")) is False
    for i in range(200):
        ledger.add(entry(new=f"v{i}", at=2000.0 + i, event_id=f"e{i}"))
    assert len(ledger) == 50
    assert ledger.in_scope("faq", 0.0, 1500.0) == []  # expired by time
    assert ledger.is_registered("prompt", "v2", "faq-sys") is not None  # remembered


def test_ledger_state_round_trips_through_json() -> None:
    ledger = ChangeLedger()
    for i in range(5):
        ledger.add(entry(new=f"v{i}", at=float(i), owner="t", scope_routes=("faq",),
                         link="https://x/pull/1", event_id=f"e{i}"))
    state = json.loads(json.dumps(ledger.to_state()))
    again = ChangeLedger.from_state(state)
    assert again.in_scope("faq", 0.0, 10.0) == ledger.in_scope("faq", 0.0, 10.0)
    assert again.is_registered("prompt", "v3", "faq-sys") is not None


def traffic(at: float, version: str, route: str = "faq", **kw: object) -> BehaviourSample:
    return BehaviourSample(at=at, route=route, request_model="gpt-4o", tenant="acme",
                           prompt_template_id="faq-sys", prompt_template_version=version, **kw)  # type: ignore[arg-type]


def run(watcher: VersionWatcher, ledger: ChangeLedger, samples: list[BehaviourSample],
        arrivals: dict[float, LedgerEntry] | None = None) -> list:
    out = []
    for s in samples:
        for t, e in list((arrivals or {}).items()):
            if s.at >= t:
                ledger.add(e)
                del arrivals[t]  # type: ignore[union-attr]
        out += watcher.update(s, ledger)
    return out


def stream(version_at: float, version: str, until: float, step: float = 10.0) -> list[BehaviourSample]:
    return [traffic(t, "v1" if t < version_at else version)
            for t in [i * step for i in range(int(until / step))]]


def test_versions_seen_while_learning_are_the_baseline() -> None:
    watcher = VersionWatcher(VersionSettings(learn_s=3600.0))
    assert run(watcher, ChangeLedger(), stream(1800.0, "v2", 6000.0)) == []


def test_unregistered_version_is_reported_after_the_grace_period() -> None:
    cfg = VersionSettings(learn_s=600.0, grace_s=300.0)
    watcher = VersionWatcher(cfg)
    found = run(watcher, ChangeLedger(), stream(2000.0, "v2", 4000.0))
    assert len(found) == 1
    f = found[0]
    assert f.kind == "change.unregistered_version" and f.at == 2000.0
    assert f.subject == {"route": "faq", "component_kind": "prompt", "component_id": "faq-sys",
                         "field": "prompt"}
    assert f.evidence["version"] == "v2" and f.evidence["previous_version"] == "v1"


def test_a_change_event_arriving_within_the_grace_period_owns_the_version() -> None:
    cfg = VersionSettings(learn_s=600.0, grace_s=300.0)
    late = {2250.0: entry(new="v2", at=2000.0, event_id="late")}  # published 250 s after traffic
    assert run(VersionWatcher(cfg), ChangeLedger(), stream(2000.0, "v2", 4000.0), late) == []
    too_late = {2400.0: entry(new="v2", at=2000.0, event_id="too-late")}
    assert len(run(VersionWatcher(cfg), ChangeLedger(), stream(2000.0, "v2", 4000.0), too_late)) == 1


def test_advance_resolves_an_idle_partition() -> None:
    cfg = VersionSettings(learn_s=0.0, grace_s=300.0)
    watcher, ledger = VersionWatcher(cfg, learn_until=0.0), ChangeLedger()
    assert watcher.update(traffic(1000.0, "v5"), ledger) == []
    assert watcher.pending == 1
    assert watcher.advance(1200.0, ledger) == []
    assert [f.evidence["version"] for f in watcher.advance(1301.0, ledger)] == ["v5"]


def test_new_provider_identity_is_explained_by_our_serving_change_in_scope() -> None:
    cfg = VersionSettings(learn_s=0.0, grace_s=300.0)
    ledger = ChangeLedger()
    ledger.add(entry("deployment", "gpt4o-westeu-2", "2024-06-01", at=900.0,
                     scope_routes=("faq",), event_id="dep"))
    watcher = VersionWatcher(cfg, learn_until=0.0)
    samples = [traffic(1000.0 + i, "v1", deployment="gpt4o-westeu-2", system_fingerprint="fp_x")
               for i in range(400)]
    found = run(watcher, ledger, samples)
    fields = {f.subject["field"] for f in found}
    assert "deployment" not in fields and "system_fingerprint" not in fields
    assert fields == {"prompt"}  # the prompt version is still nobody's


def test_fingerprint_findings_use_their_configured_severity_and_state_survives_restart() -> None:
    cfg = VersionSettings(learn_s=0.0, grace_s=300.0)
    watcher, ledger = VersionWatcher(cfg, learn_until=500.0), ChangeLedger()
    watcher.update(traffic(0.0, "v1", system_fingerprint="fp_a"), ledger)
    watcher.update(traffic(1000.0, "v1", system_fingerprint="fp_b"), ledger)
    restored = VersionWatcher.from_state(json.loads(json.dumps(watcher.to_state())), cfg)
    found = restored.advance(1400.0, ledger)
    assert [(f.subject["field"], f.severity) for f in found] == [("system_fingerprint", "info")]
    assert found[0].evidence["previous_version"] == "fp_a"
