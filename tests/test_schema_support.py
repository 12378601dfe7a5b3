"""Data and stores for the schema tests: redacted traces shaped like the worker's, plus a
few findings, alerts, breaker signals, change events, dead letters and registry rows.

No tests here; tests/test_schema_*.py import it.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from detectors.redaction.policy import RedactionPolicy
from detectors.redaction.redactor import Redactor
from sinks import tables
from sinks.clickhouse import ClickHouseStore, batch_token
from sinks.owners import OWNERS, registry_records
from streams.loadgen import LoadPlan, make_trace

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "deploy" / "config"
TRACE_COLUMNS = tables.TRACES.columns


@contextmanager
def fresh_store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    """A migrated embedded store; closed after (chDB allows one engine path per process)."""
    store = ClickHouseStore(f"chdb://{tmp_path}/ch")
    try:
        store.migrate()
        yield store
    finally:
        store.close()  # closes the analysts' session too: chDB keeps the engine while any lives


def redactor(key: bytes) -> Redactor:
    return Redactor(RedactionPolicy.load(CONFIG / "redaction-policy.yaml"), key)


def governed_traces(n: int, *, key: bytes = b"schema-test-key-0123456789abcdef", seed: int = 11,
                    kb: float = 1.0, now: datetime | None = None, minutes: int = 15) -> list[dict[str, Any]]:
    """``n`` redacted trace records spread over the last ``minutes`` minutes; every third
    one continues the previous trace as an agent step; some are refusals; all priced."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC).replace(microsecond=0)
    plan = LoadPlan.build(count=n, rate=0, routes=4, trace_kb=kb,
                          incidents=["pii@0:0.5", "secret@0.5:0.2", "error_burst@0.2:0.5"], seed=seed)
    red = redactor(key)
    out: list[dict[str, Any]] = []
    for i in range(n):
        at = now - timedelta(seconds=rng.uniform(0, minutes * 60))
        trace = make_trace(plan, i, rng, at)
        if i % 3 == 2 and out:  # an agent step: same run, child of the previous span
            trace["trace_id"], trace["parent_span_id"] = out[-1]["trace_id"], out[-1]["span_id"]
            trace["tool_calls"].append({"name": "crm_lookup", "arguments": "customer 42", "result": None,
                                        "status": "error"})
        redacted, redaction = red.redact_trace(trace)
        redacted["redaction"] = redaction.to_dict()
        redacted["cost_usd"] = round(redacted["input_tokens"] * 3e-7 + redacted["output_tokens"] * 1.2e-6, 9)
        redacted["refused"] = int(rng.random() < 0.1)
        out.append(redacted)
    return out


def trace_rows(records: list[dict[str, Any]]) -> tuple[list[list[Any]], list[str]]:
    return tables.rows_for(tables.TRACES, records)


def insert_traces(store: ClickHouseStore, records: list[dict[str, Any]], *, token: str | None = None) -> None:
    rows, keys = trace_rows(records)
    store.insert("traces", TRACE_COLUMNS, rows, dedup_token=token or batch_token("traces", keys))


def findings(now: datetime, n: int = 60, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    kinds = [("error_rate.burst", "critical"), ("drift.embedding", "warning"), ("cost.regression", "warning"),
             ("change.unowned_behaviour", "warning"), ("change.owned", "info")]
    out = []
    for i in range(n):
        kind, severity = kinds[i % len(kinds)]
        route = ["support-chat", "checkout-assistant", "code-review"][i % 3]
        out.append({
            "finding_id": f"f{seed}-{i}", "kind": kind, "severity": severity,
            "at": (now - timedelta(seconds=rng.uniform(0, 3 * 86400))).timestamp(),
            "subject": {"route": route, "model": "gpt-4o-mini", "tenant": "acme" if i % 2 else ""},
            "score": rng.uniform(1, 5), "threshold": 1.0, "detector": "test/1", "config_version": "v1",
            "evidence": {"summary": f"{kind} on {route}", "signals": ["latency_ms"]},
        })
    return out


def insert_everything_else(store: ClickHouseStore, now: datetime) -> None:
    """Findings, alerts, breaker events, change events, dead letters and registry rows."""
    def put(layout: tables.TableLayout, records: list[dict[str, Any]]) -> None:
        rows, keys = tables.rows_for(layout, records)
        store.insert(layout.table, layout.columns, rows, dedup_token=batch_token(layout.table, keys))

    found = findings(now)
    put(tables.FINDINGS, found)
    iso = now.isoformat()
    put(tables.ALERTS, [{
        "alert_id": f"a{i}", "kind": found[i]["kind"], "severity": found[i]["severity"], "tenant": "acme",
        "route": found[i]["subject"]["route"], "model": "gpt-4o-mini", "summary": "burst", "evidence": {},
        "finding_ids": [found[i]["finding_id"]], "owner": "support-ai", "oncall": "pd:x", "runbook": "",
        "dedup_key": f"k{i}", "first_seen": iso, "last_seen": iso, "count": 1, "config_version": "v1",
    } for i in range(5)])
    put(tables.BREAKER_EVENTS, [{
        "signal_id": f"s{i}", "target": "model=gpt-4o-mini,route=support-chat", "state": state,
        "reason": "error burst", "finding_ids": [], "evidence": {}, "policy_version": "p1", "probe_share": 0.05,
        "fallback": None, "operator": None, "at": (now - timedelta(minutes=10 - i)).isoformat(),
        "expires_at": None} for i, state in enumerate(["open", "half_open", "closed"])])
    put(tables.CHANGE_EVENTS, [{
        "event_id": f"c{i}", "component_kind": "prompt", "component_id": "support-chat-main",
        "old_version": f"v{i}", "new_version": f"v{i + 1}", "owner": "" if i == 1 else "support-ai",
        "at": (now - timedelta(days=i + 1)).isoformat(), "scope_routes": ["support-chat"], "scope_tenants": [],
        "link": "", "source": "ci"} for i in range(3)])
    put(tables.DEAD_LETTERS, [{
        "source_topic": "warden.traces.raw.v1", "partition": 0, "offset": i, "key": "support-chat|gpt-4o-mini",
        "reason": "input_messages[0].content: longer than 512 KiB", "error_kind": "oversized",
        "original_b64": base64.b64encode(b"{}").decode(), "original_bytes": 2, "received_at": iso}
        for i in range(2)])
    put(OWNERS, registry_records(yaml.safe_load((CONFIG / "owners.yaml").read_text()), now))
