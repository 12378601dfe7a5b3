"""Every per-(route, model) detector of one scope, with one serialisable state.

A scope's state is written to the Faust table once per batch; its size is bounded by
the detectors' own bounds (a few KB without embeddings, < 40 KB with them).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.breaker import BreakerPolicy
from detectors.error_rate import ErrorRateDetector
from detectors.findings import Finding
from detectors.ownership import (
    ChangeLedger,
    OwnershipRegistry,
    OwnershipSettings,
    UnownedChangeDetector,
    UnownedComponentTracker,
    VersionWatcher,
)
from streams.records import InferenceTrace, TraceStatus
from streams.values import behaviour_sample


@dataclass
class GovernConfig:
    """Detector settings a worker loads once at start (``deploy/config/*.yaml``)."""

    breaker: BreakerPolicy = field(default_factory=lambda: BreakerPolicy(version="builtin"))
    ownership: OwnershipSettings = field(default_factory=OwnershipSettings)
    registry: OwnershipRegistry = field(
        default_factory=lambda: OwnershipRegistry("empty", {}, {}))
    version: str = "builtin"


@dataclass
class Context:
    """What every scope consults: the ledger and the registry (global, not per scope)."""

    ledger: ChangeLedger
    registry: OwnershipRegistry
    learn_until: float | None = None


class ScopeDetectors:
    def __init__(self, subject: Mapping[str, str], config: GovernConfig, *,
                 error_rate: ErrorRateDetector | None = None,
                 change: UnownedChangeDetector | None = None,
                 versions: VersionWatcher | None = None,
                 components: UnownedComponentTracker | None = None,
                 learn_until: float | None = None):
        self.subject = dict(subject)
        self.config = config
        own = config.ownership
        self.error_rate = error_rate or ErrorRateDetector(config.breaker.error_rate_for(self.subject),
                                                          self.subject)
        self.change = change or UnownedChangeDetector(self.subject["route"], self.subject["model"],
                                                      own.change, own.version)
        self.versions = versions or VersionWatcher(own.versions, learn_until=learn_until)
        self.components = components or UnownedComponentTracker(own.components)
        self.seq = 0
        self.tenant = ""  # the tenant of the trace that created the scope (per-tenant cap)
        self.seen_at = 0.0  # wall time (s) of the last trace: reclaiming and expiring idle scopes
        self.used_at = time.monotonic()  # last use in memory: evicting idle decoded detectors
        self.saved_seq: int | None = None  # seq last written to / read from the table
        # Effectively-once under at-least-once delivery: the highest source offset applied
        # per partition, and the findings of the last checkpointed batch. A batch replayed
        # after a crash is not applied twice; its findings are re-emitted from the outbox
        # (same ids, so storage keeps one copy) in case they were lost with the crash.
        self.applied: dict[str, int] = {}
        self.outbox: list[list[Any]] = []
        self.pending: list[list[Any]] = []
        self.applied_in_batch = False
        # Traffic since the last checkpoint, summarised once per batch for the breaker.
        self.batch_requests = 0
        self.batch_errors = 0
        self.batch_last_at = 0.0

    def observe(self, trace: InferenceTrace, context: Context) -> list[Finding]:
        self.seq += 1
        self.used_at = time.monotonic()
        at = trace.timestamp.timestamp()
        is_error = trace.status == TraceStatus.error
        self.batch_requests += 1
        self.batch_errors += int(is_error)
        self.batch_last_at = max(self.batch_last_at, at)
        findings: list[Finding] = []
        finding = self.error_rate.update(is_error, at, retry=trace.attempt > 1)
        if finding is not None:
            findings.append(finding)
        sample = behaviour_sample(trace)
        change = self.change.update(sample, context.ledger, context.registry)
        if change is not None:
            findings.append(change)
        findings += self.versions.update(sample, context.ledger, context.registry)
        findings += self.components.update(sample, context.registry)
        return findings

    def already_applied(self, partition: int, offset: int) -> bool:
        return offset <= self.applied.get(str(partition), -1)

    def replayed(self, partition: int, offset: int) -> list[Finding]:
        return [Finding.from_dict(f) for p, o, f in self.outbox if p == partition and o == offset]

    def applied_at(self, partition: int, offset: int, findings: list[Finding]) -> None:
        self.applied[str(partition)] = max(offset, self.applied.get(str(partition), -1))
        self.pending += [[partition, offset, f.to_dict()] for f in findings]
        self.applied_in_batch = True

    def close_batch(self) -> None:
        """At a checkpoint: the findings of a batch that applied anything become the outbox
        stored with the state. A batch that only replayed keeps the outbox: a replay can span
        several batches, and each must still find the findings it re-emits."""
        if self.applied_in_batch:
            self.outbox, self.pending = self.pending, []
        self.applied_in_batch = False

    def advance(self, now: float, context: Context) -> list[Finding]:
        """Time-driven resolution (settle periods, grace periods, daily counts)."""
        found = self.versions.advance(now, context.ledger, context.registry)
        change = self.change.advance(now, context.ledger, context.registry)
        if change is not None:
            found.append(change)
        return found + self.components.advance(now, context.registry.version)

    def to_state(self) -> dict[str, Any]:
        return {"v": 2, "seq": self.seq, "subject": self.subject, "tenant": self.tenant,
                "seen_at": self.seen_at, "tripped": self.error_rate.tripped, "applied": self.applied,
                "outbox": self.outbox,
                "error_rate": self.error_rate.to_state(), "change": self.change.to_state(),
                "versions": self.versions.to_state(), "components": self.components.to_state()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: GovernConfig) -> ScopeDetectors:
        subject = state["subject"]
        own = config.ownership
        scope = cls(
            subject, config,
            error_rate=ErrorRateDetector.from_state(state["error_rate"], config.breaker.error_rate_for(subject)),
            change=UnownedChangeDetector.from_state(state["change"], own.change, own.version)
            if "change" in state else None,
            versions=VersionWatcher.from_state(state["versions"], own.versions) if "versions" in state else None,
            components=UnownedComponentTracker.from_state(state["components"], own.components)
            if "components" in state else None,
        )
        scope.seq = int(state.get("seq", 0))
        scope.tenant = str(state.get("tenant", ""))
        scope.seen_at = float(state.get("seen_at") or 0.0)
        scope.applied = {str(k): int(v) for k, v in (state.get("applied") or {}).items()}
        scope.outbox = list(state.get("outbox") or [])
        return scope
