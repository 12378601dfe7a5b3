"""Issue 18 end to end: OpenTelemetry GenAI spans, encoded as the Collector's kafka exporter
writes them, reach ClickHouse redacted; real broker, real engine, one worker.

Spans come from the OpenTelemetry SDK and are serialised by the opentelemetry packages' own
OTLP encoders (``otlp_proto`` and ``otlp_json``); both encodings share the OTLP topic (the
worker recognises each message's encoding). A bad span, a redelivered export and a message
that is no export at all ride along. A native trace in the GenAI ``parts`` shape goes the
native way (the raw topic) and is stored with its content.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.otlp_spans import PII_PROMPT, SpanRecorder, otlp_json, otlp_proto
from tests.pipeline_helpers import fast_config, wait_for
from tests.worker_proc import Pipeline

pytestmark = pytest.mark.integration
PII = ("jane.doe@example.com", "536-22-8726", "4111 1111 1111 1111", "555 0134")


def _no_pii(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        text = json.dumps(row, default=str)
        assert not [v for v in PII if v in text], f"unredacted value stored: {row.get('trace_id')}"


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_collector_exports_on_otlp_spans_are_stored_redacted(pipeline: Pipeline) -> None:
    otlp_topic = pipeline.topic("otlp_spans")
    worker = pipeline.worker(extra={"WARDEN_CONFIG_DIR": str(fast_config(pipeline.workdir)),
                                    "WARDEN_OTLP_TOPICS": json.dumps([otlp_topic])}).start()
    first, second = SpanRecorder(service="support-api"), SpanRecorder(service="support-api")
    for rec in (first, second):
        rec.agent_run()  # invoke_agent → chat (tool call) → execute_tool → chat
        rec.chat(error="429")
        rec.legacy_chat()  # LiteLLM / OpenLLMetry attribute names
        rec.plain()  # not GenAI: skipped and counted
        rec.no_model()  # a bad span among good ones: its own dead letter
    spans_a, spans_b = first.take(), second.take()
    export_a = otlp_proto(spans_a)
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    for value in (export_a, otlp_json(spans_b), export_a, b"\xff\xfe" + PII_PROMPT.encode()):
        producer.produce(otlp_topic, value=value)  # the third is the Collector's retry
    # A native trace whose messages use the conventions' own shape: stored with its content.
    native = {"trace_id": "parts-trace", "span_id": "s1", "timestamp": datetime.now(UTC).isoformat(),
              "tenant": "prod", "application": "native-app", "route": "parts-route", "provider": "openai",
              "request_model": "gpt-4o-mini",
              "input_messages": [{"role": "user", "parts": [{"type": "text", "content": PII_PROMPT}]}],
              "output_messages": [{"role": "assistant", "parts": [
                  {"type": "tool_call", "id": "c1", "name": "lookup_order", "arguments": {"order": "A-1"}}]}]}
    producer.produce(pipeline.topic("traces.raw.v1"), key=b"parts-route|gpt-4o-mini", value=json.dumps(native).encode())
    assert producer.flush(30) == 0

    ids = {format(s.context.trace_id, "032x") for s in spans_a + spans_b}
    where = "trace_id IN ({})".format(",".join(f"'{i}'" for i in ids))

    def rows(query: str) -> list[dict[str, Any]]:
        return worker.sql(query)  # type: ignore[return-value]

    wait_for(lambda: int(worker.scalar(f"SELECT count() FROM traces FINAL WHERE {where}")) >= 8, 180,
             "8 traces from two exports", worker)
    stored = rows(f"SELECT * FROM traces FINAL WHERE {where} ORDER BY timestamp")
    assert len(stored) == 8  # two exports of 4 traces each; the retry added none
    _no_pii(stored)
    assert all("Where is my order" in str(r["input_messages"]) for r in stored)
    agent_calls = [r for r in stored if r["route"] == "order-agent"]
    assert len(agent_calls) == 4 and {r["tenant"] for r in stored} == {"prod"}
    assert sorted(r["input_tokens"] for r in agent_calls) == [100, 100, 200, 200]  # run totals not charged again
    assert sum("lookup_order" in str(r["tool_calls"]) for r in agent_calls) == 2
    failed = [r for r in stored if r["status"] == "error"]
    assert len(failed) == 2 and {r["error_type"] for r in failed} == {"429"}
    legacy = [r for r in stored if r["input_tokens"] == 80]
    assert len(legacy) == 2 and all("Checking." in str(r["output_messages"]) for r in legacy)

    wait_for(lambda: int(worker.scalar("SELECT count() FROM dead_letters WHERE error_kind LIKE 'otlp_%'")) >= 3,
             120, "two rejected spans and one undecodable message dead-lettered", worker)
    letters = rows("SELECT * FROM dead_letters WHERE error_kind LIKE 'otlp_%' ORDER BY error_kind")
    assert [d["error_kind"] for d in letters] == ["otlp_span_rejected", "otlp_span_rejected", "otlp_undecodable"]
    assert all("gen_ai.request.model" in d["reason"] for d in letters[:2])
    assert all(d["original_sha256"] and d["original_bytes"] > 0 for d in letters)
    assert "Where is my order" not in json.dumps(letters, default=str)
    _no_pii(letters)

    metrics = worker.get("/metrics").decode()
    assert _metric(metrics, 'warden_otlp_spans_total{outcome="duplicate"}') == len(spans_a)
    assert _metric(metrics, 'warden_otlp_spans_total{outcome="mapped"}') == 8
    assert _metric(metrics, 'warden_otlp_spans_total{outcome="rejected"}') == 2

    wait_for(lambda: int(worker.scalar("SELECT count() FROM traces FINAL WHERE trace_id = 'parts-trace'")) >= 1,
             120, "the parts-shaped native trace", worker)
    (parts_row,) = rows("SELECT * FROM traces FINAL WHERE trace_id = 'parts-trace'")
    _no_pii([parts_row])
    assert "Where is my order" in str(parts_row["input_messages"])
    assert "lookup_order" in str(parts_row["tool_calls"]) and "lookup_order" in str(parts_row["output_messages"])
