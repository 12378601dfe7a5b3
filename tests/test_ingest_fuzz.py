"""Issue 10, bad input at the unit level: whatever bytes arrive, ``decode_trace`` returns a
valid trace or raises ``RejectedTrace`` with a kind and a reason; it never crashes."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ingest import RejectedTrace, SourcePosition, dead_letter, decode_trace
from streams.records import MAX_TRACE_BYTES, InferenceTrace

KINDS = {"empty", "oversized", "invalid_utf8", "too_deep", "malformed_json", "wrong_type",
         "unsupported_schema_version", "schema_violation"}

VALID = {"trace_id": "t1", "span_id": "s1", "timestamp": "2026-01-01T00:00:00Z", "tenant": "acme",
         "application": "app", "route": "r", "provider": "openai", "request_model": "gpt-4o"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)


def _outcome(raw: bytes) -> str:
    try:
        assert isinstance(decode_trace(raw), InferenceTrace)
        return "ok"
    except RejectedTrace as rejection:
        assert rejection.kind in KINDS and rejection.reason
        letter = dead_letter(raw, rejection, SourcePosition("raw", 0, 1, None))
        assert letter.original_bytes == len(raw)
        return rejection.kind


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    _outcome(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_crashes(value: object) -> None:
    _outcome(json.dumps(value).encode())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(VALID) + ["input_tokens", "status", "tool_calls", "metadata",
                                                       "schema_version", "output_messages", "extra"]),
                       json_values, max_size=12))
def test_wrong_types_and_missing_fields_are_schema_violations(overrides: dict[str, object]) -> None:
    outcome = _outcome(json.dumps({**VALID, **overrides}).encode())
    assert outcome in {"ok", "schema_violation", "unsupported_schema_version"}


def test_the_documented_rules_for_versions_and_unknown_fields() -> None:
    assert _outcome(json.dumps({**VALID, "future_field": {"x": 1}}).encode()) == "ok"
    assert _outcome(json.dumps({**VALID, "schema_version": 2}).encode()) == "unsupported_schema_version"
    assert _outcome(json.dumps({**VALID, "schema_version": 0}).encode()) == "schema_violation"


def test_hostile_shapes() -> None:
    assert _outcome(b"") == "empty"
    assert _outcome(b"\xff\xfe{") == "invalid_utf8"
    assert _outcome(b"[" * 200_000 + b"]" * 200_000) == "too_deep"
    assert _outcome(json.dumps({**VALID, "metadata": {"k": "v" * 600_000}}).encode()) == "schema_violation"
    assert _outcome(b"{" + b" " * (MAX_TRACE_BYTES + 1) + b"}") == "oversized"
    huge = json.dumps({**VALID, "input_messages": [{"role": "user", "content": "x" * 500_000}] * 9})
    assert _outcome(huge.encode()) == "oversized"
