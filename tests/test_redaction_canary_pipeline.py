"""Issue 4 canary: 400 traces (10,000 in ``make test-long``) with planted PII and secrets in every scanned field go
through the real pipeline; no planted value appears in ClickHouse, the redacted topic,
the alerts topic, findings or the worker's logs."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest
import re2

from tests.pipeline_helpers import publisher, read_topic, traces, wait_for
from tests.redaction_canaries import Canaries
from tests.scale import volume
from tests.worker_proc import Pipeline, WorkerProcess

pytestmark = pytest.mark.integration

TOTAL = volume(ci=400, long=10_000)


class CanaryScanner:
    """Every planted value at once: RE2 alternations in chunks (one pass per chunk)."""

    def __init__(self, values: Iterable[str], chunk: int = 300):
        unique = sorted(set(values), key=len, reverse=True)
        self.patterns = [re2.compile("|".join(re2.escape(v) for v in unique[i:i + chunk]))
                         for i in range(0, len(unique), chunk)]

    def leaks(self, text: str) -> list[str]:
        found = []
        for pattern in self.patterns:
            match = pattern.search(text)
            if match:
                found.append(match.group(0))
        return found


def read_all(worker: WorkerProcess, query: str, order_by: str, page: int = 500) -> list[dict]:
    """Every row of ``query``, in pages: one answer of the query port is capped (rows and
    bytes, ``WARDEN_ANALYST_MAX_RESULT_*``), and 10,000 planted traces are over 64 MiB."""
    rows: list[dict] = []
    while True:
        chunk = worker.sql(f"{query} ORDER BY {order_by} LIMIT {page} OFFSET {len(rows)}")
        rows += chunk
        if len(chunk) < page:
            return rows


def test_no_planted_value_survives_anywhere(pipeline: Pipeline) -> None:
    pipeline.embeddings = True  # every stage, the drift encoder included, sees the planted values
    worker = pipeline.worker(extra={"WARDEN_LOG_LEVEL": "INFO"}).start()
    canaries = Canaries(seed=42)
    planted_by_trace: dict[str, list[str]] = {}
    try:
        with publisher(pipeline) as pub:
            for trace in traces(TOTAL, seed=4, trace_kb=0.5):
                planted_trace, planted = canaries.plant_trace(trace)
                planted_by_trace[trace["trace_id"]] = planted
                pub.publish(planted_trace)
        wait_for(lambda: int(worker.scalar("SELECT count() FROM traces FINAL")) >= TOTAL, 120,
                 f"{TOTAL} planted traces stored", worker)
        all_values = [v for values in planted_by_trace.values() for v in values]
        assert len(all_values) > 10 * TOTAL
        scanner = CanaryScanner(all_values)

        # ClickHouse: every stored trace, checked against what was planted in it.
        rows = read_all(worker, "SELECT * FROM traces FINAL", "trace_id, span_id")
        assert len(rows) == TOTAL
        for row in rows:
            blob = json.dumps(row, ensure_ascii=False)
            leaked = [v for v in planted_by_trace[row["trace_id"]] if v in blob]
            assert not leaked, f"trace {row['trace_id']}: {len(leaked)} planted value(s) stored"
            assert row["redaction_policy_version"]
        for table in ("findings", "alerts", "breaker_events", "dead_letters"):
            everything = worker.sql(f"SELECT * FROM {table}")
            # Small tables, read in one answer: a capped answer would fail here, not hide rows.
            assert len(everything) == int(worker.scalar(f"SELECT count() FROM {table}")), table
            dump = json.dumps(everything, ensure_ascii=False)
            assert not scanner.leaks(dump), f"planted value in ClickHouse table {table}"

        # Kafka: the redacted topic (per trace), alerts, findings and breaker topics (all values).
        redacted = read_topic(pipeline.bootstrap, pipeline.topic("traces.redacted.v1"), timeout_s=120)
        assert len(redacted) >= TOTAL
        for _, value in redacted:
            record = json.loads(value)
            text = value.decode()
            leaked = [v for v in planted_by_trace[record["trace_id"]] if v in text or v in json.dumps(record)]
            assert not leaked, f"redacted topic: trace {record['trace_id']} leaks {len(leaked)} value(s)"
            assert record["redaction"]["counts"], "a planted trace must record what was found"
        for name in ("alerts.v1", "findings.v1", "breaker.v1"):
            dump = "\n".join(v.decode() for _, v in read_topic(pipeline.bootstrap, pipeline.topic(name)))
            assert not scanner.leaks(dump), f"planted value in topic {name}"
    finally:
        worker.stop()
    log_text = worker.log_path.read_text(errors="replace")
    assert not scanner.leaks(log_text), "planted value in the worker's logs"
