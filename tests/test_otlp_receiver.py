"""The OTLP/HTTP receiver's answers that need no broker: refused requests, unsafe binds, and
503 with Retry-After when Kafka does not answer. Bodies come from the SDK and the OTLP
encoders (tests/otlp_spans.py); the accepted path runs in tests/test_serving_layers_e2e.py."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from typer.testing import CliRunner

from streams.config import WardenSettings
from streams.otlp.receiver import (
    ReceiverConfigError,
    check_settings,
    create_receiver,
    without_invalid_ids,
)
from tests.infra import free_port
from tests.otlp_spans import SpanRecorder, otlp_json, otlp_proto

TOKEN = "receiver-test-token"


def _settings(**overrides: Any) -> WardenSettings:
    # Nothing listens on the bootstrap port: every publish times out after a second.
    return WardenSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}", otlp_topics=["t-otlp"],
                          otlp_http_token=TOKEN, otlp_http_max_body_bytes=64 * 1024,
                          otlp_http_publish_timeout_s=1.0, **overrides)


class FullBuffer:
    """A producer whose local buffer is full (librdkafka raises ``BufferError``)."""

    def publish(self, value: bytes, key: bytes | None) -> None:
        raise BufferError("Local: Queue full")

    def close(self, timeout_s: float = 10.0) -> int:
        return 0


def _post(requests: list[tuple[bytes, dict[str, str]]], publisher: Any = None) -> list[tuple[int, bytes, dict[str, str]]]:
    async def run() -> list[tuple[int, bytes, dict[str, str]]]:
        async with TestClient(TestServer(create_receiver(_settings(), publisher))) as client:
            out = []
            for body, headers in requests:
                resp = await client.post("/v1/traces", data=body, headers=headers)
                out.append((resp.status, await resp.read(), dict(resp.headers)))
            return out

    return asyncio.run(run())


def _spans() -> SpanRecorder:
    rec = SpanRecorder()
    rec.chat()
    return rec


def test_refused_requests_get_the_status_codes_the_spec_names() -> None:
    body = otlp_proto(_spans().take())
    proto = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {TOKEN}"}
    as_json = {**proto, "Content-Type": "application/json"}
    big = gzip.compress(b"{" + b" " * (200 * 1024) + b"}")  # small on the wire, past the limit inflated
    answers = _post([
        (body, {"Content-Type": "application/x-protobuf"}),  # no token
        (body, {**proto, "Authorization": "Bearer wrong"}),
        (body, {**proto, "Authorization": "Bearer caf\u00e9".encode().decode("latin-1")}),  # not ASCII
        (b"\xff\xfe not an export", proto),
        (b"[1, 2]", as_json),
        (b"x" * (65 * 1024), proto),  # Content-Length past the limit
        (big, {**as_json, "Content-Encoding": "gzip"}),
        (b"\x1f\x8b not gzip at all", {**proto, "Content-Encoding": "gzip"}),
        (body, {**proto, "Content-Type": "text/plain"}),
    ])
    assert [a[0] for a in answers] == [401, 401, 401, 400, 400, 413, 413, 400, 415]
    status = Status()
    status.ParseFromString(answers[3][1])
    assert status.code == 3 and "protobuf" in status.message  # INVALID_ARGUMENT, in the request's encoding
    assert json.loads(answers[4][1])["code"] == 3
    assert "over 65536 bytes" in Status.FromString(answers[5][1]).message
    assert len(big) < 64 * 1024 and "decompressed" in json.loads(answers[6][1])["message"]


def test_kafka_not_answering_is_503_with_retry_after_in_either_encoding() -> None:
    spans = _spans().take()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = _post([(otlp_proto(spans), {**auth, "Content-Type": "application/x-protobuf"}),
                     (gzip.compress(otlp_json(spans)), {**auth, "Content-Type": "application/json",
                                                        "Content-Encoding": "gzip"})])
    assert [a[0] for a in answers] == [503, 503]
    assert all(a[2]["Retry-After"] == "5" for a in answers)
    assert Status.FromString(answers[0][1]).code == 14 and json.loads(answers[1][1])["code"] == 14  # UNAVAILABLE


def test_a_full_producer_buffer_is_429_with_retry_after() -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf"}
    ((status, body, headers),) = _post([(otlp_proto(_spans().take()), auth)], FullBuffer())
    assert status == 429 and headers["Retry-After"] == "5" and Status.FromString(body).code == 14


def test_spans_without_valid_ids_are_counted_not_published() -> None:
    rec = _spans()
    rec.chat(model="gpt-4o")
    export = encode_spans(rec.take())
    export.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x01\x02"
    assert without_invalid_ids(export) == 1
    assert [s.name for s in export.resource_spans[0].scope_spans[0].spans] == ["chat gpt-4o"]


def test_a_bind_off_loopback_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ReceiverConfigError, match="WARDEN_OTLP_HTTP_TOKEN"):
        check_settings(WardenSettings(otlp_http_host="0.0.0.0"))
    assert check_settings(WardenSettings(otlp_http_host="0.0.0.0", otlp_http_token=TOKEN)) == "otlp_spans"
    with pytest.raises(ReceiverConfigError, match="otlp_json"):
        check_settings(WardenSettings(otlp_topics=["spans=otlp_json"]))
    from streams.cli import app

    monkeypatch.delenv("WARDEN_OTLP_HTTP_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["otlp", "serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "refusing to start" in result.output
