"""Breaker decisions in the worker: one ``BreakerPolicyEngine`` per route.

The findings topic is keyed by route, so every finding, traffic summary and operator
command about a route reaches one ``decide`` agent, whose engine state for that route
lives in a Faust table (the capacity cap needs all of a route's models in one place).
Transitions become ``BreakerSignal`` records on the compacted breaker topic; alert-only
transitions become alerts instead, so the topic only ever holds real state.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

from detectors.breaker import (
    BreakerPolicy,
    BreakerPolicyEngine,
    Transition,
    load_policy,
    parse_target,
)
from detectors.findings import Finding
from streams.alerting import AlertGrouper, GroupingPolicy
from streams.config import WardenSettings
from streams.metrics import METRICS
from streams.records import BreakerSignal, BreakerState

TRAFFIC = "breaker.traffic"
OVERRIDE = "breaker.override"
RELEASE = "breaker.release"
CONTROL_KINDS = {TRAFFIC, OVERRIDE, RELEASE}


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def signal_from(transition: Transition) -> BreakerSignal:
    return BreakerSignal(
        signal_id=transition.transition_id, target=transition.target,
        state=BreakerState(transition.to_state), reason=transition.reason,
        finding_ids=list(transition.finding_ids),
        evidence={"from_state": transition.from_state, "trip_count": transition.trip_count,
                  "rule": transition.rule, "cooldown_until": transition.cooldown_until},
        policy_version=transition.policy_version, probe_share=transition.probe_share,
        fallback=transition.fallback, operator=transition.operator, at=_dt(transition.at) or datetime.now(UTC),
        expires_at=_dt(transition.expires_at),
    )


def traffic_finding(route: str, model: str, requests: int, errors: int, at: float) -> Finding:
    """A per-batch traffic summary for one scope: feeds minimum traffic, the capacity
    inventory and half-open probe outcomes without a record per trace."""
    return Finding(TRAFFIC, {"route": route, "model": model}, float(requests), 0.0, at, "info",
                   {"requests": requests, "errors": errors}, "govern")


class BreakerDecider:
    def __init__(self, policy: BreakerPolicy, grouping: GroupingPolicy | None = None):
        self.policy = policy
        self.grouping = grouping or GroupingPolicy()
        self._engines: dict[str, tuple[int, BreakerPolicyEngine, AlertGrouper]] = {}
        self.alert_only: list[Transition] = []
        self.forgotten = 0  # idle routes whose state tick() deleted

    @classmethod
    def from_settings(cls, settings: WardenSettings) -> BreakerDecider:
        return cls(load_policy(settings.config_dir / "breaker-policy.yaml"))

    @staticmethod
    def alerts_for_kind(kind: str) -> bool:
        return kind not in CONTROL_KINDS

    def engine(self, route: str, states: Mapping[str, Any]) -> BreakerPolicyEngine:
        return self._route(route, states)[1]

    def grouper(self, route: str, states: Mapping[str, Any]) -> AlertGrouper:
        return self._route(route, states)[2]

    def _route(self, route: str, states: Mapping[str, Any]) -> tuple[int, BreakerPolicyEngine, AlertGrouper]:
        stored = states.get(route)
        cached = self._engines.get(route)
        if cached is not None and (stored is None or stored.get("seq") == cached[0]):
            return cached
        if stored:
            loaded = (int(stored.get("seq", 0)), BreakerPolicyEngine.from_state(stored["engine"], self.policy),
                      AlertGrouper(self.grouping, dict(stored.get("alerts") or {})))
        else:
            loaded = (0, BreakerPolicyEngine(self.policy), AlertGrouper(self.grouping))
        self._engines[route] = loaded
        return loaded

    def save(self, route: str, states: MutableMapping[str, Any]) -> None:
        seq, engine, grouper = self._engines[route]
        self._engines[route] = (seq + 1, engine, grouper)
        states[route] = {"seq": seq + 1, "engine": engine.to_state(), "alerts": grouper.to_state()}

    def _save(self, route: str, engine: BreakerPolicyEngine, states: MutableMapping[str, Any]) -> None:
        self.save(route, states)

    def on_finding(self, finding: Finding, states: MutableMapping[str, Any]) -> list[BreakerSignal]:
        route = finding.subject.get("route", "")
        engine = self.engine(route, states)
        if finding.kind == TRAFFIC:
            transitions = engine.on_traffic(finding.subject, int(finding.evidence["requests"]),
                                            int(finding.evidence["errors"]), finding.at)
        elif finding.kind == OVERRIDE:
            ev = finding.evidence
            transitions = engine.override(ev["target"], ev["state"], ev["reason"], ev["operator"],
                                          finding.at, ev.get("until"))
        elif finding.kind == RELEASE:
            ev = finding.evidence
            transitions = engine.release(ev["target"], ev["operator"], finding.at, ev.get("reason", ""))
        else:
            transitions = engine.on_finding(finding, finding.at)
        self._save(route, engine, states)
        return self._signals(transitions)

    def tick(self, now: float, states: MutableMapping[str, Any]) -> list[BreakerSignal]:
        out: list[BreakerSignal] = []
        for route in list(states.keys()):
            engine = self.engine(route, states)
            transitions = engine.tick(now)
            if transitions:
                self._save(route, engine, states)
                out += self._signals(transitions)
            elif engine.idle() and self._quiet(route, now):
                # Routes are producer-chosen names (security issue 16): an idle route's state
                # is deleted (a tombstone on the changelog), so neither memory nor a restart
                # keeps every route ever named. A route with an open breaker is never idle.
                del states[route]
                self._engines.pop(route, None)
                self.forgotten += 1
                METRICS.scopes_removed.labels("route").inc()
        return out

    def _quiet(self, route: str, now: float) -> bool:
        """No alert group of the route still within its grouping window."""
        window = self.grouping.group_window_s
        return all(now - float(g.get("last_seen", 0.0)) > window for g in self._engines[route][2].groups.values())

    def _signals(self, transitions: list[Transition]) -> list[BreakerSignal]:
        signals = []
        for transition in transitions:
            if transition.alert_only:
                self.alert_only.append(transition)
                continue
            signals.append(signal_from(transition))
        return signals

    def drain_alert_only(self) -> list[Transition]:
        out, self.alert_only = self.alert_only, []
        return out


def control_finding(kind: str, target: str, now: float, **evidence: Any) -> Finding:
    """Operator commands travel on the findings topic, keyed by the target's route."""
    scope = parse_target(target)
    return Finding(kind, scope, 0.0, 0.0, now, "info", {"target": target, **evidence}, "operator")
