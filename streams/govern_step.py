"""One raw record through ``govern``: decode, bound its event time, redact and score, size.

Every way a record can fail here ends in a dead letter for that record, never in an
exception out of the agent: an exception there fails the whole batch, which Kafka then
replays on every restart (the stage is stuck for good). The agent (streams/app.py) only
batches, commits and sends what this returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from detectors.findings import Finding
from streams.governor import Governor
from streams.guard.clock import EventTimeBounds, clamp_trace_time
from streams.guard.poison import oversized_output
from streams.ingest import RejectedTrace, SourcePosition, dead_letter, decode_trace
from streams.metrics import METRICS
from streams.records import InferenceTrace
from streams.state import dumps

log = structlog.get_logger("warden.worker")


@dataclass
class GovernStep:
    """What one record produced: a dead letter, or the governed record and its findings."""

    dead: dict[str, Any] | None = None
    trace: InferenceTrace | None = None
    body: bytes = b""  # the governed (redacted) record, serialized and within the size limit
    findings: list[Finding] = field(default_factory=list)
    overflow: str | None = None  # beyond a cardinality cap (streams/cardinality.py): no detector state


def govern_one(governor: Governor, value: bytes | None, where: SourcePosition, states: Mapping[str, Any], *,
               received: float, bounds: EventTimeBounds, max_output_bytes: int) -> GovernStep:
    try:
        trace = decode_trace(value)
    except RejectedTrace as rejection:
        return _rejected(value, rejection, where, governor)
    direction = clamp_trace_time(trace, bounds, received=received)
    if direction is not None:
        METRICS.clamped_event_times.labels("govern", direction).inc()
        log.warning("event_time_clamped", stage="govern", direction=direction, trace_id=trace.trace_id[:128],
                    partition=where.partition, offset=where.offset)
    try:
        out = governor.govern(trace, states, (where.partition, where.offset))
    except Exception as exc:  # a detector bug must not stop the stream
        log.exception("govern_failed", partition=where.partition, offset=where.offset)
        # The exception's message may quote the record: its type only (the log has the rest).
        return _rejected(value, RejectedTrace("processing_error", f"{type(exc).__name__} while governing the trace "
                                              "(the worker's log has the stack)"), where, governor)
    out.redacted["_partition"], out.redacted["_offset"] = where.partition, where.offset
    if out.overflow is not None:
        out.redacted["_scope_overflow"] = out.overflow  # the drift stage keeps no state for it either
    body = dumps(out.redacted)
    if len(body) > max_output_bytes:
        # Redaction can grow a record (placeholders, JSON escapes of non-ASCII text): sending
        # it would fail the producer and with it the batch, replayed forever. A content-free
        # dead letter instead; the scope's detector state has seen the trace, which is what
        # a replay of this offset would do too.
        METRICS.dead_letters.labels("oversized_output").inc()
        log.warning("dead_letter", kind="oversized_output", bytes=len(body), limit=max_output_bytes,
                    partition=where.partition, offset=where.offset)
        return GovernStep(dead=oversized_output(trace, body, max_output_bytes, where), trace=trace,
                          findings=out.findings, overflow=out.overflow)
    return GovernStep(trace=trace, body=body, findings=out.findings, overflow=out.overflow)


def _rejected(value: bytes | None, rejection: RejectedTrace, where: SourcePosition,
              governor: Governor) -> GovernStep:
    METRICS.dead_letters.labels(rejection.kind).inc()
    log.warning("dead_letter", kind=rejection.kind, reason=rejection.reason[:300],
                partition=where.partition, offset=where.offset)
    return GovernStep(dead=dead_letter(value, rejection, where, governor.redactor).model_dump(mode="json"))
