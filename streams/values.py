"""Trace → the values each detector takes. The only place that knows both shapes.

Detectors take values, not traces; this module is the mapping, shared by the worker,
``warden replay`` and the tests so a detector sees the same numbers everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from detectors.cost.values import ChangeEvent as CostChangeEvent
from detectors.cost.values import CostSample
from detectors.ownership import BehaviourSample, LedgerEntry, looks_like_refusal
from streams.records import ChangeEvent, InferenceTrace, TraceStatus


def completion_text(trace: InferenceTrace) -> str:
    return "\n".join(m.content for m in trace.output_messages if m.role == "assistant")


def prompt_text(trace: InferenceTrace) -> str:
    users = [m.content for m in trace.input_messages if m.role == "user"]
    return users[-1] if users else ""


def is_refusal(trace: InferenceTrace) -> bool:
    """A refusal: the provider's content filter, or a completion that opens by declining."""
    return "content_filter" in trace.finish_reasons or looks_like_refusal(completion_text(trace))


def cost_sample(trace: InferenceTrace) -> CostSample:
    return CostSample(
        at=trace.timestamp.timestamp(), tenant=trace.tenant, application=trace.application,
        route=trace.route, provider=trace.provider, request_model=trace.request_model,
        response_model=trace.response_model, deployment=trace.deployment,
        input_tokens=trace.input_tokens, output_tokens=trace.output_tokens,
        cached_input_tokens=trace.cached_input_tokens, reported_cost_usd=trace.cost_usd,
        ok=trace.status == TraceStatus.ok, attempt=trace.attempt, trace_id=trace.trace_id,
        span_id=trace.span_id, parent_span_id=trace.parent_span_id, tool_calls=len(trace.tool_calls),
    )


def cost_sample_record(sample: CostSample) -> dict[str, Any]:
    """The compact record the economics agent consumes (topic ``usage.v1``)."""
    return {k: getattr(sample, k) for k in sample.__dataclass_fields__}


def cost_sample_from_record(record: Mapping[str, Any]) -> CostSample:
    return CostSample(**{k: record[k] for k in CostSample.__dataclass_fields__ if k in record})


def behaviour_sample(trace: InferenceTrace, embedding: np.ndarray | None = None) -> BehaviourSample:
    finish = tuple(trace.finish_reasons)
    meta = trace.metadata
    return BehaviourSample(
        at=trace.timestamp.timestamp(), route=trace.route, request_model=trace.request_model,
        tenant=trace.tenant, application=trace.application, response_model=trace.response_model,
        deployment=trace.deployment, model_version=trace.model_version,
        system_fingerprint=trace.system_fingerprint, prompt_template_id=trace.prompt_template_id,
        prompt_template_version=trace.prompt_template_version,
        guardrail_policy_id=meta.get("guardrail_policy_id"),
        guardrail_policy_version=trace.guardrail_policy_version,
        retrieval_index_id=meta.get("retrieval_index_id"),
        retrieval_index_version=trace.retrieval_index_version, toolset_id=meta.get("toolset_id"),
        toolset_version=trace.toolset_version, output_tokens=trace.output_tokens,
        latency_ms=trace.latency_ms, ttft_ms=trace.ttft_ms, ok=trace.status == TraceStatus.ok,
        refused=is_refusal(trace),
        finish_reasons=finish, tool_names=tuple(c.name for c in trace.tool_calls), embedding=embedding,
    )


def ledger_entry(event: ChangeEvent) -> LedgerEntry:
    return LedgerEntry(
        component_kind=str(event.component_kind), component_id=event.component_id,
        new_version=event.new_version, at=event.at.timestamp(), old_version=event.old_version,
        owner=event.owner, scope_routes=tuple(event.scope_routes), scope_tenants=tuple(event.scope_tenants),
        link=event.link, event_id=event.event_id,
    )


def cost_change_event(event: ChangeEvent) -> CostChangeEvent:
    scope = {"route": event.scope_routes[0]} if len(event.scope_routes) == 1 else {}
    return CostChangeEvent(str(event.component_kind), event.component_id, event.new_version,
                           event.at.timestamp(), scope)
