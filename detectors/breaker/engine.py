"""The breaker policy engine: findings and probe outcomes in, breaker transitions out.

A pure state machine per target (closed → open → half-open → closed/open), after
Envoy's outlier detection (ejection with a base time that grows with repeated ejections,
a maximum ejection share per cluster) and LiteLLM's deployment cooldowns, with the
half-open probing of the classic circuit breaker (Nygard, *Release It!*). Unlike those,
it trips on any finding kind the policy names (errors, PII or secrets in completions,
severe drift, exhausted budgets, unowned behaviour changes), and an operator's manual
override wins until it expires or is released.

Time is whatever ``now`` the caller passes (epoch seconds); nothing reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from detectors.breaker.admission import CLOSED, HALF_OPEN, OPEN
from detectors.breaker.capacity import RouteInventory
from detectors.breaker.policy import BreakerPolicy, BreakerSettings, TripRule
from detectors.breaker.records import Override, TargetState, Transition
from detectors.breaker.targets import covers, parse_target, scope_of, target_key
from detectors.findings import Finding

SEEN_IDS = 64  # finding ids remembered per target to ignore redeliveries

class BreakerPolicyEngine:
    """Breaker state for every target, driven by findings, traffic and the clock.

    Parameters
    ----------
    policy
        The loaded :class:`~detectors.breaker.policy.BreakerPolicy`.

    Feed it ``on_finding(finding, now)`` for every finding, ``on_trace(scope, is_ok,
    now)`` for every trace (route inventory, minimum traffic, half-open probe outcomes)
    and ``tick(now)`` every few seconds (cooldown and override expiry). Each returns the
    :class:`~detectors.breaker.records.Transition` records to publish, in order.

    Examples
    --------
    >>> from detectors.breaker.policy import BreakerPolicy
    >>> engine = BreakerPolicyEngine(BreakerPolicy(version="doc"))
    >>> for model in ("gpt-4o", "claude"):          # the route has two models
    ...     _ = engine.on_trace({"route": "checkout", "model": model}, True, now=0.0)
    >>> high = Finding("error_rate.high", {"route": "checkout", "model": "gpt-4o"},
    ...                0.4, 0.25, at=10.0, severity="critical")
    >>> [(t.target, t.to_state, t.cooldown_until) for t in engine.on_finding(high, now=10.0)]
    [('model=gpt-4o,route=checkout', 'open', 40.0)]
    >>> [t.to_state for t in engine.tick(now=40.0)]
    ['half_open']
    >>> out = [engine.on_trace({"route": "checkout", "model": "gpt-4o"}, True, now=41.0 + i)
    ...        for i in range(20)]
    >>> [t.to_state for ts in out for t in ts]
    ['closed']
    """

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._targets: dict[str, TargetState] = {}
        self._probing: set[str] = set()
        self._scopes: dict[str, dict[str, str]] = {}
        self._inventory = RouteInventory(policy.traffic_window_s)

    def set_policy(self, policy: BreakerPolicy) -> None:
        """Hot reload: state is kept; new transitions carry the new version."""
        self.policy = policy
        self._inventory.window_s = policy.traffic_window_s

    # -- inputs ----------------------------------------------------------------------
    def on_finding(self, finding: Finding, now: float) -> list[Transition]:
        """Apply one finding; returns the transitions (or alert-only records) it causes."""
        scope = scope_of(finding.subject)
        if not scope:
            return []
        target = target_key(scope)
        name, settings = self.policy.settings_for(scope)
        rule = settings.trip_rule(finding.kind, finding.severity, finding.score)
        if rule is None:
            return []
        st = self._get(target)
        if finding.finding_id in st.seen:
            return []  # delivered again: already acted on
        st.seen = [*st.seen[-(SEEN_IDS - 1):], finding.finding_id]
        out = self._advance(target, st, now)
        ids = self._collect(st, rule, finding, now)
        if ids is None:
            return out  # fewer than rule.count such findings within rule.within_s so far
        what = (
            f"{finding.kind} ({finding.severity}, score {finding.score:.3g})"
            if rule.count == 1
            else f"{rule.count} x {finding.kind} within {rule.within_s:g}s"
        )
        if st.override is not None:
            ov = st.override
            why = f"{what} would trip, but manual override by {ov.operator} holds {ov.state}"
            return out + self._alert(target, st, "override", why, ids, now)
        if rule.respect_opt_out and finding.evidence.get("breaker") is False:
            why = f"{what}: finding asks for alert only (evidence.breaker=false)"
            return out + self._alert(target, st, "opt_out", why, ids, now)
        if st.state == OPEN:
            return out
        if st.state == HALF_OPEN:
            return out + [self._trip(target, st, f"{what} during half-open probing", ids, now)]
        traffic = self._inventory.traffic(scope, now) if rule.min_traffic else 0.0
        if rule.min_traffic and traffic < rule.min_traffic:
            why = (
                f"{what} would trip, but traffic {traffic:.0f} < min_traffic "
                f"{rule.min_traffic} in {self.policy.traffic_window_s:g}s: alert only"
            )
            return out + self._alert(target, st, "min_traffic", why, ids, now)
        if not rule.ignore_capacity_cap:
            share, members = self._open_share_with(scope, now)
            if share > settings.max_open_share + 1e-9:
                why = (
                    f"{what} would trip, but opening it would leave {share:.0%} of route "
                    f"{scope.get('route')!r} ({members} model/deployment(s) seen) open, above "
                    f"max_open_share {settings.max_open_share:.0%}: alert only (capacity cap)"
                )
                return out + self._alert(target, st, "capacity", why, ids, now)
        return out + [self._trip(target, st, f"{what} matched scope '{name}'", ids, now)]

    def on_trace(self, scope: Mapping[str, str], is_ok: bool, now: float) -> list[Transition]:
        """Count one request on ``scope`` (route, model, deployment, tenant); while a
        breaker covering it is half-open, the request is one of its probes."""
        return self.on_traffic(scope, 1, 0 if is_ok else 1, now)

    def on_traffic(
        self, scope: Mapping[str, str], requests: int, errors: int, now: float
    ) -> list[Transition]:
        """Pre-aggregated form of :meth:`on_trace`: ``requests`` of which ``errors`` failed."""
        if requests <= 0:
            return []
        if not 0 <= errors <= requests:
            raise ValueError(f"errors ({errors}) must be between 0 and requests ({requests})")
        scope = scope_of(scope)
        self._inventory.observe(scope, now, requests)
        out: list[Transition] = []
        for target in sorted(self._probing):
            st = self._targets[target]
            if now < st.since or not covers(self._scope(target), scope):
                continue  # a request from before probing began (consumer lag) is no probe
            st.probe_ok += requests - errors
            st.probe_fail += errors
            out += self._judge_probes(target, st, now)
        return out

    def tick(self, now: float) -> list[Transition]:
        """Time-driven changes: cooldown → half-open, override expiry, trip-count decay,
        and forgetting idle targets and members."""
        out: list[Transition] = []
        for target in sorted(self._targets):
            st = self._targets[target]
            out += self._advance(target, st, now)
            _, settings = self._settings(target)
            if st.state == CLOSED and st.trips and now - st.since >= settings.trip_decay_s:
                st.trips = 0
            self._prune_pending(st, settings, now)
            if self._idle(st, settings, now):
                del self._targets[target]
                self._scopes.pop(target, None)
        self._inventory.prune(now, self.policy.inventory_ttl_s)
        return out

    # -- operators -------------------------------------------------------------------
    def override(
        self, target: str, state: str, reason: str, operator: str, now: float,
        until: float | None = None,
    ) -> list[Transition]:
        """Force ``state`` (``"open"`` or ``"closed"``) on a target until ``until``
        (default ``now + override_default_s``) or :meth:`release`; findings meanwhile
        only yield alert-only records."""
        if state not in (OPEN, CLOSED):
            raise ValueError(f"override state {state!r}: use 'open' or 'closed'")
        if not operator.strip() or not reason.strip():
            raise ValueError("override needs an operator identity and a reason (both empty?)")
        target = target_key(parse_target(target))
        if not target:
            raise ValueError("override target is empty; write e.g. 'route=checkout,model=gpt-4o'")
        _, settings = self._settings(target)
        until = now + settings.override_default_s if until is None else float(until)
        if not math.isfinite(until):  # NaN compares false both ways: it would never expire
            raise ValueError(f"override until ({until}) is not a time; give an epoch or ISO time")
        if until <= now:
            raise ValueError(f"override until ({until}) is not after now ({now}); give a later time")
        if until - now > settings.override_max_s:
            raise ValueError(
                f"override lasts {until - now:g}s, above override_max_s {settings.override_max_s:g}s; "
                "shorten it or raise override_max_s in the policy"
            )
        st = self._get(target)
        st.override = Override(state, reason, operator, now, until)
        st.pending.clear()
        st.open_until = None  # the automatic cooldown does not apply under an override
        why = f"manual override by {operator}: {reason}"
        return [self._move(target, st, state, why, [], now, operator=operator)]

    def release(
        self, target: str, operator: str, now: float, reason: str = ""
    ) -> list[Transition]:
        """End a manual override early; a forced open goes half-open (probes decide),
        a forced close stays closed. No override → no transition."""
        target = target_key(parse_target(target))
        st = self._targets.get(target)
        if st is None or st.override is None:
            return []
        why = f"manual override released by {operator}" + (f": {reason}" if reason else "")
        return [self._end_override(target, st, why, now, operator)]

    # -- views -----------------------------------------------------------------------
    def state(self, target: str) -> str:
        st = self._targets.get(target_key(parse_target(target)))
        return CLOSED if st is None else st.state

    def current(self, target: str) -> Transition | None:
        """The record describing a target's current state (what the compacted topic holds)."""
        target = target_key(parse_target(target))
        st = self._targets.get(target)
        if st is None:
            return None
        name, settings = self._settings(target)
        return self._record(target, st, st.prev, st.state, st.reason, st.finding_ids,
                            st.since, name, settings, st.override.operator if st.override else None)

    def targets(self) -> list[str]:
        return sorted(self._targets)

    def idle(self) -> bool:
        """Nothing to remember: every target closed and forgotten by :meth:`tick` (an open,
        half-open or overridden one never is) and no member seen within the inventory TTL.
        The worker then deletes the route's state (streams/breaking.py)."""
        return not self._targets and len(self._inventory) == 0

    # -- state -----------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state (targets with non-default fields only, route members)."""
        return {
            "v": 1,
            "targets": {t: st.to_dict() for t, st in self._targets.items()},
            "routes": self._inventory.to_state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], policy: BreakerPolicy) -> BreakerPolicyEngine:
        engine = cls(policy)
        for target, data in state.get("targets", {}).items():
            st = TargetState.from_dict(data)
            engine._targets[target] = st
            if st.state == HALF_OPEN:
                engine._probing.add(target)
        engine._inventory = RouteInventory.from_state(state.get("routes", {}), policy.traffic_window_s)
        return engine

    # -- internals -------------------------------------------------------------------
    def _scope(self, target: str) -> dict[str, str]:
        scope = self._scopes.get(target)
        if scope is None:
            scope = self._scopes[target] = parse_target(target)
        return scope

    def _settings(self, target: str) -> tuple[str, BreakerSettings]:
        return self.policy.settings_for(self._scope(target))

    def _get(self, target: str) -> TargetState:
        st = self._targets.get(target)
        if st is None:
            st = self._targets[target] = TargetState()
        return st

    def _collect(self, st: TargetState, rule: TripRule, finding: Finding, now: float) -> list[str] | None:
        if rule.count == 1:
            return [finding.finding_id]
        seen = [p for p in st.pending.get(rule.kind, []) if now - p[0] <= rule.within_s]
        if finding.finding_id not in {p[1] for p in seen}:  # a replayed finding counts once
            seen.append([now, finding.finding_id])
        if len(seen) < rule.count:
            st.pending[rule.kind] = seen[-rule.count:]
            return None
        st.pending.pop(rule.kind, None)
        return [p[1] for p in seen[-rule.count:]]

    def _open_share_with(self, scope: dict[str, str], now: float) -> tuple[float, int]:
        route = scope.get("route")
        if not route or "tenant" in scope:
            return 0.0, 0  # a tenant's breaker blocks one tenant, not the route's capacity
        open_scopes = [scope]
        for target, st in self._targets.items():
            other = self._scope(target)
            if st.state != CLOSED and other.get("route") == route and "tenant" not in other:
                open_scopes.append(other)
        return self._inventory.open_share(route, open_scopes, now)

    def _advance(self, target: str, st: TargetState, now: float) -> list[Transition]:
        if st.override is not None and now >= st.override.until:
            why = f"manual override by {st.override.operator} expired"
            return [self._end_override(target, st, why, now, None)]
        if st.override is None and st.state == OPEN and st.open_until is not None and now >= st.open_until:
            _, settings = self._settings(target)
            why = f"cooldown elapsed; probing with {settings.probe_share:.0%} of traffic"
            return [self._move(target, st, HALF_OPEN, why, [], now)]
        return []

    def _end_override(
        self, target: str, st: TargetState, reason: str, now: float, operator: str | None
    ) -> Transition:
        forced = st.override.state if st.override else CLOSED
        st.override = None
        # A forced open ends in probing rather than full traffic: the cause may persist.
        return self._move(target, st, HALF_OPEN if forced == OPEN else CLOSED, reason, [], now,
                          operator=operator)

    def _trip(self, target: str, st: TargetState, reason: str, ids: list[str], now: float) -> Transition:
        _, settings = self._settings(target)
        if st.state == CLOSED and now - st.since >= settings.trip_decay_s:
            st.trips = 0  # quiet long enough: back-off starts over
        st.trips += 1
        cooldown = settings.cooldown(st.trips)
        st.open_until = now + cooldown
        why = f"{reason}; open for {cooldown:g}s (trip {st.trips})"
        return self._move(target, st, OPEN, why, ids, now)

    def _judge_probes(self, target: str, st: TargetState, now: float) -> list[Transition]:
        _, s = self._settings(target)
        allowed = math.floor(s.probe_max_error_rate * s.probe_requests)
        seen = st.probe_ok + st.probe_fail
        if st.probe_fail > allowed:
            why = (f"half-open probes failed: {st.probe_fail} errors in {seen} probes "
                   f"(at most {allowed} of {s.probe_requests} allowed)")
            return [self._trip(target, st, why, [], now)]
        if seen >= s.probe_requests:
            why = f"half-open probes passed: {st.probe_ok} ok, {st.probe_fail} errors in {seen}"
            return [self._move(target, st, CLOSED, why, [], now)]
        return []

    def _alert(
        self, target: str, st: TargetState, key: str, reason: str, ids: list[str], now: float
    ) -> list[Transition]:
        _, settings = self._settings(target)
        if st.alert_key == key and st.alert_at is not None and now - st.alert_at < settings.alert_repeat_s:
            return []  # the same alert-only record was published moments ago
        st.alert_key, st.alert_at = key, now
        name, _ = self._settings(target)
        return [self._record(target, st, st.state, st.state, reason, ids, now, name, settings,
                             None, alert_only=True)]

    def _move(
        self, target: str, st: TargetState, to_state: str, reason: str, ids: list[str],
        now: float, operator: str | None = None,
    ) -> Transition:
        from_state = st.state
        st.prev, st.state, st.since, st.reason, st.finding_ids = from_state, to_state, now, reason, list(ids)
        st.probe_ok = st.probe_fail = 0
        if to_state == HALF_OPEN:
            self._probing.add(target)
        else:
            self._probing.discard(target)
        if to_state != OPEN:
            st.open_until = None
        name, settings = self._settings(target)
        return self._record(target, st, from_state, to_state, reason, ids, now, name, settings, operator)

    def _record(
        self, target: str, st: TargetState, from_state: str, to_state: str, reason: str,
        ids: list[str], at: float, rule: str, settings: BreakerSettings, operator: str | None,
        alert_only: bool = False,
    ) -> Transition:
        ov = st.override
        return Transition(
            target=target, from_state=from_state, to_state=to_state, reason=reason,
            finding_ids=tuple(ids), policy_version=self.policy.version, at=at,
            probe_share=settings.probe_share if to_state == HALF_OPEN else 0.0,
            fallback=settings.fallback if to_state != CLOSED else None,
            operator=operator or (ov.operator if ov else None),
            expires_at=ov.until if ov else None, trip_count=st.trips, alert_only=alert_only,
            rule=rule, cooldown_until=st.open_until if to_state == OPEN else None,
        )

    def _prune_pending(self, st: TargetState, settings: BreakerSettings, now: float) -> None:
        for kind in list(st.pending):
            horizon = max((r.within_s for r in settings.trips if r.kind == kind), default=0.0)
            kept = [p for p in st.pending[kind] if now - p[0] <= horizon]
            if kept:
                st.pending[kind] = kept
            else:
                del st.pending[kind]

    def _idle(self, st: TargetState, settings: BreakerSettings, now: float) -> bool:
        recent_alert = st.alert_at is not None and now - st.alert_at < settings.alert_repeat_s
        return (st.state == CLOSED and st.override is None and st.trips == 0
                and not st.pending and not recent_alert)
