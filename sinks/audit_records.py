"""Decision records as the sinks store them, mapped to :class:`sinks.audit.AuditRecord`s:
one id per decision (the same id on a replay, so ``AuditLog.append`` stores it once)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sinks.audit import AuditRecord


def _epoch(value: Any) -> float:
    from sinks.tables import _ts

    return _ts(value).timestamp()


def finding_records(findings: Sequence[Mapping[str, Any]]) -> list[AuditRecord]:
    return [AuditRecord.of(f"finding:{f['finding_id']}", "finding", _epoch(f["at"]), f) for f in findings]


def alert_records(alerts: Sequence[Mapping[str, Any]]) -> list[AuditRecord]:
    """One record per alert version (an alert is re-emitted with a higher ``count``)."""
    return [AuditRecord.of(f"alert:{a['alert_id']}/{a.get('count', 1)}", "alert", _epoch(a["last_seen"]), a)
            for a in alerts]


def breaker_records(signals: Sequence[Mapping[str, Any]]) -> list[AuditRecord]:
    """Breaker transitions; one forced by an operator is an ``override``."""
    return [AuditRecord.of(f"breaker:{b['signal_id']}", "override" if b.get("operator") else "breaker_transition",
                           _epoch(b["at"]), b) for b in signals]
