"""Message content of a GenAI span, wherever its producer put it.

Three generations of the conventions are in use at once:

* span attributes ``gen_ai.system_instructions``, ``gen_ai.input.messages`` and
  ``gen_ai.output.messages`` (JSON text, or structured values) in the ``parts`` shape;
  the same attributes on a ``gen_ai.client.inference.operation.details`` event;
* the older flat attributes ``gen_ai.prompt.N.role|content`` and
  ``gen_ai.completion.N.role|content|finish_reason|tool_calls.M.name|arguments``
  (OpenLLMetry, LiteLLM's ``otel`` callback);
* GenAI events carried on the span: ``gen_ai.system.message``, ``gen_ai.user.message``,
  ``gen_ai.assistant.message``, ``gen_ai.tool.message`` and ``gen_ai.choice``, with the
  content in ``content``/``message`` (or ``gen_ai.prompt``/``gen_ai.completion`` on
  ``gen_ai.content.prompt``/``gen_ai.content.completion`` events).

The first that yields messages wins for inputs and for outputs separately.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.message_parts import parts_text, tool_call_parts
from streams.otlp.decode import SpanEvent

_FLAT = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(.+)$")
_EVENT_ROLES = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}


@dataclass
class SpanContent:
    """Messages as ``{"role", "content"}`` dicts and the tool calls the model asked for."""

    input_messages: list[dict[str, str]] = field(default_factory=list)
    output_messages: list[dict[str, str]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # name, arguments, id
    finish_reasons: list[str] = field(default_factory=list)


def _structured(value: Any) -> Any:
    """Attribute values arrive as JSON text (the common case) or already structured."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _conventions_messages(value: Any, calls: list[dict[str, Any]], reasons: list[str]) -> list[dict[str, str]]:
    value = _structured(value)
    if isinstance(value, Mapping):
        value = [value]
    if isinstance(value, str):
        return [{"role": "user", "content": value}] if value else []
    out: list[dict[str, str]] = []
    for message in value if isinstance(value, list) else []:
        if not isinstance(message, Mapping):
            out.append({"role": "user", "content": _text(message)})
            continue
        role = str(message.get("role") or "user")[:32]
        if "parts" in message:
            content = parts_text(message["parts"])
            for part in tool_call_parts(message["parts"]):
                calls.append({"name": str(part.get("name", "")), "arguments": part.get("arguments"),
                              "id": part.get("id")})
        else:
            content = _text(message.get("content"))
        if message.get("finish_reason"):
            reasons.append(str(message["finish_reason"]))
        out.append({"role": role, "content": content})
    return out


def _system_message(value: Any) -> list[dict[str, str]]:
    value = _structured(value)
    content = parts_text(value) if isinstance(value, list) else _text(value)
    return [{"role": "system", "content": content}] if content else []


def _flat_messages(attrs: Mapping[str, Any], content: SpanContent) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    slots: dict[tuple[str, int], dict[str, Any]] = {}
    for key, value in attrs.items():
        found = _FLAT.match(key)
        if found:
            slots.setdefault((found[1], int(found[2])), {})[found[3]] = value
    inputs: list[dict[str, str]] = []
    outputs: list[dict[str, str]] = []
    for (kind, _), fields in sorted(slots.items()):
        role = str(fields.get("role") or ("user" if kind == "prompt" else "assistant"))[:32]
        message = {"role": role, "content": _text(fields.get("content"))}
        (inputs if kind == "prompt" else outputs).append(message)
        if kind == "completion":
            if fields.get("finish_reason"):
                content.finish_reasons.append(str(fields["finish_reason"]))
            calls: dict[str, dict[str, Any]] = {}
            for name, value in fields.items():
                m = re.match(r"^tool_calls\.(\d+)\.(name|arguments|id)$", name)
                if m:
                    calls.setdefault(m[1], {})[m[2]] = value
            for _, call in sorted(calls.items()):
                content.tool_calls.append({"name": str(call.get("name", "")),
                                           "arguments": _structured(call.get("arguments")), "id": call.get("id")})
    return inputs, outputs


def _event_messages(events: Sequence[SpanEvent], content: SpanContent) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    inputs: list[dict[str, str]] = []
    outputs: list[dict[str, str]] = []
    for event in events:
        attrs = event.attributes
        if event.name in _EVENT_ROLES:
            body = _structured(attrs.get("content", attrs.get("body", "")))
            inputs.append({"role": str(attrs.get("role") or _EVENT_ROLES[event.name])[:32],
                           "content": parts_text(body) if isinstance(body, list) else _text(body)})
        elif event.name == "gen_ai.choice":
            message = _structured(attrs.get("message", attrs.get("content", "")))
            if isinstance(message, Mapping):
                for call in message.get("tool_calls") or []:
                    fn = call.get("function", call) if isinstance(call, Mapping) else {}
                    content.tool_calls.append({"name": str(fn.get("name", "")),
                                               "arguments": _structured(fn.get("arguments")), "id": call.get("id")})
                outputs.append({"role": str(message.get("role") or "assistant")[:32],
                                "content": _text(message.get("content"))})
            else:
                outputs.append({"role": "assistant", "content": _text(message)})
            if attrs.get("finish_reason"):
                content.finish_reasons.append(str(attrs["finish_reason"]))
        elif event.name == "gen_ai.content.prompt" and "gen_ai.prompt" in attrs:
            inputs.extend(_conventions_messages(attrs["gen_ai.prompt"], [], []))
        elif event.name == "gen_ai.content.completion" and "gen_ai.completion" in attrs:
            outputs.extend(_conventions_messages(attrs["gen_ai.completion"], content.tool_calls, []))
    return inputs, outputs


def span_content(attrs: Mapping[str, Any], events: Sequence[SpanEvent]) -> SpanContent:
    """Everything the span says was sent and answered (see the module docstring)."""
    content = SpanContent()
    sources: list[Mapping[str, Any]] = [attrs] + [e.attributes for e in events
                                                  if e.name == "gen_ai.client.inference.operation.details"]
    for source in sources:
        if not content.input_messages and ("gen_ai.input.messages" in source
                                           or "gen_ai.system_instructions" in source):
            content.input_messages = (_system_message(source.get("gen_ai.system_instructions"))
                                      + _conventions_messages(source.get("gen_ai.input.messages", []), [], []))
        if not content.output_messages and "gen_ai.output.messages" in source:
            content.output_messages = _conventions_messages(source["gen_ai.output.messages"], content.tool_calls,
                                                            content.finish_reasons)
    if not content.input_messages or not content.output_messages:
        flat_in, flat_out = _flat_messages(attrs, content)
        content.input_messages = content.input_messages or flat_in
        content.output_messages = content.output_messages or flat_out
    if not content.input_messages or not content.output_messages:
        ev_in, ev_out = _event_messages(events, content)
        content.input_messages = content.input_messages or ev_in
        content.output_messages = content.output_messages or ev_out
    return content
