"""Everything the agents call, built once from settings: the governor, the breaker
decisions, the ClickHouse store. Agents stay a few lines; the branches live here."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import structlog

from detectors.findings import Finding
from sinks import tables
from sinks.clickhouse import ClickHouseStore, batch_token
from streams.breaking import BreakerDecider
from streams.config import WardenSettings
from streams.governor import Governor
from streams.metrics import METRICS
from streams.outputs import alert_for, alert_only_alert
from streams.records import Alert, BreakerSignal

log = structlog.get_logger("warden.worker")

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
                 store: ClickHouseStore | None):
        self.settings = settings
        self.governor = governor
        self.decider = decider
        self._store = store
        self.stopping = threading.Event()
        self.dead_letters_stored = 0

    @property
    def store(self) -> ClickHouseStore:
        if self._store is None:
            raise RuntimeError("this worker runs role=govern and has no ClickHouse store; "
                               "query the sink worker or the server")
        return self._store

    # -- govern ----------------------------------------------------------------------
    def finding_record(self, finding: Finding) -> dict[str, Any]:
        record = finding.to_dict()
        record["config_version"] = str(finding.evidence.get("config_version", self.governor.config.version))
        return record

    # -- decide ----------------------------------------------------------------------
    def alerts_for(self, record: Mapping[str, Any]) -> list[Alert]:
        finding = finding_from_record(record)
        if not self.decider.alerts_for_kind(finding.kind):
            return []
        return [alert_for(finding, config_version=str(record.get("config_version", "")))]

    def decide(self, record: Mapping[str, Any], states: MutableMapping[str, Any]) -> list[BreakerSignal]:
        signals = self.decider.on_finding(finding_from_record(record), states)
        for signal in signals:
            METRICS.breaker_open.labels(signal.target).set(0 if signal.state == "closed" else 1)
        return signals

    def alert_only_alerts(self) -> list[Alert]:
        """Trips the policy did not act on (capacity cap, minimum traffic, an override)."""
        return [alert_only_alert(t) for t in self.decider.drain_alert_only()]

    def tick(self, states: MutableMapping[str, Any]) -> list[BreakerSignal]:
        return self.decider.tick(time.time(), states)

    # -- sinks -----------------------------------------------------------------------
    def write_batch(self, table: str, records: Sequence[Mapping[str, Any]]) -> bool:
        layout = LAYOUTS[table]
        rows, keys = tables.rows_for(layout, records)
        stored = self.store.insert_until_durable(
            layout.table, layout.columns, rows, dedup_token=batch_token(layout.table, keys),
            should_stop=self.stopping.is_set)
        if stored:
            METRICS.rows_written.labels(table).inc(len(rows))
            if table == "dead_letters":
                self.dead_letters_stored += len(rows)
        else:
            METRICS.sink_failures.labels(table).inc()
        return stored

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
