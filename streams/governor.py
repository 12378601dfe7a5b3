"""The governance step for one trace: redact, then score it with the per-scope detectors.

This is the code the govern agent, ``warden replay`` and the tests share, so a detector
behaves the same everywhere. It maps a trace to the values each detector takes and
turns nothing into Kafka or ClickHouse records; ``streams.outputs`` does that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.breaker import BreakerPolicy, load_policy
from detectors.error_rate import ErrorRateDetector
from detectors.findings import Finding
from detectors.redaction.redactor import TraceRedaction, entity_category
from streams.breaking import traffic_finding
from streams.config import WardenSettings
from streams.records import InferenceTrace, TraceStatus


@dataclass
class GovernConfig:
    """Detector settings a worker loads once at start (``deploy/config/*.yaml``)."""

    breaker: BreakerPolicy = field(default_factory=lambda: BreakerPolicy(version="builtin"))
    version: str = "builtin"


def load_govern_config(settings: WardenSettings) -> GovernConfig:
    policy = load_policy(settings.config_dir / "breaker-policy.yaml")
    return GovernConfig(breaker=policy, version=policy.version)


class ScopeDetectors:
    """Every per-(route, model) detector for one scope, with one serialisable state."""

    def __init__(self, subject: Mapping[str, str], config: GovernConfig,
                 error_rate: ErrorRateDetector | None = None):
        self.subject = dict(subject)
        self.config = config
        self.error_rate = error_rate or ErrorRateDetector(config.breaker.error_rate_for(self.subject),
                                                          self.subject)
        self.seq = 0
        # Traffic since the last checkpoint, summarised once per batch for the breaker.
        self.batch_requests = 0
        self.batch_errors = 0
        self.batch_last_at = 0.0

    def observe(self, trace: InferenceTrace) -> list[Finding]:
        self.seq += 1
        at = trace.timestamp.timestamp()
        is_error = trace.status == TraceStatus.error
        self.batch_requests += 1
        self.batch_errors += int(is_error)
        self.batch_last_at = max(self.batch_last_at, at)
        findings: list[Finding] = []
        finding = self.error_rate.update(is_error, at)
        if finding is not None:
            findings.append(finding)
        return findings

    def to_state(self) -> dict[str, Any]:
        return {"v": 1, "seq": self.seq, "subject": self.subject,
                "error_rate": self.error_rate.to_state()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: GovernConfig) -> ScopeDetectors:
        subject = state["subject"]
        scope = cls(subject, config, error_rate=ErrorRateDetector.from_state(
            state["error_rate"], config.breaker.error_rate_for(subject)))
        scope.seq = int(state.get("seq", 0))
        return scope


def completion_leaks(redaction: TraceRedaction, subject: Mapping[str, str], at: float) -> list[Finding]:
    """PII or a secret in what the model *said* is a finding for the breaker: the input
    is the user's, but the output is ours."""
    leaked: dict[str, list[str]] = {"pii": [], "secret": []}
    for found in redaction.findings:
        if found.field.startswith("output_messages"):
            category = entity_category(found.entity)
            if category in leaked:
                leaked[category].append(found.entity)
    findings = []
    for category, entities in leaked.items():
        if entities:
            findings.append(Finding(
                f"redaction.{category}_in_completion", dict(subject), float(len(entities)), 1.0, at,
                "critical" if category == "secret" else "warning",
                {"entities": sorted(set(entities)), "count": len(entities),
                 "policy_version": redaction.policy_version}, "Redactor"))
    return findings


def scope_subject(trace: InferenceTrace) -> dict[str, str]:
    return {"route": trace.route, "model": trace.request_model}


@dataclass
class Governed:
    """What one trace produced: the redacted record to store and the findings to act on."""

    redacted: dict[str, Any]
    findings: list[Finding]


class Governor:
    """Redaction and scoring, holding the per-scope detectors of the partitions it owns.

    ``states`` is where scope state lives between batches: a Faust table in a worker (so
    it survives restarts and moves with rebalances), a plain dict in replay and tests.
    """

    def __init__(self, redactor: Any, config: GovernConfig):
        self.redactor = redactor
        self.config = config
        self._scopes: dict[str, ScopeDetectors] = {}

    def scope(self, key: str, subject: Mapping[str, str], states: Mapping[str, Any]) -> ScopeDetectors:
        stored = states.get(key)
        cached = self._scopes.get(key)
        # The table is the truth; the cache only saves a decode when it still matches it
        # (after a rebalance another worker may have advanced this scope).
        if cached is not None and (stored is None or stored.get("seq") == cached.seq):
            return cached
        scope = (ScopeDetectors.from_state(stored, self.config) if stored
                 else ScopeDetectors(subject, self.config))
        self._scopes[key] = scope
        return scope

    def govern(self, trace: InferenceTrace, states: Mapping[str, Any]) -> Governed:
        redacted, redaction = self.redactor.redact_trace(trace.model_dump(mode="json"))
        redacted["redaction"] = redaction.to_dict()
        subject = scope_subject(trace)
        scope = self.scope(trace.partition_key, subject, states)
        findings = scope.observe(trace)
        findings += completion_leaks(redaction, subject, trace.timestamp.timestamp())
        return Governed(redacted, findings)

    def checkpoint(self, keys: set[str]) -> tuple[dict[str, dict[str, Any]], list[Finding]]:
        """States of the scopes touched in a batch, to write back once per batch, and
        one traffic summary per scope for the breaker engine."""
        states: dict[str, dict[str, Any]] = {}
        traffic: list[Finding] = []
        for key in keys:
            scope = self._scopes.get(key)
            if scope is None:
                continue
            states[key] = scope.to_state()
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
