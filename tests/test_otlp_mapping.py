"""OTLP spans → InferenceTrace mapping, without a broker: SDK spans, both encodings."""

from __future__ import annotations

import hashlib
import json

import pytest

from streams.config import CONFIG_DIR
from streams.ingest import SourcePosition
from streams.otlp import (
    OtlpEncoding,
    OtlpMapping,
    SeenSpans,
    UndecodableOtlp,
    decode_request,
    map_request,
)
from streams.otlp.mapping import MappingError
from streams.records import InferenceTrace
from tests.otlp_spans import PII_PROMPT, SpanRecorder, otlp_json, otlp_proto

MAPPING = OtlpMapping.load(CONFIG_DIR / "otlp-mapping.yaml")


@pytest.mark.parametrize("encode", [otlp_proto, otlp_json])
def test_agent_run_failed_call_legacy_span_and_noise(encode) -> None:  # type: ignore[no-untyped-def]
    rec = SpanRecorder()
    rec.agent_run()
    rec.chat(error="429")
    rec.legacy_chat()
    rec.plain()
    result = map_request(decode_request(encode(rec.take())), MAPPING)
    assert result.spans == 7 and not result.rejected
    by_op = {}
    for t in result.traces:
        by_op.setdefault(t.operation, []).append(t)
    assert "invoke_agent" not in by_op and "execute_tool" not in by_op
    first, final, failed, legacy = by_op["chat"]
    # Agent calls take their route from the invoke_agent span; totals are not charged again.
    assert first.route == final.route == "order-agent" and failed.route == "support-api"
    assert first.tenant == "prod" and first.application == "support-api"
    assert sum(t.input_tokens for t in result.traces) == 100 + 200 + 0 + 80
    assert first.tool_calls[0].name == "lookup_order" and first.tool_calls[0].result == '{"status": "shipped"}'
    assert first.parent_span_id is None and final.parent_span_id is None  # the run's root is its first call
    assert final.output_messages[0].content == "Your order A-1 has shipped." and not final.tool_calls
    assert first.input_messages[0].role == "system" and PII_PROMPT in first.input_messages[1].content
    assert first.metadata["gen_ai.conversation.id"] == "conv-42"
    assert failed.status == "error" and failed.error_type == "429"
    assert legacy.provider == "openai" and legacy.input_tokens == 80 and legacy.output_tokens == 12
    assert [m.role for m in legacy.input_messages] == ["system", "user"]
    assert legacy.output_messages[0].content == "Checking." and legacy.finish_reasons == ["stop"]
    reasons = sorted(s.reason for s in result.skipped)
    assert reasons == ["agent_totals_in_children", "no_genai_attributes", "tool_call_of_its_step"]


def test_encodings_agree_and_json_ids_are_hex() -> None:
    rec = SpanRecorder()
    rec.chat()
    spans = rec.take()
    from_proto = map_request(decode_request(otlp_proto(spans)), MAPPING).traces
    from_json = map_request(decode_request(otlp_json(spans), "otlp_json"), MAPPING).traces
    assert [t.model_dump() for t in from_proto] == [t.model_dump() for t in from_json]
    assert from_proto[0].trace_id == format(spans[0].context.trace_id, "032x")


def test_bad_span_rejected_alone_without_its_content() -> None:
    rec = SpanRecorder()
    rec.chat()
    rec.no_model()
    result = map_request(decode_request(otlp_proto(rec.take())), MAPPING)
    assert len(result.traces) == 1 and len(result.rejected) == 1
    letter = result.rejected[0].dead_letter(SourcePosition("otlp_spans", 0, 5, None))
    assert "gen_ai.request.model" in letter.reason and letter.error_kind == "otlp_span_rejected"
    kept = letter.model_dump_json()
    assert "example.com" not in kept and "536-22-8726" not in kept and "Where is my order" not in kept
    assert result.rejected[0].span_id in letter.reason and letter.original_b64 == ""
    assert letter.original_sha256 == hashlib.sha256(result.rejected[0].wire).hexdigest()
    assert letter.original_bytes == len(result.rejected[0].wire) > len(PII_PROMPT)


def test_redelivered_export_is_not_mapped_twice() -> None:
    rec = SpanRecorder()
    rec.chat()
    raw = otlp_proto(rec.take())
    seen = SeenSpans()
    first = map_request(decode_request(raw), MAPPING, seen)
    seen.add(first.keys)
    again = map_request(decode_request(raw), MAPPING, seen)
    assert len(first.traces) == 1 and not again.traces and again.duplicates == 1


def test_undecodable_bytes_name_the_encoding() -> None:
    with pytest.raises(UndecodableOtlp, match="otlp_proto or otlp_json"):
        decode_request(b"\xff\xfe not protobuf", "otlp_proto")
    with pytest.raises(UndecodableOtlp, match="OTLP/JSON"):
        decode_request(b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}')


@pytest.mark.parametrize("raw", [
    b"\xff\xfe not protobuf",
    b"\x08\x96\x01 just unknown fields",  # parses as protobuf, but holds no export
    "{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"traceId\": \"PII\"}]}]}]}".replace(
        "PII", PII_PROMPT).encode(),
    "{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"name\": 7, \"kind\": \"PII\"}]}]}]}".replace(
        "PII", PII_PROMPT).encode(),
    ("{\"resourceSpans\": \"" + PII_PROMPT + "\"").encode(),  # truncated JSON
    PII_PROMPT.encode("utf-16"),
])
def test_undecodable_message_is_one_content_free_dead_letter(raw: bytes) -> None:
    from streams.otlp.agent import map_message

    result, letters = map_message(raw, OtlpEncoding.auto, MAPPING, SeenSpans(),
                                  SourcePosition("otlp_spans", 2, 9, "k"))
    assert not result.traces and len(letters) == 1
    letter = letters[0]
    assert letter.error_kind == "otlp_undecodable" and "otlp_proto or otlp_json" in letter.reason
    assert letter.original_b64 == "" and letter.original_bytes == len(raw)
    assert letter.original_sha256 == hashlib.sha256(raw).hexdigest()
    kept = letter.model_dump_json()
    assert "jane.doe" not in kept and "536-22-8726" not in kept and "Where is my order" not in kept


def test_a_bad_span_among_good_ones_is_one_dead_letter_per_span() -> None:
    from streams.otlp.agent import map_message

    rec = SpanRecorder()
    rec.chat()
    rec.no_model()
    rec.no_model()
    rec.plain()
    result, letters = map_message(otlp_json(rec.take()), OtlpEncoding.auto, MAPPING, SeenSpans(),
                                  SourcePosition("otlp_spans", 0, 1, None))
    assert len(result.traces) == 1 and len(letters) == 2 and len(result.skipped) == 1
    assert len({letter.original_sha256 for letter in letters}) == 2
    assert all(PII_PROMPT not in letter.model_dump_json() for letter in letters)


def test_mapping_sources_defaults_and_errors() -> None:
    mapping = OtlpMapping.from_dict({"version": "2", "fields": {
        "tenant": {"from": ["resource.k8s.namespace.name"]},
        "route": {"from": ["any.app.route"], "default": "fallback"}}})
    assert mapping.resolve("tenant", {}, {"k8s.namespace.name": "payments"}) == "payments"
    assert mapping.resolve("tenant", {}, {}) == "default"  # required fields always have a default
    assert mapping.resolve("route", {}, {"app.route": "r-res"}) == "r-res"
    assert mapping.resolve("route", {"app.route": "r-span"}, {"app.route": "r-res"}) == "r-span"
    assert mapping.resolve("application", {}, {}) == "unknown_service"
    with pytest.raises(MappingError, match="resource., span. or any."):
        OtlpMapping.from_dict({"version": "1", "fields": {"route": {"from": ["gen_ai.agent.name"]}}})
    with pytest.raises(MappingError, match="version"):
        OtlpMapping.from_dict({"fields": {}})


def test_parts_shape_in_native_contract_keeps_text_and_describes_the_rest() -> None:
    trace = InferenceTrace.model_validate({
        "trace_id": "t", "span_id": "s", "timestamp": "2026-01-01T00:00:00Z", "tenant": "a", "application": "b",
        "route": "r", "provider": "openai", "request_model": "m",
        "input_messages": [{"role": "user", "parts": [
            {"type": "text", "content": PII_PROMPT},
            {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBORw0KGgo="}]}]})
    content = trace.input_messages[0].content
    assert PII_PROMPT in content and "[image blob image/png" in content


def test_a_retry_in_the_same_batch_is_a_duplicate() -> None:
    from streams.otlp.stage import BatchSeen
    rec = SpanRecorder()
    rec.chat()
    raw = otlp_proto(rec.take())
    batch = BatchSeen(SeenSpans())
    first = map_request(decode_request(raw), MAPPING, batch)
    batch.pending.update(first.keys)
    assert not map_request(decode_request(raw), MAPPING, batch).traces


def test_otlp_map_cli_prints_traces_and_reports_skipped_spans(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from streams.cli import app

    rec = SpanRecorder()
    rec.agent_run()
    rec.plain()
    custom = tmp_path / "mapping.yaml"
    custom.write_text("version: mine-1\nfields:\n  route: {from: [resource.service.name]}\n")
    result = CliRunner().invoke(app, ["otlp", "map", "--encoding", "otlp_json", "--mapping", str(custom)],
                                input=otlp_json(rec.take()))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{\"schema_version\"")]
    assert len(lines) == 2 and {t["route"] for t in lines} == {"support-api"}
    assert {t["metadata"]["otlp.mapping"] for t in lines} == {"mine-1"}
    assert "no_genai_attributes" in result.output and "agent_totals_in_children" in result.output
    bad = CliRunner().invoke(app, ["otlp", "map", "--encoding", "otlp_proto"], input=b"\xff\x00garbage")
    assert bad.exit_code == 2


def test_content_carried_as_genai_events_on_the_span() -> None:
    rec = SpanRecorder()
    with rec.tracer.start_as_current_span("chat gpt-4o-mini") as span:  # the older event conventions
        span.set_attributes({"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini"})
        span.add_event("gen_ai.system.message", {"content": "Be brief."})
        span.add_event("gen_ai.user.message", {"content": PII_PROMPT})
        span.add_event("gen_ai.choice", {"index": 0, "finish_reason": "tool_calls", "message": json.dumps(
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "lookup_order", "arguments": "{}"}}]})})
    with rec.tracer.start_as_current_span("chat gpt-4o-mini") as span:  # the operation-details event
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                             "gen_ai.request.model": "gpt-4o-mini"})
        span.add_event("gen_ai.client.inference.operation.details", {
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hello"}]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop",
                                                   "parts": [{"type": "text", "content": "hi there"}]}])})
    events, details = map_request(decode_request(otlp_proto(rec.take())), MAPPING).traces
    assert [m.role for m in events.input_messages] == ["system", "user"]
    assert events.input_messages[1].content == PII_PROMPT
    assert events.tool_calls[0].name == "lookup_order" and events.finish_reasons == ["tool_calls"]
    assert details.input_messages[0].content == "hello" and details.output_messages[0].content == "hi there"
    assert details.finish_reasons == ["stop"]


def _native(**fields: object) -> dict[str, object]:
    return {"trace_id": "t", "span_id": "s", "timestamp": "2026-01-01T00:00:00Z", "tenant": "a",
            "application": "b", "route": "r", "provider": "openai", "request_model": "m", **fields}


def test_native_trace_in_the_parts_shape_is_never_stored_empty() -> None:
    from streams.ingest import decode_trace

    record = _native(
        input_messages=[
            {"role": "user", "parts": [{"type": "text", "content": PII_PROMPT}]},
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "lookup_order",
                                             "arguments": {"email": "jane.doe@example.com"}}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1",
                                        "response": {"status": "shipped"}}]}],
        output_messages=[{"role": "assistant", "finish_reason": "stop",
                          "parts": [{"type": "text", "content": "It shipped."},
                                    {"type": "tool_call", "id": "c2", "name": "notify", "arguments": "{}"}]}])
    trace = decode_trace(json.dumps(record).encode())
    assert trace.input_messages[0].content == PII_PROMPT
    assert "lookup_order" in trace.input_messages[1].content and "jane.doe" in trace.input_messages[1].content
    assert "shipped" in trace.input_messages[2].content
    assert trace.output_messages[0].content.startswith("It shipped.")
    assert [(c.name, c.result) for c in trace.tool_calls] == [("lookup_order", {"status": "shipped"}),
                                                              ("notify", None)]
    assert trace.tool_calls[0].arguments == {"email": "jane.doe@example.com"}
    # A producer's own tool_calls win; plain content is untouched.
    own = InferenceTrace.model_validate(_native(
        tool_calls=[{"name": "x"}], output_messages=[{"role": "assistant", "content": "plain",
                                                      "parts": [{"type": "tool_call", "name": "y"}]}]))
    assert [c.name for c in own.tool_calls] == ["x"] and own.output_messages[0].content == "plain"


def test_parts_shaped_trace_is_redacted_by_the_governor_path() -> None:
    from detectors.redaction import RedactionPolicy, Redactor

    redactor = Redactor(RedactionPolicy.load(CONFIG_DIR / "redaction-policy.yaml"), key=b"k" * 32)
    trace = InferenceTrace.model_validate(_native(input_messages=[
        {"role": "user", "parts": [{"type": "text", "content": PII_PROMPT}]}]))
    redacted, _ = redactor.redact_trace(trace.model_dump(mode="json"))
    text = json.dumps(redacted)
    assert "jane.doe@example.com" not in text and "536-22-8726" not in text and "Where is my order" in text


def test_readme_collector_config_matches_warden_defaults() -> None:
    import re

    import yaml

    from streams.config import WardenSettings
    from streams.otlp.agent import otlp_sources
    from tests.infra import REPO

    block = re.search(r"<!-- example: collector-kafka -->\s*```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "README lost its Collector example"
    config = yaml.safe_load(block.group(1))
    kafka = config["exporters"]["kafka"]
    assert otlp_sources(WardenSettings()) == {kafka["traces"]["topic"]: OtlpEncoding.auto}
    assert kafka["traces"]["encoding"] in ("otlp_proto", "otlp_json")
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["kafka"]
