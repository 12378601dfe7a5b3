"""Per-minute rollups equal the raw tables' aggregates, and stay right under replays."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from sinks.clickhouse import ClickHouseStore
from tests.test_schema_support import (
    findings,
    fresh_store,
    governed_traces,
    insert_everything_else,
    insert_traces,
)

KEY = "minute, tenant, application, route, model"
RAW = f"""
SELECT toStartOfMinute(timestamp) AS minute, tenant, application, route, model,
       count() AS requests, countIf(status = 'error') AS errors, countIf(refused = 1) AS refusals,
       quantiles(0.5, 0.95, 0.99)(latency_ms) AS q, sum(input_tokens), sum(output_tokens),
       sum(cached_input_tokens), sum(ifNull(cost_usd, 0))
FROM traces FINAL GROUP BY {KEY} ORDER BY {KEY}
"""
ROLLUP = f"""
SELECT {KEY}, requests, errors, refusals, latency_ms_q, input_tokens, output_tokens, cached_input_tokens, cost_usd
FROM traces_per_minute_v ORDER BY {KEY}
"""


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def assert_rows_match(raw: list[tuple], rollup: list[tuple]) -> None:  # type: ignore[type-arg]
    assert len(raw) == len(rollup) > 0
    for r, v in zip(raw, rollup, strict=True):
        assert r[:8] == v[:8]  # key, requests, errors, refusals
        assert all(close(a, b) for a, b in zip(r[8], v[8], strict=True)), (r[8], v[8])
        assert r[9:12] == v[9:12]
        assert close(r[12], v[12])


def test_trace_rollup_matches_raw_aggregates(tmp_path: Path) -> None:
    records = governed_traces(900, minutes=20)
    with fresh_store(tmp_path) as store:
        for start in range(0, len(records), 200):  # several inserts: states merge across parts
            insert_traces(store, records[start:start + 200])
        assert_rows_match(store.query_rows(RAW), store.query_rows(ROLLUP))
        store.command("OPTIMIZE TABLE traces_per_minute FINAL")
        assert_rows_match(store.query_rows(RAW), store.query_rows(ROLLUP))
        # error and refusal rates, and quantiles merged across minutes (not averaged)
        by_model_raw = store.query_rows(
            "SELECT model, countIf(status = 'error') / count(), countIf(refused = 1) / count(), "
            "quantiles(0.5, 0.95, 0.99)(latency_ms) FROM traces FINAL GROUP BY model ORDER BY model")
        by_model_rollup = store.query_rows(
            "SELECT model, countIfMerge(errors) / countMerge(requests), countIfMerge(refusals) / countMerge(requests), "
            "quantilesMerge(0.5, 0.95, 0.99)(latency_ms_quantiles) FROM traces_per_minute GROUP BY model ORDER BY model")
        assert len(by_model_raw) == len(by_model_rollup) == 2
        for r, v in zip(by_model_raw, by_model_rollup, strict=True):
            assert r[0] == v[0] and close(r[1], v[1]) and close(r[2], v[2])
            assert all(close(a, b) for a, b in zip(r[3], v[3], strict=True))
        assert any(r[1] > 0 for r in by_model_raw) and any(r[2] > 0 for r in by_model_raw)


def test_findings_rollup_matches_raw_counts(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with fresh_store(tmp_path) as store:
        insert_everything_else(store, now)
        raw = store.query_rows(
            "SELECT toStartOfMinute(at) AS minute, tenant, route, model, kind, severity, count(), max(score) "
            "FROM findings FINAL GROUP BY ALL ORDER BY ALL")
        rollup = store.query_rows(
            "SELECT minute, tenant, route, model, kind, severity, findings, max_score "
            "FROM findings_per_minute_v ORDER BY ALL")
        assert raw == rollup and len(raw) == len(findings(now))


def counts(store: ClickHouseStore) -> dict[str, int]:
    return {
        "raw_final": store.query_rows("SELECT count() FROM traces FINAL")[0][0],
        "rollup": store.query_rows("SELECT sum(requests) FROM traces_per_minute_v")[0][0],
        "tool_calls_rows": store.query_rows("SELECT count() FROM tool_calls")[0][0],
        "tool_calls_final": store.query_rows("SELECT count() FROM tool_calls FINAL")[0][0],
    }


def test_a_retried_batch_is_not_counted_twice_in_rollups_or_agent_steps(tmp_path: Path) -> None:
    records = governed_traces(300)
    calls = sum(len(r["tool_calls"]) for r in records)
    with fresh_store(tmp_path) as store:
        for _ in range(3):  # what insert_until_durable does after an unacknowledged write
            insert_traces(store, records[:150])
        insert_traces(store, records[150:])
        assert counts(store) == {"raw_final": 300, "rollup": 300, "tool_calls_rows": calls,
                                 "tool_calls_final": calls}


def test_a_recut_replay_is_exact_in_raw_final_and_high_in_rollups(tmp_path: Path) -> None:
    """The documented residual: after a crash Kafka may replay records in batches cut
    differently (another token). The raw tables collapse them; the rollups count them
    again. Exact figures: raw tables with FINAL (analyst_* views); fast: rollups."""
    records = governed_traces(300)
    calls = sum(len(r["tool_calls"]) for r in records)
    with fresh_store(tmp_path) as store:
        insert_traces(store, records[:200])
        insert_traces(store, records[100:])  # records 100..199 again, in a different batch
        seen = counts(store)
        assert seen["raw_final"] == 300 == store.query_rows("SELECT count() FROM analyst_traces")[0][0]
        assert seen["tool_calls_final"] == calls
        assert seen["rollup"] == 300 + 100
