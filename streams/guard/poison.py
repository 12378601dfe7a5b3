"""Dead letters for records a stage cannot handle, without their content.

A dead letter from ``govern``, ``decide`` or a sink may stand for a trace whose redacted
output was too large to send, or for a record that was never redacted at all: it carries
the stable kind, the reason, ids, size and a SHA-256 of the bytes (enough to find the record
at its source and to match duplicates), never the bytes themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from streams.guard.signing import Unauthenticated
from streams.ingest import SourcePosition
from streams.records import DeadLetter, InferenceTrace
from streams.state import dumps

ID_CHARS = 128


def content_free_dead_letter(kind: str, reason: str, payload: bytes, *, source_topic: str,
                             partition: int = -1, offset: int = -1, key: str | None = None,
                             ids: Mapping[str, Any] | None = None) -> DeadLetter:
    """``kind`` is the stable code (``oversized_output``, ``bad_override``, ``sink_rejected``…);
    ``reason`` says what went wrong and what to do; ``ids`` (trace_id, finding_id…) locate
    the record. Ids are truncated: anyone may write them."""
    named = ", ".join(f"{k}={str(v)[:ID_CHARS]}" for k, v in (ids or {}).items() if v not in (None, ""))
    digest = hashlib.sha256(payload).hexdigest()
    detail = f"{reason} [{named}{', ' if named else ''}bytes={len(payload)}, sha256={digest}]"
    return DeadLetter(reason=detail[:2000], error_kind=kind, source_topic=source_topic, partition=partition,
                      offset=offset, key=None if key is None else key[:ID_CHARS], original_b64="",
                      original_bytes=len(payload), original_sha256=digest)


def oversized_output(trace: InferenceTrace, body: bytes, limit: int, where: SourcePosition) -> dict[str, Any]:
    """Dead letter for a trace whose governed (redacted) record is over the output limit."""
    return content_free_dead_letter(
        "oversized_output",
        f"governed trace is {len(body)} bytes, over WARDEN_MAX_OUTPUT_BYTES ({limit}); the producer "
        "should truncate message contents or tool results (the source record is in the raw topic)",
        body, source_topic=where.topic, partition=where.partition, offset=where.offset, key=where.key,
        ids={"trace_id": trace.trace_id, "span_id": trace.span_id, "route": trace.route},
    ).model_dump(mode="json")


def undecidable(record: Any, exc: Exception, where: SourcePosition) -> dict[str, Any]:
    """Dead letter for a finding or operator command ``decide`` could not apply (an override
    beyond ``override_max_s``, a malformed field): the record's ids and the engine's reason."""
    fields: Mapping[str, Any] = record if isinstance(record, Mapping) else {}
    raw_evidence = fields.get("evidence")
    evidence: Mapping[str, Any] = raw_evidence if isinstance(raw_evidence, Mapping) else {}
    kind = str(fields.get("kind", ""))
    if isinstance(exc, Unauthenticated):  # no trusted signature (streams/guard/control.py)
        code = "unauthenticated"
    else:
        code = "bad_override" if kind.startswith("breaker.") else "undecidable_finding"
    return content_free_dead_letter(
        code, f"decide could not apply this record: {type(exc).__name__}: {str(exc)[:500]}", dumps(record),
        source_topic=where.topic, partition=where.partition, offset=where.offset, key=where.key,
        ids={"kind": kind, "finding_id": fields.get("finding_id"), "target": evidence.get("target"),
             "operator": evidence.get("operator")},
    ).model_dump(mode="json")
