"""Messages in the OpenTelemetry GenAI conventions' ``parts`` shape, as one text.

``gen_ai.input.messages`` / ``gen_ai.output.messages`` hold messages such as
``{"role": "user", "parts": [{"type": "text", "content": "..."}]}``. Warden's contract keeps
one ``content`` string per message, because redaction and drift read text: text parts
are kept as they are, every other part is described in brackets (what it is, its name or
size), so nothing is dropped without a trace of it.

>>> parts_text([{"type": "text", "content": "hi"},
...             {"type": "tool_call", "id": "c1", "name": "lookup", "arguments": {"q": "x"}},
...             {"type": "uri", "modality": "image", "mime_type": "image/png", "uri": "https://e/x.png"}])
'hi\\n[tool_call lookup {"q": "x"}]\\n[image uri image/png]'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Part types whose payload is text a person wrote or a model produced: kept as content.
TEXT_PARTS = {"text", "reasoning", "thinking"}


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def part_text(part: Any) -> str:
    """One part as text: its content if it is text, else a bracketed description.

    Tool calls and tool results keep their arguments and response (they may hold personal
    data, so redaction must see them); binary parts keep only their kind, MIME type and size.
    """
    if isinstance(part, str):
        return part
    if not isinstance(part, Mapping):
        return f"[part {type(part).__name__}]"
    kind = str(part.get("type", "unknown"))
    if kind in TEXT_PARTS:  # OpenAI's own content parts name the field "text"
        return _compact(part.get("content", part.get("text", "")))
    if kind == "tool_call":
        return f"[tool_call {part.get('name', '')} {_compact(part.get('arguments', ''))}]".replace("  ", " ")
    if kind == "tool_call_response":
        return f"[tool_call_response {_compact(part.get('response', part.get('result', '')))}]"
    modality = part.get("modality") or kind
    mime = part.get("mime_type") or ""
    if kind == "blob":
        size = len(str(part.get("content", "")))
        return f"[{modality} blob {mime} {size} base64 chars]".replace("  ", " ")
    if kind in ("uri", "file"):
        return f"[{modality} {kind} {mime}]".replace("  ", " ").replace(" ]", "]")
    # Unknown part types: their text-looking fields are kept rather than silently lost.
    text = part.get("content") or part.get("text")
    return f"[{kind}] {_compact(text)}" if text else f"[{kind}]"


def parts_text(parts: Any) -> str:
    """Every part of one message, one per line (see :func:`part_text`)."""
    if not isinstance(parts, list):
        return _compact(parts) if parts else ""
    return "\n".join(t for t in (part_text(p) for p in parts) if t)


def tool_call_parts(parts: Any) -> list[Mapping[str, Any]]:
    """The ``tool_call`` parts of a message (what the model asked to run)."""
    if not isinstance(parts, list):
        return []
    return [p for p in parts if isinstance(p, Mapping) and p.get("type") == "tool_call"]


def _parts_of(messages: Any) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for message in messages if isinstance(messages, list) else []:
        parts = message.get("parts") if isinstance(message, Mapping) else None
        if isinstance(parts, list):
            out.extend(p for p in parts if isinstance(p, Mapping))
    return out


def tool_calls_from_parts(input_messages: Any, output_messages: Any) -> list[dict[str, Any]]:
    """``ToolCall`` records from ``parts``-shaped messages.

    Every ``tool_call`` part of the output is a call this step asks for (no result yet);
    every ``tool_call_response`` part of the input is a result the step was given: it
    completes the call of the same ``id`` (asked for earlier in the conversation, where its
    name and arguments are found), or stands alone named ``tool``.

    >>> tool_calls_from_parts(
    ...     [{"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "lookup", "arguments": {"q": 1}}]},
    ...      {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "shipped"}]}],
    ...     [{"role": "assistant", "parts": [{"type": "tool_call", "id": "c2", "name": "refund"}]}])
    [{'name': 'lookup', 'arguments': {'q': 1}, 'result': 'shipped'}, {'name': 'refund', 'arguments': None}]
    """
    inputs = _parts_of(input_messages)
    asked = {str(p["id"]): p for p in inputs if p.get("type") == "tool_call" and p.get("id") is not None}
    calls: list[dict[str, Any]] = []
    for part in inputs:
        if part.get("type") != "tool_call_response":
            continue
        call = asked.get(str(part.get("id")), {})
        calls.append({"name": str(call.get("name") or part.get("name") or "tool")[:128],
                      "arguments": call.get("arguments"), "result": part.get("response", part.get("result"))})
    for part in _parts_of(output_messages):
        if part.get("type") == "tool_call":
            calls.append({"name": str(part.get("name") or "tool")[:128], "arguments": part.get("arguments")})
    return calls
