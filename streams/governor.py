"""The governance step for one trace: redact, price, then score it with the per-scope
detectors.

This is the code the govern agent, ``warden replay`` and the tests share, so a detector
behaves the same everywhere. It turns nothing into Kafka or ClickHouse records;
``streams.outputs`` does that.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog
import yaml

from detectors.breaker import load_policy
from detectors.cost import CostAccountant, load_price_catalog
from detectors.findings import Finding
from detectors.ownership import ChangeLedger, OwnershipRegistry, OwnershipSettings
from detectors.redaction.echo import EchoSplit, split_echoes
from detectors.redaction.redactor import EntityFinding, Redactor, TraceRedaction, entity_category
from streams.breaking import traffic_finding
from streams.cardinality import (
    OVERFLOW_MODEL,
    OVERFLOW_ROUTE,
    ScopeAdmission,
    ScopeLimits,
    held_scopes,
)
from streams.config import WardenSettings
from streams.metrics import METRICS
from streams.records import ChangeEvent, InferenceTrace
from streams.scope import Context, GovernConfig, ScopeDetectors
from streams.values import cost_sample, is_refusal, ledger_entry

log = structlog.get_logger("warden.governor")


def load_govern_config(settings: WardenSettings) -> GovernConfig:
    policy = load_policy(settings.config_dir / "breaker-policy.yaml")
    detectors_file = settings.config_dir / "detectors.yaml"
    doc = yaml.safe_load(detectors_file.read_text()) if detectors_file.is_file() else {}
    ownership = OwnershipSettings.from_mapping(
        {"ownership": doc.get("ownership") or {}, "version": str(doc.get("version", "1"))})
    registry = OwnershipRegistry.from_yaml(settings.config_dir / "owners.yaml")
    return GovernConfig(breaker=policy, ownership=ownership, registry=registry,
                        version=f"breaker={policy.version},ownership={ownership.version}")


def completion_leaks(redaction: TraceRedaction, subject: Mapping[str, str], at: float,
                     split: EchoSplit | None = None) -> list[Finding]:
    """PII or a secret in what the model *said* is a finding for the breaker: the input
    is the user's, but the output is ours.

    ``split`` (:func:`detectors.redaction.echo.split_echoes`) tells echoes from leaks:

    * PII the same request's user or tools gave and the answer repeats (the user's own
      e-mail confirmed back) is an echo: no finding. It is still redacted like any
      value; the governor counts it (``redaction.echoed`` on the stored record, the
      ``warden_redaction_echoes_total`` metric). PII only the answer holds is
      ``redaction.pii_in_completion`` (warning), evidence ``echoed`` = the PII echoes
      beside it.
    * A secret in the answer is always ``redaction.secret_in_completion`` (critical),
      echoed or not: an assistant that repeats a credential spreads it (into logs,
      transcripts, screens). Evidence ``echoed`` says how many of them the request gave.

    Without ``split`` every entity in the answer is a leak.
    """
    if split is None:
        split = EchoSplit(leaked=tuple(f for f in redaction.findings if f.field.startswith("output_messages")))
    leaked = _by_category(split.leaked)
    echoed = _by_category(split.echoed)
    reported = {"pii": leaked.get("pii", []), "secret": leaked.get("secret", []) + echoed.get("secret", [])}
    findings = []
    for category, entities in reported.items():
        if entities:
            findings.append(Finding(
                f"redaction.{category}_in_completion", dict(subject), float(len(entities)), 1.0, at,
                "critical" if category == "secret" else "warning",
                {"entities": sorted(set(entities)), "count": len(entities),
                 "echoed": len(echoed.get(category, [])),
                 "policy_version": redaction.policy_version}, "Redactor"))
    return findings


def _by_category(found: Sequence[EntityFinding]) -> dict[str, list[str]]:
    """Entity names of PII and secrets by category (plug-in entities are neither)."""
    out: dict[str, list[str]] = {}
    for f in found:
        category = entity_category(f.entity)
        if category in ("pii", "secret"):
            out.setdefault(category, []).append(f.entity)
    return out


def redact_for_storage(redactor: Redactor, trace: InferenceTrace) -> tuple[dict[str, Any], TraceRedaction, EchoSplit | None]:
    """The trace as ``govern`` stores it, as far as redaction goes (``warden redact
    --traces`` writes exactly this): the redacted fields, the ``redaction`` record and its
    echo counts; and the answer's entities split into echoes and leaks (``None`` for a
    redactor without ``fingerprint``: then every entity in the answer is a leak)."""
    original = trace.model_dump(mode="json")
    redacted, redaction = redactor.redact_trace(original)
    redacted["redaction"] = redaction.to_dict()
    fingerprint = getattr(redactor, "fingerprint", None)
    split = None if fingerprint is None else split_echoes(original, redaction.findings, fingerprint)
    if split is not None and split.echoed:
        redacted["redaction"]["echoed"] = echo_record(split)
    return redacted, redaction, split


def echo_record(split: EchoSplit) -> dict[str, int]:
    """``{entity: count}`` of the answer's echoes, for the stored redaction record
    (``redaction.echoed``): counts only, never values."""
    return dict(sorted(Counter(f.entity for f in split.echoed).items()))


def scope_limits(settings: WardenSettings) -> ScopeLimits:
    return ScopeLimits(max_total=settings.scope_max_total, max_per_route=settings.scope_max_per_route,
                       max_per_tenant=settings.scope_max_per_tenant, idle_s=settings.scope_idle_s,
                       reclaim_s=settings.scope_reclaim_s, ttl_s=settings.scope_ttl_s,
                       alert_every_s=settings.scope_alert_every_s)


def scope_subject(trace: InferenceTrace) -> dict[str, str]:
    return {"route": trace.route, "model": trace.request_model}


@dataclass
class Governed:
    """What one trace produced: the redacted record to store and the findings to act on."""

    redacted: dict[str, Any]
    findings: list[Finding]
    overflow: str | None = None  # the cardinality cap it was beyond: no detector state (streams/cardinality.py)


class Governor:
    """Redaction, pricing and scoring, holding the per-scope detectors of the partitions
    it owns.

    ``states`` is where scope state lives between batches: a Faust table in a worker (so
    it survives restarts and moves with rebalances), a plain dict in replay and tests.
    """

    def __init__(self, redactor: Any, config: GovernConfig, *, prices: Any = None,
                 limits: ScopeLimits | None = None, clock: Callable[[], float] = time.time):
        self.redactor = redactor
        self.config = config
        self.accountant = CostAccountant(prices) if prices is not None else None
        self.context = Context(ChangeLedger(config.ownership.ledger), config.registry,
                               learn_until=time.time() + config.ownership.versions.learn_s)
        # Decoded detectors, least recently used first: those idle for limits.idle_s leave
        # memory at a checkpoint and are decoded from the table again when needed.
        self._scopes: OrderedDict[str, ScopeDetectors] = OrderedDict()
        self.admission = ScopeAdmission(limits or ScopeLimits())
        self.clock = clock  # wall time: a producer's event time must not decide what is idle
        # Scopes whose state the caller deletes with the batch (reason per key, for the metric).
        self._removed: dict[str, str] = {}
        self._expired_at = self.clock()
        self._restored_len = -1

    @classmethod
    def from_settings(cls, settings: WardenSettings, redactor: Any) -> Governor:
        prices = load_price_catalog(settings.config_dir / "prices.yaml")
        return cls(redactor, load_govern_config(settings), prices=prices, limits=scope_limits(settings))

    def add_changes(self, events: list[ChangeEvent]) -> None:
        for event in events:
            self.context.ledger.add(ledger_entry(event))

    def scope(self, key: str, subject: Mapping[str, str], states: Mapping[str, Any]) -> ScopeDetectors:
        stored = states.get(key)
        cached = self._scopes.get(key)
        if cached is not None:
            self._scopes.move_to_end(key)
        # The table is the truth; the cache only saves a decode while the table still holds
        # what this cache last wrote or read (after a rebalance another worker may have
        # advanced this scope). Mid-batch the cache is ahead of the table by design.
        saved = None if stored is None else stored.get("seq")
        if cached is not None and saved == cached.saved_seq:
            return cached
        scope = (ScopeDetectors.from_state(stored, self.config) if stored
                 else ScopeDetectors(subject, self.config, learn_until=self.context.learn_until))
        scope.saved_seq = saved
        if cached is not None or stored:
            # Rare (start, rebalance): worth a line when tracing state across owners.
            log.debug("scope_loaded", scope=key, seq=scope.seq, applied=scope.applied,
                     cached_seq=None if cached is None else cached.saved_seq)
        self._scopes[key] = scope
        return scope

    def govern(self, trace: InferenceTrace, states: Mapping[str, Any],
               position: tuple[int, int] | None = None) -> Governed:
        """Redact and score one trace; ``position`` (partition, offset) makes a replayed
        trace idempotent for the detectors' state."""
        redacted, redaction, split = redact_for_storage(self.redactor, trace)
        if self.accountant is not None:
            costing = self.accountant.account(cost_sample(trace))
            redacted["cost_usd"] = costing.cost_usd
        redacted["refused"] = is_refusal(trace)
        subject = scope_subject(trace)
        now = self.clock()
        overflow = self._admit(trace, states, now)
        if overflow is not None:
            # Stored and redacted like any trace, but no detector state: its per-trace
            # findings go to the overflow scope, naming the scope they came from.
            METRICS.scope_overflow.labels(overflow).inc()
            leaks = completion_leaks(redaction, {"route": OVERFLOW_ROUTE, "model": OVERFLOW_MODEL},
                                     trace.timestamp.timestamp(), split)
            return Governed(redacted, [replace(leak, evidence={**leak.evidence, "scope": subject})
                                       for leak in leaks], overflow)
        scope = self.scope(trace.partition_key, subject, states)
        scope.tenant = scope.tenant or trace.tenant
        scope.seen_at = now
        if position is not None and scope.already_applied(*position):
            return Governed(redacted, scope.replayed(*position))
        at = trace.timestamp.timestamp()
        findings = scope.observe(trace, self.context)
        findings += completion_leaks(redaction, subject, at, split)
        if split is not None:
            for found, source in zip(split.echoed, split.echo_sources, strict=True):
                METRICS.redaction_echoes.labels(entity_category(found.entity), source).inc()
        if position is not None:
            scope.applied_at(*position, findings)
        return Governed(redacted, findings)

    def _admit(self, trace: InferenceTrace, states: Mapping[str, Any], now: float) -> str | None:
        """The overflow reason, or None when the trace's scope may hold state."""
        if len(states) - len(self._removed) > len(self.admission) and len(states) != self._restored_len:
            # Scopes in the table the admission does not know: restored at start or gained
            # in a rebalance. Read once per such change (at most the cap's scopes; not again
            # until the table's size changes, should it hold records that are no state); any
            # beyond the cap (it was lowered) are deleted, so a restart honours it.
            self._restored_len = len(states)
            for key in self.admission.restore(held_scopes(states, set(self._removed), now)):
                self._remove(key, "trimmed")
        overflow, reclaimed = self.admission.admit(trace.partition_key, trace.route, trace.tenant, now, states)
        if reclaimed is not None:
            self._remove(reclaimed, "reclaimed")
        return overflow

    def _remove(self, key: str, why: str) -> None:
        self._scopes.pop(key, None)
        self._removed[key] = why

    def take_removed(self) -> list[str]:
        """Scopes reclaimed, expired or trimmed since the last call: the caller deletes their
        state with this batch (a tombstone on the changelog)."""
        out, self._removed = self._removed, {}
        for why in out.values():
            METRICS.scopes_removed.labels(why).inc()
        return list(out)

    def drop_removed(self) -> None:
        """A fenced batch: nothing is deleted; the admission relearns these from the table."""
        self._removed = {}

    def scope_cap_finding(self) -> Finding | None:
        """The periodic ``cardinality.scope_cap`` finding while scopes overflow (logged too)."""
        METRICS.scopes_held.set(len(self.admission))
        finding = self.admission.report(self.clock())
        if finding is not None:
            log.warning("scope_cap_exceeded", **{k: v for k, v in finding.evidence.items() if k != "why"})
        return finding

    def evict_idle(self, keep: set[str]) -> int:
        """Drop decoded detectors unused for ``idle_s`` (their state stays in the table)."""
        deadline = time.monotonic() - self.admission.limits.idle_s
        evicted = 0
        while self._scopes:
            key, scope = next(iter(self._scopes.items()))
            if scope.used_at > deadline or key in keep:
                break
            del self._scopes[key]
            evicted += 1
        if evicted:
            METRICS.scopes_evicted.inc(evicted)
        return evicted

    def advance(self, now: float, keys: set[str]) -> list[Finding]:
        """Let time-driven detectors of the given scopes resolve (settle and grace periods)."""
        found: list[Finding] = []
        for key in keys:
            scope = self._scopes.get(key)
            if scope is not None:
                found += scope.advance(now, self.context)
        return found

    def checkpoint(self, keys: set[str]) -> tuple[dict[str, dict[str, Any]], list[Finding]]:
        """States of the scopes touched in a batch, to write back once per batch, and
        one traffic summary per scope for the breaker engine."""
        states: dict[str, dict[str, Any]] = {}
        traffic: list[Finding] = []
        for key in keys:
            scope = self._scopes.get(key)
            if scope is None:
                continue
            scope.close_batch()
            # A tripped scope (its breaker open or opening) is never reclaimed nor expired.
            self.admission.pin(key, scope.error_rate.tripped)
            states[key] = scope.to_state()
            scope.saved_seq = scope.seq
            if scope.batch_requests:
                traffic.append(traffic_finding(scope.subject["route"], scope.subject["model"],
                                               scope.batch_requests, scope.batch_errors, scope.batch_last_at))
            scope.batch_requests = scope.batch_errors = 0
        self.evict_idle(keys)
        now = self.clock()
        if now - self._expired_at >= min(60.0, self.admission.limits.ttl_s):  # a cheap sweep, not per batch
            self._expired_at = now
            for key in self.admission.expire(now):
                self._remove(key, "expired")
        return states, traffic

    def forget(self, keys: set[str] | None = None) -> None:
        if keys is None:
            self._scopes.clear()
        for key in keys or ():
            self._scopes.pop(key, None)
