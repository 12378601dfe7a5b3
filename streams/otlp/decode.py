"""Bytes of one OTLP trace export → flat span views.

The Collector's ``kafka`` exporter writes one ``ExportTraceServiceRequest`` per message,
as ``otlp_proto`` (protobuf, its default) or ``otlp_json``; OTLP/HTTP carries the same two.
The encoding is set per topic or recognised from the bytes: an OTLP/JSON body is a JSON
object (``{`` after optional whitespace), a protobuf export starts with field 1
(``resource_spans``, tag byte ``0x0a``) or is empty.

OTLP/JSON differs from protobuf's canonical JSON mapping (OTLP specification, "JSON
Protobuf Encoding"): trace and span ids are hex strings, not base64; enum values may be
integers; field names are lowerCamelCase; unknown fields must be ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


class OtlpEncoding(StrEnum):
    auto = "auto"
    otlp_proto = "otlp_proto"
    otlp_json = "otlp_json"


class UndecodableOtlp(ValueError):
    """A message that is not an OTLP trace export in the expected encoding."""


def detect_encoding(raw: bytes) -> OtlpEncoding:
    """``otlp_json`` for a JSON object, else ``otlp_proto``.

    >>> detect_encoding(b' {"resourceSpans": []}'), detect_encoding(bytes([0x0a, 0x00]))
    (<OtlpEncoding.otlp_json: 'otlp_json'>, <OtlpEncoding.otlp_proto: 'otlp_proto'>)
    """
    return OtlpEncoding.otlp_json if raw.lstrip()[:1] == b"{" else OtlpEncoding.otlp_proto


_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids_to_base64(spans_holder: Any) -> None:
    """Rewrite OTLP/JSON's hex ids in place into the base64 protobuf's JSON parser reads."""

    def convert(obj: dict[str, Any]) -> None:
        for name in _ID_FIELDS:
            value = obj.get(name)
            if isinstance(value, str) and value:
                try:
                    obj[name] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError as exc:
                    # The value itself stays out of the reason: anything may have been written there.
                    raise UndecodableOtlp(f"a span's {name} ({len(value)} chars) is not hex: OTLP/JSON ids are "
                                          "hex strings (check the exporter's encoding: otlp_proto or "
                                          "otlp_json)") from exc

    for resource_spans in spans_holder.get("resourceSpans") or []:
        for scope_spans in (resource_spans or {}).get("scopeSpans") or []:
            for span in (scope_spans or {}).get("spans") or []:
                if not isinstance(span, dict):
                    continue
                convert(span)
                for link in span.get("links") or []:
                    if isinstance(link, dict):
                        convert(link)


_QUOTED = re.compile(r"""("[^"]*"|'[^']*')""")


def _without_values(message: str) -> str:
    """A parser's message with every quoted value replaced: it may quote span content."""
    return _QUOTED.sub('"…"', message)[:300]


def decode_request(raw: bytes, encoding: OtlpEncoding | str = OtlpEncoding.auto) -> ExportTraceServiceRequest:
    """Parse one export. Raises :class:`UndecodableOtlp` naming the encoding and the problem
    (never quoting the message's content)."""
    chosen = OtlpEncoding(encoding)
    if chosen is OtlpEncoding.auto:
        chosen = detect_encoding(raw)
    request = ExportTraceServiceRequest()
    if chosen is OtlpEncoding.otlp_proto:
        try:
            request.ParseFromString(raw)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise UndecodableOtlp(f"not an OTLP protobuf ExportTraceServiceRequest ({_without_values(str(exc))}): "
                                  "check the exporter's encoding (otlp_proto or otlp_json)") from exc
        if raw and not request.resource_spans and len(UnknownFieldSet(request)):
            # Protobuf is lenient: arbitrary bytes often parse as unknown fields and nothing else.
            raise UndecodableOtlp("not an OTLP protobuf ExportTraceServiceRequest (no resource_spans, only "
                                  "unknown fields): check the exporter's encoding (otlp_proto or otlp_json)")
        return request
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = "too deeply nested" if isinstance(exc, RecursionError) else _without_values(str(exc))
        raise UndecodableOtlp(f"not OTLP/JSON: {reason}: check the exporter's encoding (otlp_proto or "
                              "otlp_json)") from exc
    if not isinstance(data, dict):
        raise UndecodableOtlp(f"OTLP/JSON must be an object with resourceSpans, got {type(data).__name__}")
    try:
        _hex_ids_to_base64(data)
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, AttributeError, TypeError, ValueError, RecursionError) as exc:
        if isinstance(exc, UndecodableOtlp):
            raise
        raise UndecodableOtlp("not an OTLP/JSON ExportTraceServiceRequest: "
                              f"{_without_values(str(exc))} (check the exporter's encoding: otlp_proto or "
                              "otlp_json)") from exc
    return request


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a plain Python value (bytes become hex)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        kv: KeyValue = pair
        out[kv.key] = any_value(kv.value)
    return out


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_unix_nano: int
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class SpanView:
    """One span with its resource's attributes, ids as lowercase hex."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_unix_nano: int
    end_unix_nano: int
    attributes: Mapping[str, Any]
    resource: Mapping[str, Any]
    scope: str
    events: tuple[SpanEvent, ...]
    status_error: bool
    status_message: str
    wire_bytes: int
    message: Span = field(compare=False, repr=False, default_factory=Span)

    def wire(self) -> bytes:
        """The span's own protobuf bytes (what a dead letter hashes; never sent)."""
        return bytes(self.message.SerializeToString())

    @property
    def key(self) -> tuple[str, str]:
        return (self.trace_id, self.span_id)


def span_views(request: ExportTraceServiceRequest) -> Iterator[SpanView]:
    """Every span of an export, flattened with its resource and scope."""
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield _view(span, resource, scope_spans.scope.name)


def _view(span: Span, resource: Mapping[str, Any], scope: str) -> SpanView:
    return SpanView(
        trace_id=binascii.hexlify(span.trace_id).decode(),
        span_id=binascii.hexlify(span.span_id).decode(),
        parent_span_id=binascii.hexlify(span.parent_span_id).decode() or None,
        name=span.name,
        start_unix_nano=span.start_time_unix_nano,
        end_unix_nano=span.end_time_unix_nano,
        attributes=attributes(span.attributes),
        resource=resource,
        scope=scope,
        events=tuple(SpanEvent(e.name, e.time_unix_nano, attributes(e.attributes)) for e in span.events),
        status_error=span.status.code == Status.STATUS_CODE_ERROR,
        status_message=span.status.message,
        wire_bytes=span.ByteSize(),
        message=span,
    )
