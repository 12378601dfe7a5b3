"""The governance step for one trace: redact, price, then score it with the per-scope
detectors.

This is the code the govern agent, ``warden replay`` and the tests share, so a detector
behaves the same everywhere. It turns nothing into Kafka or ClickHouse records;
``streams.outputs`` does that.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import yaml

from detectors.breaker import load_policy
from detectors.cost import CostAccountant, load_price_catalog
from detectors.findings import Finding
from detectors.ownership import ChangeLedger, OwnershipRegistry, OwnershipSettings
from detectors.redaction.echo import EchoSplit, split_echoes
from detectors.redaction.redactor import EntityFinding, TraceRedaction, entity_category
from streams.breaking import traffic_finding
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


def echo_record(split: EchoSplit) -> dict[str, int]:
    """``{entity: count}`` of the answer's echoes, for the stored redaction record
    (``redaction.echoed``): counts only, never values."""
    return dict(sorted(Counter(f.entity for f in split.echoed).items()))


def scope_subject(trace: InferenceTrace) -> dict[str, str]:
    return {"route": trace.route, "model": trace.request_model}


@dataclass
class Governed:
    """What one trace produced: the redacted record to store and the findings to act on."""

    redacted: dict[str, Any]
    findings: list[Finding]


class Governor:
    """Redaction, pricing and scoring, holding the per-scope detectors of the partitions
    it owns.

    ``states`` is where scope state lives between batches: a Faust table in a worker (so
    it survives restarts and moves with rebalances), a plain dict in replay and tests.
    """

    def __init__(self, redactor: Any, config: GovernConfig, *, prices: Any = None):
        self.redactor = redactor
        self.config = config
        self.accountant = CostAccountant(prices) if prices is not None else None
        self.context = Context(ChangeLedger(config.ownership.ledger), config.registry,
                               learn_until=time.time() + config.ownership.versions.learn_s)
        self._scopes: dict[str, ScopeDetectors] = {}

    @classmethod
    def from_settings(cls, settings: WardenSettings, redactor: Any) -> Governor:
        prices = load_price_catalog(settings.config_dir / "prices.yaml")
        return cls(redactor, load_govern_config(settings), prices=prices)

    def add_changes(self, events: list[ChangeEvent]) -> None:
        for event in events:
            self.context.ledger.add(ledger_entry(event))

    def scope(self, key: str, subject: Mapping[str, str], states: Mapping[str, Any]) -> ScopeDetectors:
        stored = states.get(key)
        cached = self._scopes.get(key)
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
        original = trace.model_dump(mode="json")
        redacted, redaction = self.redactor.redact_trace(original)
        redacted["redaction"] = redaction.to_dict()
        split = self.echoes(original, redaction)
        if split is not None and split.echoed:
            redacted["redaction"]["echoed"] = echo_record(split)
        if self.accountant is not None:
            costing = self.accountant.account(cost_sample(trace))
            redacted["cost_usd"] = costing.cost_usd
        redacted["refused"] = is_refusal(trace)
        subject = scope_subject(trace)
        scope = self.scope(trace.partition_key, subject, states)
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

    def echoes(self, original: Mapping[str, Any], redaction: TraceRedaction) -> EchoSplit | None:
        """The answer's entities split into echoes and leaks (``None`` for a redactor
        without ``fingerprint``: then every entity in the answer is a leak)."""
        fingerprint = getattr(self.redactor, "fingerprint", None)
        if fingerprint is None:
            return None
        return split_echoes(original, redaction.findings, fingerprint)

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
            states[key] = scope.to_state()
            scope.saved_seq = scope.seq
            if scope.batch_requests:
                traffic.append(traffic_finding(scope.subject["route"], scope.subject["model"],
                                               scope.batch_requests, scope.batch_errors, scope.batch_last_at))
            scope.batch_requests = scope.batch_errors = 0
        return states, traffic

    def forget(self, keys: set[str] | None = None) -> None:
        if keys is None:
            self._scopes.clear()
        for key in keys or ():
            self._scopes.pop(key, None)
