"""Everything the agents call, built once from settings: the governor, the breaker
decisions, the ClickHouse store. Agents stay a few lines; the branches live here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import replace
from typing import Any

import structlog

from detectors.config import load_detectors_config
from detectors.drift import DriftConfig
from detectors.findings import Finding
from sinks import tables
from sinks.audit import AuditLog
from sinks.audit_records import alert_records, breaker_records, finding_records
from sinks.audit_signing import parse_seed
from sinks.clickhouse import ClickHouseStore, batch_token
from streams.breaking import TRAFFIC, BreakerDecider
from streams.cardinality import OVERFLOW_MODEL, OVERFLOW_ROUTE
from streams.config import WardenSettings
from streams.drift_stage import DriftStage, TraceDrift
from streams.economics import Economics
from streams.governor import Governor, scope_limits
from streams.guard.clock import EventTimeBounds, decision_time
from streams.guard.control import (
    ControlKeys,
    Unauthenticated,
    admit_finding,
    admit_signal,
    control_keys,
)
from streams.guard.sink_rows import store_batch
from streams.ledger import ChangeFollower
from streams.metrics import METRICS
from streams.outputs import alert_for, alert_only_alert
from streams.records import Alert, BreakerSignal, InferenceTrace
from streams.values import cost_sample, cost_sample_record

log = structlog.get_logger("warden.worker")

# Decisions (issue 10): each sink batch of these is chained into the audit log.
AUDITED = {
    "findings": ("findings.v1", finding_records),
    "alerts": ("alerts.v1", alert_records),
    "breaker_events": ("breaker.v1", breaker_records),
}


def drift_settings(settings: WardenSettings) -> tuple[Any, str]:
    config = load_detectors_config(settings.config_dir / "detectors.yaml")
    return config.drift or DriftConfig(), config.version


def audit_seed(settings: WardenSettings) -> bytes | None:
    if settings.audit_signing_key is None:
        return None
    return parse_seed(settings.audit_signing_key.get_secret_value())


# Where each table's records come from (the topic a sink dead letter names).
SOURCES = {"traces": "traces.redacted.v1", "findings": "findings.v1", "alerts": "alerts.v1",
           "breaker_events": "breaker.v1", "change_events": "changes.v1", "dead_letters": "deadletter.v1"}

LAYOUTS = {
    "traces": tables.TRACES,
    "findings": tables.FINDINGS,
    "alerts": tables.ALERTS,
    "breaker_events": tables.BREAKER_EVENTS,
    "change_events": tables.CHANGE_EVENTS,
    "dead_letters": tables.DEAD_LETTERS,
}


class Wiring:
    def __init__(self, settings: WardenSettings, governor: Governor, decider: BreakerDecider,
                 store: ClickHouseStore | None, economics: Economics | None = None,
                 changes: ChangeFollower | None = None, drift: DriftStage | None = None):
        self.settings = settings
        self.governor = governor
        self.decider = decider
        self.economics = economics or Economics.from_settings(settings)
        self.changes = changes
        self.drift = drift or DriftStage(
            TraceDrift(*drift_settings(settings), torch_threads=settings.drift_threads),
            limits=scope_limits(settings))
        self._store = store
        self.audit = (AuditLog(store, signing_key=audit_seed(settings),
                               checkpoint_every=settings.audit_checkpoint_every,
                               checkpoint_interval_s=settings.audit_checkpoint_interval_s)
                      if store is not None else None)
        if self.audit is not None and self.audit.signer is None:
            log.warning("audit_unsigned", detail="no WARDEN_AUDIT_SIGNING_KEY: audit checkpoints are unsigned and "
                        "detect accidents, not an attacker with write access (docs/AUDIT.md, 'Keys in production')")
        # Signed control records (issue 16, streams/guard/control.py): what this worker writes
        # is signed with its key; what decide, the sinks and serving act on must be.
        self.control: ControlKeys = control_keys(settings)
        if not self.control.required:
            log.warning("control_records_unauthenticated",
                        detail="no WARDEN_WORKER_PUBLIC_KEYS / WARDEN_OPERATOR_PUBLIC_KEYS / WARDEN_SIGNAL_KEY: "
                               "findings, overrides and breaker signals are accepted unsigned and operator "
                               "names are recorded as unauthenticated:<name> (docs/SECURITY.md)")
        self.stopping = threading.Event()
        self.dead_letters_stored = 0
        # Event time is bounded by this worker's clock (streams.guard.clock); tests set both.
        self.bounds = EventTimeBounds(settings.event_time_skew_s, settings.event_time_max_age_s)
        self.clock: Callable[[], float] = time.time

    @property
    def store(self) -> ClickHouseStore:
        if self._store is None:
            raise RuntimeError("this worker runs role=govern and has no ClickHouse store; "
                               "query the sink worker or the server")
        return self._store

    # -- govern ----------------------------------------------------------------------
    def poll_changes(self) -> None:
        """New change events from the ledger topic, to every consumer of the ledger."""
        if self.changes is None:
            return
        events = self.changes.drain()
        if events:
            self.governor.add_changes(events)
            self.economics.add_changes(events)

    def usage_record(self, trace: InferenceTrace, source: tuple[int, int] | None = None, *,
                     overflow: bool = False) -> dict[str, Any]:
        """``source`` (raw partition, offset) lets the economics agent apply a usage record
        once although a replayed raw batch sends it again.

        ``overflow``: the trace's scope was beyond a cardinality cap (streams/cardinality.py).
        Its cost still counts (tenant and application budgets, accounting), but under the
        overflow route and model, so producer-chosen names grow no per-(route, model) cost
        detectors. The model it asked for stays the one it is priced by."""
        sample = cost_sample(trace)
        if overflow:
            sample = replace(sample, route=OVERFLOW_ROUTE, request_model=OVERFLOW_MODEL,
                             response_model=sample.response_model or sample.request_model)
        record = cost_sample_record(sample)
        if source is not None:
            record["_source"] = list(source)
        return record

    def finding_record(self, finding: Finding) -> dict[str, Any]:
        """The finding as published: signed with the worker's key when it has one."""
        record = finding.to_dict()
        record["config_version"] = str(finding.evidence.get("config_version", self.governor.config.version))
        return self.control.sign(record)

    def signal_record(self, signal: BreakerSignal) -> dict[str, Any]:
        """A breaker signal as published: signed with the worker's key when it has one."""
        return self.control.sign(signal.model_dump(mode="json"))

    def admit(self, record: Any, stage: str = "decide") -> dict[str, Any]:
        """The finding (or operator command) as ``decide`` may act on it; an unsigned or
        wrongly signed one raises :class:`Unauthenticated`, counted and logged here."""
        try:
            return admit_finding(record, self.control)
        except Unauthenticated as exc:
            self._rejected(stage, exc, record)
            raise

    def _rejected(self, stage: str, exc: Unauthenticated, record: Any) -> None:
        fields: Mapping[str, Any] = record if isinstance(record, Mapping) else {}
        evidence = fields.get("evidence") if isinstance(fields.get("evidence"), Mapping) else {}
        METRICS.control_rejected.labels(stage, exc.reason).inc()
        log.warning("control_rejected", stage=stage, reason=exc.reason, detail=str(exc)[:300],
                    kind=str(fields.get("kind", ""))[:64], target=str(fields.get("target", ""))[:128],
                    claimed_operator=str((evidence or {}).get("operator", ""))[:128])

    def _authentic(self, table: str, records: Sequence[Any]) -> list[tuple[int, Any]]:
        """(index, record) of the records a sink may store: findings and breaker signals
        signed by a trusted key (all of them when nothing is required). Findings are stored
        as decide acts on them: without ``auth``, an override under its signer's name."""
        kept: list[tuple[int, Any]] = []
        for i, record in enumerate(records):
            try:
                if table == "findings":
                    kept.append((i, admit_finding(record, self.control) if isinstance(record, Mapping) else record))
                elif table == "breaker_events":
                    admit_signal(record, self.control)
                    kept.append((i, record))
                else:
                    kept.append((i, record))
            except Unauthenticated as exc:
                self._rejected(f"sink_{table}", exc, record)
        return kept

    def drift_batch(self, records: Sequence[Mapping[str, Any]],
                    states: Any) -> tuple[list[Finding], dict[str, Any]]:
        # Scopes beyond the cardinality cap hold no drift state either (streams/cardinality.py).
        traces = [InferenceTrace.model_validate(r) for r in records if not r.get("_scope_overflow")]
        return self.drift.process(traces, states, time.time())

    # -- decide ----------------------------------------------------------------------
    def decision_finding(self, record: Mapping[str, Any]) -> Finding:
        """The finding ``decide`` acts on, dated no later than the worker's clock: the
        breaker's timer runs on that clock, so a finding dated 2100 would otherwise keep its
        target open for decades (streams.guard.clock). Raises on a malformed record."""
        finding = finding_from_record(record)
        at, direction = decision_time(finding.at, self.bounds, now=self.clock())
        if direction is None:
            return finding
        METRICS.clamped_event_times.labels("decide", direction).inc()
        log.warning("event_time_clamped", stage="decide", direction=direction, kind=finding.kind[:64],
                    reported=finding.at, at=at)
        return replace(finding, at=at, evidence={**finding.evidence, "reported_at": finding.at})

    def alerts_for(self, record: Mapping[str, Any], states: MutableMapping[str, Any]) -> list[Alert]:
        """The alert for a finding, unless its group already reported it recently."""
        finding = self.decision_finding(record)
        if not self.decider.alerts_for_kind(finding.kind):
            return []
        subject = finding.subject
        page = self.governor.config.registry.owner_to_page(
            subject.get("route", ""), subject.get("application", ""), subject.get("model", ""))
        alert = alert_for(finding, owner=page.team if page else "", oncall=page.oncall if page else "",
                          config_version=str(record.get("config_version", "")))
        route = subject.get("route", "")
        offered = self.decider.grouper(route, states).offer(alert)
        self.decider.save(route, states)
        return [offered] if offered is not None else []

    def decide(self, record: Mapping[str, Any], states: MutableMapping[str, Any]) -> list[BreakerSignal]:
        signals = self.decider.on_finding(self.decision_finding(record), states)
        for signal in signals:
            METRICS.breaker_open.labels(signal.target).set(0 if signal.state == "closed" else 1)
        return signals

    def alert_only_alerts(self) -> list[Alert]:
        """Trips the policy did not act on (capacity cap, minimum traffic, an override)."""
        return [alert_only_alert(t) for t in self.decider.drain_alert_only()]

    def tick(self, states: MutableMapping[str, Any]) -> list[BreakerSignal]:
        return self.decider.tick(self.clock(), states)

    # -- sinks -----------------------------------------------------------------------
    def write_batch(self, table: str, records: Sequence[Mapping[str, Any]],
                    partitions: Sequence[int] = (), offsets: Sequence[int] = ()) -> bool:
        """Store a batch; governance decisions are also appended to the audit chain of
        their source partition. True once durable, False if stopping first. A batch
        spanning many days is inserted in partition-bounded chunks, and rows ClickHouse
        refuses while it answers become dead letters (streams.guard.sink_rows)."""
        if table in ("findings", "breaker_events"):
            # Per-batch traffic summaries are the breaker engine's input, not findings: one
            # per scope per govern batch would outnumber real findings (and the audit chain).
            # A forged finding or breaker signal is neither stored nor audited (issue 16).
            admitted = [(i, r) for i, r in self._authentic(table, records)
                        if not isinstance(r, Mapping) or r.get("kind") != TRAFFIC]
            kept = [i for i, _ in admitted]
            records = [r for _, r in admitted]
            if len(kept) < len(partitions or offsets):
                partitions = [partitions[i] for i in kept] if partitions else ()
                offsets = [offsets[i] for i in kept] if offsets else ()
            if not records:
                return True
        layout = LAYOUTS[table]
        failures_before = self.store.write_failures
        batch = store_batch(self.store, layout, records, source_topic=self.settings.topic(SOURCES[table]),
                            partitions=partitions, offsets=offsets,
                            max_partitions=self.settings.sink_max_partitions, should_stop=self.stopping.is_set)
        METRICS.sink_failures.labels(table).inc(self.store.write_failures - failures_before)
        if not batch.durable:
            return False
        if batch.dead and not self._store_dead(table, batch.dead):
            return False
        kept_ids = sorted(batch.kept)
        stored = True
        if kept_ids and table in AUDITED and self.audit is not None:
            stored = self._audit(table, [records[i] for i in kept_ids],
                                 [partitions[i] for i in kept_ids] if partitions else ())
        if stored:
            METRICS.rows_written.labels(table).inc(len(kept_ids))
            if table == "dead_letters":
                self.dead_letters_stored += len(kept_ids)
        return stored

    def _store_dead(self, table: str, dead: list[dict[str, Any]]) -> bool:
        """Rows a sink could not store, as content-free dead letters in ``dead_letters``."""
        for letter in dead:
            METRICS.dead_letters.labels(letter["error_kind"]).inc()
            log.warning("dead_letter", kind=letter["error_kind"], table=table, reason=letter["reason"][:300])
        if table == "dead_letters":  # a dead letter no row can hold: logged and counted, nowhere further
            return True
        rows, keys = tables.rows_for(tables.DEAD_LETTERS, dead)
        if not self.store.insert_until_durable(tables.DEAD_LETTERS.table, tables.DEAD_LETTERS.columns, rows,
                                               dedup_token=batch_token("dead_letters", keys),
                                               should_stop=self.stopping.is_set):
            return False
        self.dead_letters_stored += len(rows)
        return True

    def _audit(self, table: str, records: Sequence[Mapping[str, Any]], partitions: Sequence[int]) -> bool:
        assert self.audit is not None
        topic, to_records = AUDITED[table]
        by_partition: dict[int, list[Mapping[str, Any]]] = {}
        for record, partition in zip(records, partitions or [0] * len(records), strict=True):
            by_partition.setdefault(partition, []).append(record)
        for partition, group in sorted(by_partition.items()):
            # One chain per source partition: exactly one writer each.
            appended = self.audit.append_until_durable(f"{topic}/{partition}", to_records(group),
                                                       should_stop=self.stopping.is_set)
            if appended is None:
                return False
        return True

    def faust_credentials(self) -> Any:
        from streams.security import faust_credentials

        return faust_credentials(self.settings.security)


def finding_from_record(record: Mapping[str, Any]) -> Finding:
    return Finding(
        kind=str(record["kind"]), subject=dict(record.get("subject") or {}), score=float(record["score"]),
        threshold=float(record["threshold"]), at=float(record["at"]),
        severity=str(record.get("severity", "warning")), evidence=dict(record.get("evidence") or {}),
        detector=str(record.get("detector", "")),
    )
