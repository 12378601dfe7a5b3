"""Genuine GenAI spans made with the OpenTelemetry SDK, encoded as the Collector writes them.

Nothing here writes span bytes by hand: the SDK records the spans and the OTLP encoders of
the opentelemetry packages (protobuf, and OTLP/JSON with hex ids) serialise them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans as encode_json
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as encode_proto
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

PII_PROMPT = ("My email is jane.doe@example.com, phone +1 415 555 0134, SSN 536-22-8726, "
              "card 4111 1111 1111 1111. Where is my order?")


class SpanRecorder:
    """A tracer provider for one service whose finished spans can be taken and encoded."""

    def __init__(self, service: str = "support-api", environment: str = "prod") -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create(
            {"service.name": service, "deployment.environment.name": environment}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("warden-tests")

    def take(self) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        return spans

    def chat(self, model: str = "gpt-4o-mini", *, prompt: str = PII_PROMPT, answer: str = "It ships today.",
             input_tokens: int = 120, output_tokens: int = 30, error: str | None = None,
             tool_call: tuple[str, str] | None = None, agent: str | None = None,
             response_model: str | None = None) -> None:
        """One ``chat`` span in the current conventions (content as span attributes)."""
        with self.tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT) as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": model, "gen_ai.request.temperature": 0.2,
                "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": prompt}]}]),
            })
            if agent:
                span.set_attribute("gen_ai.agent.name", agent)
            if error:
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR, f"Error code: {error}"))
                return
            parts: list[dict[str, object]] = [{"type": "text", "content": answer}] if not tool_call else [
                {"type": "tool_call", "id": tool_call[0], "name": tool_call[1], "arguments": {"order": "A-1"}}]
            span.set_attributes({
                "gen_ai.response.model": response_model or f"{model}-2024-07-18", "gen_ai.response.id": "chatcmpl-1",
                "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens,
                "gen_ai.response.finish_reasons": ["tool_calls" if tool_call else "stop"],
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": parts,
                                                       "finish_reason": "tool_calls" if tool_call else "stop"}]),
            })

    def agent_run(self, agent: str = "order-agent", model: str = "gpt-4o-mini") -> None:
        """invoke_agent → chat (asks for a tool) → execute_tool → chat (final answer)."""
        with self.tracer.start_as_current_span(f"invoke_agent {agent}") as run:
            run.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
                                "gen_ai.agent.id": "agent-7", "gen_ai.provider.name": "openai",
                                "gen_ai.request.model": model, "gen_ai.conversation.id": "conv-42",
                                # the run's totals: what its two calls below already report
                                "gen_ai.usage.input_tokens": 300, "gen_ai.usage.output_tokens": 50})
            self.chat(model, input_tokens=100, output_tokens=20, tool_call=("call_1", "lookup_order"))
            with self.tracer.start_as_current_span("execute_tool lookup_order", kind=SpanKind.INTERNAL) as tool:
                tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
                                     "gen_ai.tool.call.id": "call_1", "gen_ai.tool.type": "function",
                                     "gen_ai.tool.call.result": '{"status": "shipped"}'})
            self.chat(model, input_tokens=200, output_tokens=30, answer="Your order A-1 has shipped.")

    def legacy_chat(self, model: str = "gpt-4o-mini") -> None:
        """A span with the older names (OpenLLMetry, LiteLLM's otel callback)."""
        with self.tracer.start_as_current_span(f"litellm_request {model}", kind=SpanKind.CLIENT) as span:
            span.set_attributes({
                "gen_ai.system": "openai", "gen_ai.request.model": model, "gen_ai.response.model": model,
                "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "You are helpful.",
                "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": PII_PROMPT,
                "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Checking.",
                "gen_ai.completion.0.finish_reason": "stop",
                "gen_ai.usage.prompt_tokens": 80, "gen_ai.usage.completion_tokens": 12,
            })

    def plain(self) -> None:
        with self.tracer.start_as_current_span("GET /healthz", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", "GET")

    def no_model(self) -> None:
        """A GenAI span that cannot become a trace (no model recorded)."""
        with self.tracer.start_as_current_span("chat", kind=SpanKind.CLIENT) as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                                     {"type": "text", "content": PII_PROMPT}]}])})


def otlp_proto(spans: Sequence[ReadableSpan]) -> bytes:
    return bytes(encode_proto(spans).SerializeToString())


def otlp_json(spans: Sequence[ReadableSpan]) -> bytes:
    return str(encode_json(spans).to_json()).encode()
