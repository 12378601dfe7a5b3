"""Row layouts for the tables in migrations/: JSON-shaped records in, column lists out.

Sinks store rows and never judge them; the mapping is mechanical so that the same record
always becomes the same row (which is what makes replays idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def _ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _opt_ts(value: Any) -> datetime | None:
    return None if value in (None, "") else _ts(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _s(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class TableLayout:
    table: str
    columns: tuple[str, ...]
    to_row: Callable[[Mapping[str, Any]], list[Any]]
    key: Callable[[Mapping[str, Any]], str]


def _trace_row(t: Mapping[str, Any]) -> list[Any]:
    redaction = t.get("redaction") or {}
    tool_calls = t.get("tool_calls") or []
    return [
        t["trace_id"], t["span_id"], t.get("parent_span_id"), _ts(t["timestamp"]),
        t["tenant"], t["application"], t["route"], t.get("principal"), list(t.get("roles") or []),
        t["provider"], _s(t.get("operation")), t["request_model"], _s(t.get("response_model")),
        t.get("response_model") or t["request_model"], _s(t.get("deployment")), _s(t.get("region")),
        _s(t.get("model_version")), _s(t.get("system_fingerprint")), _s(t.get("prompt_template_id")),
        _s(t.get("prompt_template_version")), _s(t.get("guardrail_policy_version")),
        _s(t.get("retrieval_index_version")), _s(t.get("toolset_version")),
        _json(t.get("input_messages") or []), _json(t.get("output_messages") or []), _json(tool_calls),
        [str(c.get("name", "")) for c in tool_calls if isinstance(c, Mapping)],
        int(t.get("input_tokens") or 0), int(t.get("output_tokens") or 0),
        int(t.get("cached_input_tokens") or 0), list(t.get("finish_reasons") or []),
        t.get("ttft_ms"), float(t.get("latency_ms") or 0.0), _s(t.get("status")), _s(t.get("error_type")),
        _s(t.get("error_message")), t.get("cost_usd"), int(t.get("attempt") or 1),
        _s(t.get("data_classification")), {str(k): _s(v) for k, v in (t.get("metadata") or {}).items()},
        _s(redaction.get("policy_version")), {str(k): int(v) for k, v in (redaction.get("counts") or {}).items()},
        _json(redaction.get("findings") or []), int(t.get("_partition", 0)), int(t.get("_offset", 0)),
        int(bool(t.get("refused"))),
    ]


TRACES = TableLayout(
    "traces",
    ("trace_id", "span_id", "parent_span_id", "timestamp", "tenant", "application", "route", "principal",
     "roles", "provider", "operation", "request_model", "response_model", "model", "deployment", "region",
     "model_version", "system_fingerprint", "prompt_template_id", "prompt_template_version",
     "guardrail_policy_version", "retrieval_index_version", "toolset_version", "input_messages",
     "output_messages", "tool_calls", "tool_names", "input_tokens", "output_tokens", "cached_input_tokens",
     "finish_reasons", "ttft_ms", "latency_ms", "status", "error_type", "error_message", "cost_usd",
     "attempt", "data_classification", "metadata", "redaction_policy_version", "redaction_counts",
     "redaction_findings", "kafka_partition", "kafka_offset", "refused"),
    _trace_row,
    lambda t: f"{t['trace_id']}/{t['span_id']}",
)


def _finding_row(f: Mapping[str, Any]) -> list[Any]:
    subject = {str(k): _s(v) for k, v in (f.get("subject") or {}).items()}
    return [
        f["finding_id"], f["kind"], _s(f.get("severity")), _ts(f["at"]), subject.get("tenant", ""),
        subject.get("route", ""), subject.get("model", ""), subject, float(f.get("score") or 0.0),
        float(f.get("threshold") or 0.0), _s(f.get("detector")), _s(f.get("config_version")),
        _json(f.get("evidence") or {}),
    ]


FINDINGS = TableLayout(
    "findings",
    ("finding_id", "kind", "severity", "at", "tenant", "route", "model", "subject", "score", "threshold",
     "detector", "config_version", "evidence"),
    _finding_row,
    lambda f: str(f["finding_id"]),
)


def _alert_row(a: Mapping[str, Any]) -> list[Any]:
    return [
        a["alert_id"], a["kind"], a["severity"], _s(a.get("tenant")), _s(a.get("route")), _s(a.get("model")),
        a["summary"], _json(a.get("evidence") or {}), list(a.get("finding_ids") or []), _s(a.get("owner")),
        _s(a.get("oncall")), _s(a.get("runbook")), a["dedup_key"], _ts(a["first_seen"]), _ts(a["last_seen"]),
        int(a.get("count") or 1), _s(a.get("config_version")), _ts(a.get("created_at") or a["first_seen"]),
    ]


ALERTS = TableLayout(
    "alerts",
    ("alert_id", "kind", "severity", "tenant", "route", "model", "summary", "evidence", "finding_ids",
     "owner", "oncall", "runbook", "dedup_key", "first_seen", "last_seen", "count", "config_version",
     "created_at"),
    _alert_row,
    lambda a: f"{a['alert_id']}/{a.get('count', 1)}",
)


def _breaker_row(b: Mapping[str, Any]) -> list[Any]:
    return [
        b["signal_id"], b["target"], b["state"], b["reason"], list(b.get("finding_ids") or []),
        _json(b.get("evidence") or {}), _s(b.get("policy_version")), float(b.get("probe_share") or 0.0),
        b.get("fallback"), b.get("operator"), _ts(b["at"]), _opt_ts(b.get("expires_at")),
    ]


BREAKER_EVENTS = TableLayout(
    "breaker_events",
    ("signal_id", "target", "state", "reason", "finding_ids", "evidence", "policy_version", "probe_share",
     "fallback", "operator", "at", "expires_at"),
    _breaker_row,
    lambda b: str(b["signal_id"]),
)


def _change_row(c: Mapping[str, Any]) -> list[Any]:
    return [
        c["event_id"], c["component_kind"], c["component_id"], c.get("old_version"), c["new_version"],
        _s(c.get("owner")), _ts(c["at"]), list(c.get("scope_routes") or []), list(c.get("scope_tenants") or []),
        _s(c.get("link")), _s(c.get("source")),
    ]


CHANGE_EVENTS = TableLayout(
    "change_events",
    ("event_id", "component_kind", "component_id", "old_version", "new_version", "owner", "at",
     "scope_routes", "scope_tenants", "link", "source"),
    _change_row,
    lambda c: str(c["event_id"]),
)


def _dead_letter_row(d: Mapping[str, Any]) -> list[Any]:
    import base64
    import hashlib

    original = base64.b64decode(d.get("original_b64") or "")
    return [
        d["source_topic"], int(d.get("partition", -1)), int(d.get("offset", -1)), d.get("key"), d["reason"],
        d["error_kind"], int(d.get("original_bytes") or len(original)),
        d.get("original_sha256") or hashlib.sha256(original).hexdigest(),
        _ts(d["received_at"]),
    ]


DEAD_LETTERS = TableLayout(
    "dead_letters",
    ("source_topic", "partition", "offset", "key", "reason", "error_kind", "original_bytes",
     "original_sha256", "received_at"),
    _dead_letter_row,
    lambda d: f"{d['source_topic']}/{d.get('partition')}/{d.get('offset')}",
)


def rows_for(layout: TableLayout, records: Sequence[Mapping[str, Any]]) -> tuple[list[list[Any]], list[str]]:
    """Rows and their dedup keys, in record order."""
    return [layout.to_row(r) for r in records], [layout.key(r) for r in records]
