"""One OTLP export → ``InferenceTrace`` v1 records, the spans skipped and the spans rejected.

Rules (README, "OpenTelemetry GenAI spans"):

* A span is a GenAI span when it has a ``gen_ai.*`` attribute or event; others are skipped
  and counted (``no_genai_attributes``).
* ``chat``, ``text_completion``, ``generate_content``, ``embeddings`` (and any other GenAI
  operation) become one trace each.
* ``invoke_agent`` spans carry the run's totals, which their child calls already report:
  when a call of theirs is in the same export they are not charged again (skipped,
  ``agent_totals_in_children``) and lend their agent name, id and conversation id to
  their calls; an agent span without such calls (a remote agent) is a trace itself.
* ``execute_tool`` spans become tool calls of the step that asked for them (matched by
  ``gen_ai.tool.call.id``, else the latest earlier call under the same parent).
* Parent links skip spans that are not traces, so a run's calls hang off its first call
  and the run closes at its final answer (detectors/cost/runs.py).
* A span already mapped (same trace and span id, :class:`SeenSpans`) is not mapped again.
* A span that cannot become a valid trace is rejected alone, with its ids and the reason;
  its content never leaves this function.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from streams.guard.poison import content_free_dead_letter
from streams.ingest import SourcePosition
from streams.otlp.content import span_content
from streams.otlp.decode import SpanView, _without_values, span_views
from streams.otlp.mapping import OtlpMapping
from streams.records import MAX_METADATA_VALUE_CHARS, DeadLetter, InferenceTrace

AGENT_OP, TOOL_OP = "invoke_agent", "execute_tool"
# Attributes an agent span lends to the calls made under it.
INHERITED = ("gen_ai.agent.name", "gen_ai.agent.id", "gen_ai.conversation.id", "gen_ai.agent.description")


@dataclass(frozen=True)
class SkippedSpan:
    trace_id: str
    span_id: str
    name: str
    reason: str


@dataclass(frozen=True)
class RejectedSpan:
    trace_id: str
    span_id: str
    name: str
    reason: str
    wire: bytes = field(repr=False, default=b"")  # the span's protobuf bytes: hashed, never sent

    @classmethod
    def of(cls, view: SpanView, reason: str) -> RejectedSpan:
        return cls(view.trace_id, view.span_id, view.name, reason, view.wire())

    def dead_letter(self, where: SourcePosition) -> DeadLetter:
        """Ids, reason, the span's size and SHA-256: its content stays out of the dead letter
        (the raw span may hold prompts that were never redacted)."""
        return content_free_dead_letter(
            "otlp_span_rejected", f"OTLP span ({self.name[:200]}) not mapped: {self.reason}", self.wire,
            source_topic=where.topic, partition=where.partition, offset=where.offset, key=where.key,
            ids={"trace_id": self.trace_id, "span_id": self.span_id})


@dataclass
class IngestResult:
    traces: list[InferenceTrace] = field(default_factory=list)
    skipped: list[SkippedSpan] = field(default_factory=list)
    rejected: list[RejectedSpan] = field(default_factory=list)
    duplicates: int = 0
    spans: int = 0

    @property
    def keys(self) -> list[tuple[str, str]]:
        """Every span this export accounted for (mark them seen once the outputs are sent)."""
        return ([(t.trace_id, t.span_id) for t in self.traces] + [(s.trace_id, s.span_id) for s in self.skipped]
                + [(r.trace_id, r.span_id) for r in self.rejected])


class BatchSeen:
    """Spans seen before plus those of earlier messages in the batch under way (which are
    marked seen only once the batch's outputs are sent): a retry that lands in the same
    batch as its original is a duplicate too."""

    def __init__(self, seen: SeenSpans) -> None:
        self.seen = seen
        self.pending: set[tuple[str, str]] = set()

    def __contains__(self, key: object) -> bool:
        return key in self.pending or key in self.seen


class SeenSpans:
    """Recently mapped (trace id, span id) pairs, bounded; a redelivered export is dropped.

    >>> seen = SeenSpans(capacity=2)
    >>> seen.add([("t", "a"), ("t", "b"), ("t", "c")])
    >>> ("t", "a") in seen, ("t", "c") in seen
    (False, True)
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, keys: Iterable[tuple[str, str]]) -> None:
        for key in keys:
            self._keys[key] = None
            self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


def is_genai(view: SpanView) -> bool:
    return any(k.startswith("gen_ai.") for k in view.attributes) or any(
        e.name.startswith("gen_ai.") for e in view.events)


def operation(view: SpanView) -> str:
    op = view.attributes.get("gen_ai.operation.name")
    if op:
        return str(op)
    first = view.name.split(" ", 1)[0]
    return first if first in (AGENT_OP, TOOL_OP, "chat", "embeddings", "text_completion") else "chat"


def _int(attrs: Mapping[str, Any], *names: str) -> int:
    for name in names:
        if attrs.get(name) is not None:
            return int(attrs[name])
    return 0


class _Batch:
    """The spans of one export, indexed for parent walks."""

    def __init__(self, views: list[SpanView], genai: set[tuple[str, str]]):
        # Every span is indexed (a call's parent may be an HTTP span); only GenAI spans have an operation.
        self.by_key = {v.key: v for v in views}
        self.ops = {v.key: operation(v) if v.key in genai else "" for v in views}

    def ancestors(self, view: SpanView) -> Iterable[SpanView]:
        parent, hops = view.parent_span_id, 0
        while parent and hops < 1000:
            found = self.by_key.get((view.trace_id, parent))
            if found is None:
                return
            yield found
            parent, hops = found.parent_span_id, hops + 1

    def effective_parent(self, view: SpanView, published: set[tuple[str, str]]) -> str | None:
        """The nearest ancestor that is a trace; ``None`` when the chain ends inside the export
        (the run's root); the original id when it leaves the export (an earlier export's span)."""
        last = view
        for ancestor in self.ancestors(view):
            if ancestor.key in published:
                return ancestor.span_id
            last = ancestor
        if last.parent_span_id and (view.trace_id, last.parent_span_id) not in self.by_key:
            return last.parent_span_id if last is view else None
        return None


def map_request(request: ExportTraceServiceRequest, mapping: OtlpMapping,
                seen: Container[tuple[str, str]] | None = None) -> IngestResult:
    """Map every span of one export (see the module docstring for the rules)."""
    result = IngestResult()
    every: list[SpanView] = []
    views: list[SpanView] = []
    keys: set[tuple[str, str]] = set()
    for view in span_views(request):
        result.spans += 1
        if view.key in keys or (seen is not None and view.key in seen):
            result.duplicates += 1
            continue
        keys.add(view.key)
        every.append(view)
        if not view.trace_id or not view.span_id:
            result.rejected.append(RejectedSpan.of(view, "trace_id and span_id are required"))
        elif not is_genai(view):
            result.skipped.append(SkippedSpan(view.trace_id, view.span_id, view.name, "no_genai_attributes"))
        else:
            views.append(view)
    batch = _Batch(every, {v.key for v in views})
    calls = [v for v in views if batch.ops[v.key] not in (AGENT_OP, TOOL_OP)]
    agents_with_calls = {a.key for v in calls for a in batch.ancestors(v) if batch.ops.get(a.key) == AGENT_OP}
    published = {v.key for v in views if batch.ops[v.key] != TOOL_OP and v.key not in agents_with_calls}
    records: dict[tuple[str, str], dict[str, Any]] = {}
    call_ids: dict[tuple[str, str], list[Any]] = {}
    for view in views:
        if view.key in agents_with_calls:
            result.skipped.append(SkippedSpan(view.trace_id, view.span_id, view.name, "agent_totals_in_children"))
        elif view.key in published:
            try:
                records[view.key], call_ids[view.key] = _record(view, batch, published, mapping)
            except (TypeError, ValueError) as exc:
                result.rejected.append(RejectedSpan.of(view, _without_values(str(exc))))
    for view in views:
        if batch.ops[view.key] == TOOL_OP:
            owner = _tool_owner(view, batch, published, records, call_ids)
            if owner is None:
                result.skipped.append(SkippedSpan(view.trace_id, view.span_id, view.name, "tool_span_without_its_call"))
            else:
                _attach_tool(records[owner], call_ids[owner], view)
                result.skipped.append(SkippedSpan(view.trace_id, view.span_id, view.name, "tool_call_of_its_step"))
    for key, record in records.items():
        try:
            result.traces.append(InferenceTrace.model_validate(record))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            view = batch.by_key[key]
            result.rejected.append(RejectedSpan.of(view, f"{exc.error_count()} invalid field(s): {problems}"))
    return result


def _record(view: SpanView, batch: _Batch, published: set[tuple[str, str]],
            mapping: OtlpMapping) -> tuple[dict[str, Any], list[Any]]:
    attrs: dict[str, Any] = {}
    for ancestor in reversed(list(batch.ancestors(view))):  # the nearest agent wins
        if batch.ops.get(ancestor.key) == AGENT_OP:
            attrs.update({k: ancestor.attributes[k] for k in INHERITED if k in ancestor.attributes})
    attrs.update(view.attributes)
    model = attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model")
    if not model:
        raise ValueError("gen_ai.request.model is missing: the instrumentation must record the model asked for")
    content = span_content(attrs, view.events)
    errored = view.status_error or bool(attrs.get("error.type"))
    reasons = attrs.get("gen_ai.response.finish_reasons") or content.finish_reasons
    metadata = {"otlp.mapping": mapping.version, "otlp.span_name": view.name[:200]}
    for name in (*mapping.metadata, "gen_ai.response.id"):
        if attrs.get(name) not in (None, ""):
            metadata[name] = str(attrs[name])[:MAX_METADATA_VALUE_CHARS]
    ttft = attrs.get("gen_ai.response.time_to_first_chunk")
    record: dict[str, Any] = {
        "trace_id": view.trace_id, "span_id": view.span_id,
        "parent_span_id": batch.effective_parent(view, published),
        "timestamp": datetime.fromtimestamp(view.start_unix_nano / 1e9, UTC),
        "provider": str(attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system") or "unknown"),
        "operation": batch.ops[view.key][:32], "request_model": str(model),
        "response_model": attrs.get("gen_ai.response.model"),
        "input_messages": content.input_messages, "output_messages": content.output_messages,
        "tool_calls": [{"name": c["name"], "arguments": c.get("arguments")} for c in content.tool_calls],
        "input_tokens": _int(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
        "output_tokens": _int(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
        "cached_input_tokens": _int(attrs, "gen_ai.usage.cache_read.input_tokens",
                                    "gen_ai.usage.cache_read_input_tokens"),
        "finish_reasons": [str(r) for r in (reasons if isinstance(reasons, list) else [reasons])],
        "ttft_ms": float(ttft) * 1000 if ttft is not None else None,
        "latency_ms": max(0.0, (view.end_unix_nano - view.start_unix_nano) / 1e6),
        "status": "error" if errored else "ok",
        "error_type": str(attrs.get("error.type") or "span_status_error")[:128] if errored else None,
        "error_message": view.status_message[:8192] or None if errored else None,
        "metadata": metadata,
    }
    for name in ("tenant", "application", "route", "principal", "deployment", "region", "data_classification"):
        value = mapping.resolve(name, attrs, view.resource)
        if value is not None:
            record[name] = value
    return record, [c.get("id") for c in content.tool_calls]


def _tool_owner(tool: SpanView, batch: _Batch, published: set[tuple[str, str]],
                records: Mapping[tuple[str, str], dict[str, Any]],
                call_ids: Mapping[tuple[str, str], list[Any]]) -> tuple[str, str] | None:
    candidates = [k for k in records if k[0] == tool.trace_id]
    call_id = tool.attributes.get("gen_ai.tool.call.id")
    if call_id:
        for key in candidates:
            if call_id in call_ids[key]:
                return key
    parent = batch.effective_parent(tool, published)
    if parent and (tool.trace_id, parent) in records:
        return (tool.trace_id, parent)
    earlier = [batch.by_key[k] for k in candidates
               if batch.effective_parent(batch.by_key[k], published) == parent
               and batch.by_key[k].end_unix_nano <= tool.start_unix_nano]
    return max(earlier, key=lambda v: v.end_unix_nano).key if earlier else None


def _attach_tool(record: dict[str, Any], ids: list[Any], tool: SpanView) -> None:
    attrs = tool.attributes
    name = str(attrs.get("gen_ai.tool.name") or tool.name.removeprefix("execute_tool ").strip() or "tool")
    status = "error" if tool.status_error or attrs.get("error.type") else "ok"
    result = attrs.get("gen_ai.tool.call.result")
    arguments = attrs.get("gen_ai.tool.call.arguments")
    calls: list[dict[str, Any]] = record["tool_calls"]
    call_id = attrs.get("gen_ai.tool.call.id")
    index = ids.index(call_id) if call_id and call_id in ids else next(
        (i for i, c in enumerate(calls) if c["name"] == name and c.get("result") is None), None)
    if index is None:
        calls.append({"name": name, "arguments": arguments, "result": result, "status": status})
        ids.append(call_id)
        return
    calls[index].update(status=status, result=result)
    if calls[index].get("arguments") is None:
        calls[index]["arguments"] = arguments
