"""Issue 18: real serving layers feed Warden without glue, end to end on the real broker and
engine (one worker and one ``warden otlp serve`` for the module).

* The real ``openai`` client, instrumented by ``opentelemetry-instrumentation-openai-v2``
  and exported by the SDK's ``OTLPSpanExporter`` (OTLP/HTTP, gzip) to the receiver: the
  README's example run as written, in its own interpreter.
* SDK GenAI spans exported to the receiver as protobuf and as OTLP/JSON, one span with a
  broken id (a partial success).
* LiteLLM ``completion(..., mock_response=...)`` and ``acompletion`` with the callback (the
  README's SDK example and deploy/litellm's proxy callback); a failing call is an error.
* The README's ``TracePublisher`` example.

Every row is checked for the prompt's PII stored unredacted.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.infra import REPO, SHARED_PIDS, LocalKafka, clickhouse_dsn
from tests.otlp_spans import PII_PROMPT, SpanRecorder, otlp_json
from tests.pipeline_helpers import wait_for
from tests.serving_helpers import MockOpenAI, Receiver, readme_example
from tests.worker_proc import Pipeline, WorkerProcess

pytestmark = pytest.mark.integration
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM must never fetch its price map
TOKEN = "otlp-http-test-token"
PII = ("jane.doe@example.com", "536-22-8726", "4111 1111 1111 1111", "555 0134")


class Stack:
    def __init__(self, pipeline: Pipeline, worker: WorkerProcess, receiver: Receiver) -> None:
        self.pipeline, self.worker, self.receiver = pipeline, worker, receiver
        self.raw_topic = pipeline.topic("traces.raw.v1")

    def rows(self, where: str) -> list[dict[str, Any]]:
        return self.worker.sql(f"SELECT * FROM traces FINAL WHERE {where} ORDER BY timestamp")  # type: ignore[return-value]

    def wait_rows(self, where: str, count: int, what: str) -> list[dict[str, Any]]:
        wait_for(lambda: int(self.worker.scalar(f"SELECT count() FROM traces FINAL WHERE {where}")) >= count,
                 180, what, self.worker)
        rows = self.rows(where)
        assert len(rows) == count, f"{what}: {len(rows)} rows"
        _no_pii(rows)
        return rows

    def readme(self, name: str) -> str:
        return readme_example(name).replace("127.0.0.1:9092", self.pipeline.bootstrap) \
            .replace("warden.traces.raw.v1", self.raw_topic).replace("http://127.0.0.1:4318", self.receiver.url) \
            .replace("change-me", TOKEN)


@pytest.fixture(scope="module")
def stack(kafka: tuple[str, LocalKafka | None], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("serving")
    pipeline = Pipeline(bootstrap=kafka[0], dsn=clickhouse_dsn(tmp), workdir=tmp)
    worker = pipeline.worker()
    receiver = Receiver(pipeline.env(0, extra={"WARDEN_OTLP_HTTP_TOKEN": TOKEN,
                                               "WARDEN_OTLP_HTTP_MAX_BODY_BYTES": str(256 * 1024)}),
                        tmp / "receiver.log")
    try:
        worker.start()
        receiver.start()
        # Shared by this module's tests and stopped below: exempt from the per-test leak check.
        SHARED_PIDS.update(p.pid for p in (worker.proc, receiver.proc) if p is not None)
        yield Stack(pipeline, worker, receiver)
    finally:
        receiver.stop()
        worker.stop()
        SHARED_PIDS.difference_update(p.pid for p in (worker.proc, receiver.proc) if p is not None)


def _no_pii(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        text = json.dumps(row, default=str)
        assert not [v for v in PII if v in text], f"unredacted value stored in trace {row['trace_id']}"


def test_instrumented_openai_client_exports_through_the_receiver(stack: Stack, tmp_path: Path) -> None:
    mock = MockOpenAI()
    script = tmp_path / "serving.py"
    script.write_text(stack.readme("otlp-http") + (
        "\nimport openai\n\n"
        f"client = openai.OpenAI(base_url='{mock.url}/v1', api_key='t', max_retries=0)\n"
        f"client.chat.completions.create(model='gpt-4o-mini', messages=[{{'role': 'user', 'content': {PII_PROMPT!r}}}])\n"
        f"failing = openai.OpenAI(base_url='{mock.url}/fail/v1', api_key='t', max_retries=0)\n"
        "try:\n"
        "    failing.chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'again'}])\n"
        "except openai.RateLimitError:\n"
        "    pass\n"
        "provider.shutdown()\n"))
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        mock.close()
    assert done.returncode == 0, done.stderr[-3000:]
    rows = stack.wait_rows("application = 'support-api'", 2, "the README example's two calls")
    ok, failed = sorted(rows, key=lambda r: r["status"] != "ok")
    assert ok["status"] == "ok" and ok["input_tokens"] == 40 and ok["output_tokens"] == 9 and ok["cost_usd"] > 0
    assert "Where is my order" in ok["input_messages"] and "Your order has shipped." in ok["output_messages"]
    assert ok["tenant"] == "prod" and ok["response_model"] == "gpt-4o-mini-2024-07-18"
    assert failed["status"] == "error" and failed["error_type"]


def test_sdk_spans_in_both_encodings_and_a_partial_success(stack: Stack) -> None:
    rec = SpanRecorder(service="agent-http")
    rec.agent_run()  # three traces: two chat steps and their tool call folded in
    exporter = OTLPSpanExporter(endpoint=f"{stack.receiver.url}/v1/traces",
                                headers={"Authorization": f"Bearer {TOKEN}"})
    spans = rec.take()
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    rec.chat(error="503")
    rec.chat(model="gpt-4o", response_model="gpt-4o")
    json_spans = rec.take()
    status, body, _ = stack.receiver.post(otlp_json(json_spans), "application/json", TOKEN)
    assert status == 200 and json.loads(body) == {}, body
    broken = encode_spans(json_spans)  # the same export again, one span's id cut short
    broken.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x01\x02"
    status, body, _ = stack.receiver.post(broken.SerializeToString(), "application/x-protobuf", TOKEN)
    assert status == 200 and b"16-byte trace_id" in body
    ids = {format(s.context.trace_id, "032x") for s in spans + json_spans}
    rows = stack.wait_rows("trace_id IN ({})".format(",".join(f"'{i}'" for i in ids)), 4, "4 traces over OTLP/HTTP")
    assert sorted(r["input_tokens"] for r in rows if r["route"] == "order-agent") == [100, 200]
    assert {r["status"] for r in rows if r["request_model"] == "gpt-4o-mini" and r["route"] == "agent-http"} == {"error"}
    assert all("Where is my order" in r["input_messages"] for r in rows)


def test_receiver_refuses_what_it_cannot_take(stack: Stack) -> None:
    rec = SpanRecorder()
    rec.chat()
    body = otlp_json(rec.take())
    post = stack.receiver.post
    assert post(body, "application/json", None)[0] == 401
    assert post(body, "application/json", "not-the-token")[0] == 401
    assert post(b"not an export", "application/json", TOKEN)[0] == 400
    assert post(b"\xff" * 64, "application/x-protobuf", TOKEN)[0] == 400
    assert post(b"{" + b" " * (300 * 1024) + b"}", "application/json", TOKEN)[0] == 413
    assert post(body, "text/plain", TOKEN)[0] == 415


def _litellm_calls(litellm: Any, route: str) -> None:
    litellm.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": PII_PROMPT}],
                       mock_response="It ships today.", metadata={"warden_route": route})
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}],
                           metadata={"warden_route": route},
                           mock_response=litellm.RateLimitError("rate limited", llm_provider="openai",
                                                                model="gpt-4o-mini"))


def test_litellm_callback_from_the_readme(stack: Stack) -> None:
    import litellm

    namespace: dict[str, Any] = {}
    exec(stack.readme("litellm-sdk"), namespace)
    warden = namespace["warden"]
    try:
        _litellm_calls(litellm, "litellm-route")
        # LiteLLM runs sync callbacks on its own threads: wait until both calls are queued.
        wait_for(lambda: warden.publisher.stats.queued + warden.errors >= 2, 60, "both LiteLLM calls published")
    finally:
        litellm.logging_callback_manager.remove_callback_from_all_lists(warden)
        left = warden.close()
    assert left == 0 and warden.errors == 0 and warden.publisher.stats.delivered == 2
    ok, failed = sorted(stack.wait_rows("route = 'litellm-route'", 2, "two LiteLLM calls"),
                        key=lambda r: r["status"] != "ok")
    assert ok["tenant"] == "acme" and ok["application"] == "gateway" and ok["provider"] == "openai"
    assert "It ships today." in ok["output_messages"] and "Where is my order" in ok["input_messages"]
    assert ok["input_tokens"] > 0 and ok["output_tokens"] > 0 and ok["cost_usd"] > 0
    assert failed["status"] == "error" and failed["error_type"] == "429" and not failed["cost_usd"]


def test_litellm_proxy_callback_and_trace_publisher(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    import litellm

    config = yaml.safe_load((REPO / "deploy" / "litellm" / "config.yaml").read_text())
    module_name, attr = config["litellm_settings"]["callbacks"].split(".")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", stack.pipeline.bootstrap)
    monkeypatch.setenv("WARDEN_TOPIC_PREFIX", stack.pipeline.prefix)
    spec = importlib.util.spec_from_file_location(module_name, REPO / "deploy" / "litellm" / f"{module_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # what the proxy does with `callbacks: warden_callbacks.warden`
    warden = getattr(module, attr)
    litellm.callbacks = [warden]
    # The proxy's event loop outlives each call: LiteLLM runs async callbacks after the answer.
    loop = asyncio.new_event_loop()
    serving = threading.Thread(target=loop.run_forever, name="proxy-loop", daemon=True)
    serving.start()
    try:
        asyncio.run_coroutine_threadsafe(litellm.acompletion(
            model="gpt-4o-mini", mock_response="Proxy answer.", messages=[{"role": "user", "content": PII_PROMPT}],
            metadata={"warden_route": "proxy-route"}), loop).result(300)
        wait_for(lambda: warden.publisher.stats.queued + warden.errors >= 1, 60, "the proxy call published")
    finally:
        litellm.logging_callback_manager.remove_callback_from_all_lists(warden)
        loop.call_soon_threadsafe(loop.stop)
        serving.join(30)
        loop.close()
        left = warden.close()
    assert left == 0 and warden.errors == 0 and warden.publisher.stats.delivered == 1
    exec(stack.readme("trace-publisher"), {})
    (proxied,) = stack.wait_rows("route = 'proxy-route'", 1, "the proxy's call")
    assert proxied["application"] == "litellm-proxy" and "Proxy answer." in proxied["output_messages"]
    (published,) = stack.wait_rows("trace_id = '4bf92f3577b34da6a3ce929d0e0e4736'", 1, "the TracePublisher example")
    assert "Where is order A-1?" in published["input_messages"] and published["route"] == "support-chat"
