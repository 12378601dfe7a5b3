"""Bytes from the raw topic → a validated ``InferenceTrace``, or a dead letter saying why.

Every rejection names the field, the limit and what the producer should do. The rejected
bytes are unredacted, so the dead letter never carries them: it keeps their position,
size and SHA-256 (the record itself stays in the raw topic for its retention) and, for
whoever fixes the producer, their content redacted by the worker's policy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from streams.records import MAX_JSON_DEPTH, MAX_TRACE_BYTES, DeadLetter, InferenceTrace

if TYPE_CHECKING:
    from detectors.redaction.redactor import Redactor

# Larger rejected records are not redacted into the dead letter (their content is dropped):
# redaction costs time per byte, and a flood of huge malformed records must not stall govern.
MAX_REDACTED_DEAD_LETTER_BYTES = 256 * 1024


class RejectedTrace(ValueError):
    """Input that cannot become a trace. ``kind`` is a stable machine-readable code."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int
    key: str | None


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Nesting deeper than ``limit``, walked without recursion (cost grows with nodes)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_trace(raw: bytes | None) -> InferenceTrace:
    """Validate one raw record. Raises ``RejectedTrace`` with a reason a producer can act on."""
    if raw is None or len(raw) == 0:
        raise RejectedTrace("empty", "empty message: publish one JSON object per trace")
    if len(raw) > MAX_TRACE_BYTES:
        raise RejectedTrace(
            "oversized",
            f"trace is {len(raw)} bytes, limit {MAX_TRACE_BYTES}: truncate message contents "
            "or tool results before publishing",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedTrace("invalid_utf8", f"not UTF-8 at byte {exc.start}: encode text as UTF-8") from exc
    too_deep = RejectedTrace("too_deep", f"JSON nesting deeper than {MAX_JSON_DEPTH}: flatten tool arguments")
    try:
        # The C parser turns hostile nesting into RecursionError rather than a crash.
        data = json.loads(text)
    except RecursionError as exc:
        raise too_deep from exc
    except json.JSONDecodeError as exc:
        raise RejectedTrace("malformed_json", f"not valid JSON: {exc}") from exc
    if _depth_exceeds(data, MAX_JSON_DEPTH + 4):
        raise too_deep
    if not isinstance(data, dict):
        raise RejectedTrace("wrong_type", f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", 1)
    if isinstance(version, int) and version > 1:
        raise RejectedTrace(
            "unsupported_schema_version",
            f"schema_version {version} is newer than this worker (reads 1): upgrade the workers first",
        )
    try:
        return InferenceTrace.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise RejectedTrace("schema_violation", f"{exc.error_count()} invalid field(s): {problems}") from exc


def dead_letter(raw: bytes | None, rejection: RejectedTrace, where: SourcePosition,
                redactor: Redactor | None = None) -> DeadLetter:
    payload = raw or b""
    return DeadLetter(
        reason=rejection.reason[:2000],
        error_kind=rejection.kind,
        source_topic=where.topic,
        partition=where.partition,
        offset=where.offset,
        key=None if where.key is None else where.key[:128],
        original_b64="",
        original_bytes=len(payload),
        original_sha256=hashlib.sha256(payload).hexdigest(),
        original_redacted=redacted_content(payload, redactor),
    )


def redacted_content(payload: bytes, redactor: Redactor | None) -> str | None:
    """The rejected bytes as redacted text, or None (dropped).

    Best effort, never raising: invalid UTF-8 is read with replacement characters; a JSON
    document has every string, key and JSON-in-string redacted (the trace walk, without
    field selectors); anything else is redacted as one text. Dropped when there is no
    redactor, the payload is over ``MAX_REDACTED_DEAD_LETTER_BYTES``, or redaction fails.
    """
    if redactor is None or not payload or len(payload) > MAX_REDACTED_DEAD_LETTER_BYTES:
        return None
    text = payload.decode("utf-8", "replace")
    try:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return redactor.redact(text, "dead_letter").text
        return json.dumps(redactor.redact_document(document), ensure_ascii=False, separators=(",", ":"))
    except Exception:  # noqa: BLE001 - a dead letter without content beats one with it in clear
        return None
