"""Versioned record contracts: what serving publishes and what Warden emits.

Field names follow the OpenTelemetry GenAI semantic conventions where they have one
(``gen_ai.provider.name`` → ``provider``, ``gen_ai.request.model`` → ``request_model``,
``gen_ai.usage.input_tokens`` → ``input_tokens`` ...). Every record carries
``schema_version``; the rules for unknown versions and fields are in the README
("Record contracts") and enforced here:

* ``schema_version`` greater than the one this build knows → dead letter
  (``unsupported_schema_version``), because a newer producer may have changed meaning.
* Unknown fields on a known version are ignored (forward compatible additions), and
  their names are counted in ``TraceValidationOutcome.unknown_fields``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from streams.message_parts import parts_text, tool_calls_from_parts

TRACE_SCHEMA_VERSION = 1

# Hard limits (documented in the README). A serving layer that exceeds them gets a
# dead letter naming the field and the limit rather than a silently truncated trace.
MAX_TRACE_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_CHARS = 512 * 1024
MAX_MESSAGES = 256
MAX_TOOL_CALLS = 128
MAX_METADATA_KEYS = 64
MAX_ID_CHARS = 128
MAX_JSON_DEPTH = 32
MAX_METADATA_VALUE_CHARS = 8192
MAX_LABEL_CHARS = 64


def utcnow() -> datetime:
    return datetime.now(UTC)


Id = Field(min_length=1, max_length=MAX_ID_CHARS)
MetaKey = Annotated[str, StringConstraints(max_length=MAX_ID_CHARS)]
MetaValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS)]
Label = Annotated[str, StringConstraints(max_length=MAX_LABEL_CHARS)]
OptId = Field(default=None, max_length=MAX_ID_CHARS)


class Message(BaseModel):
    """One chat message (``gen_ai.input.messages`` / ``gen_ai.output.messages``)."""

    model_config = ConfigDict(extra="ignore")
    role: str = Field(max_length=32)
    content: str = Field(default="", max_length=MAX_MESSAGE_CHARS)

    @model_validator(mode="before")
    @classmethod
    def _parts_as_content(cls, data: Any) -> Any:
        # The GenAI conventions' shape ({"role", "parts": [...]}) is accepted too: text parts
        # become the content, other parts are described (streams.message_parts), so that
        # redaction and drift see what the message said instead of an empty string.
        if not isinstance(data, dict):
            return data
        if data.get("content") is None and "content" in data:  # tool-call turns
            data = {**data, "content": ""}
        if data.get("parts") and not data.get("content"):
            return {**data, "content": parts_text(data["parts"])}
        if isinstance(data.get("content"), list):  # OpenAI's content parts
            return {**data, "content": parts_text(data["content"])}
        return data


class ToolCall(BaseModel):
    """A tool invocation inside a step: arguments and result are free text or JSON."""

    model_config = ConfigDict(extra="ignore")
    name: str = Field(max_length=MAX_ID_CHARS)
    arguments: Any = None
    result: Any = None
    status: Literal["ok", "error"] = "ok"


class TraceStatus(StrEnum):
    ok = "ok"
    error = "error"


class InferenceTrace(BaseModel):
    """One inference call (a span); agent steps share ``trace_id`` and link by parent.

    Units: tokens are counts, latencies milliseconds, cost US dollars.
    """

    model_config = ConfigDict(extra="ignore", frozen=False)

    schema_version: int = TRACE_SCHEMA_VERSION
    trace_id: str = Id
    span_id: str = Id
    parent_span_id: str | None = OptId
    timestamp: datetime
    tenant: str = Id
    application: str = Id
    route: str = Id
    principal: str | None = OptId
    roles: list[Label] = Field(default_factory=list, max_length=32)
    provider: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    operation: str = Field(default="chat", max_length=32)
    request_model: str = Id
    response_model: str | None = OptId
    deployment: str | None = OptId
    region: str | None = OptId
    model_version: str | None = OptId
    system_fingerprint: str | None = OptId
    prompt_template_id: str | None = OptId
    prompt_template_version: str | None = OptId
    guardrail_policy_version: str | None = OptId
    retrieval_index_version: str | None = OptId
    toolset_version: str | None = OptId
    input_messages: list[Message] = Field(default_factory=list, max_length=MAX_MESSAGES)
    output_messages: list[Message] = Field(default_factory=list, max_length=MAX_MESSAGES)
    tool_calls: list[ToolCall] = Field(default_factory=list, max_length=MAX_TOOL_CALLS)
    input_tokens: int = Field(default=0, ge=0, le=10_000_000)
    output_tokens: int = Field(default=0, ge=0, le=10_000_000)
    cached_input_tokens: int = Field(default=0, ge=0, le=10_000_000)
    finish_reasons: list[Label] = Field(default_factory=list, max_length=16)
    ttft_ms: float | None = Field(default=None, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    status: TraceStatus = TraceStatus.ok
    error_type: str | None = OptId
    error_message: str | None = Field(default=None, max_length=8192)
    cost_usd: float | None = Field(default=None, ge=0)
    attempt: int = Field(default=1, ge=1, le=1000)
    data_classification: Literal["public", "internal", "confidential", "restricted"] = "internal"
    metadata: dict[MetaKey, MetaValue] = Field(default_factory=dict, max_length=MAX_METADATA_KEYS)

    @model_validator(mode="before")
    @classmethod
    def _tool_calls_from_parts(cls, data: Any) -> Any:
        # Messages in the ``parts`` shape carry their tool calls as parts: without a
        # ``tool_calls`` list of its own, the trace takes them from there (the calls its
        # output asks for, and the results its input answers them with).
        if isinstance(data, dict) and not data.get("tool_calls"):
            calls = tool_calls_from_parts(data.get("input_messages"), data.get("output_messages"))
            if calls:
                return {**data, "tool_calls": calls}
        return data

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v < 1 or v > TRACE_SCHEMA_VERSION:
            raise ValueError(
                f"unsupported schema_version {v}; this worker reads 1..{TRACE_SCHEMA_VERSION}"
            )
        return v

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v if v.tzinfo else v.replace(tzinfo=UTC)

    @property
    def model(self) -> str:
        """The model a scope is judged by: what the provider answered with, else what was asked."""
        return self.response_model or self.request_model

    @property
    def partition_key(self) -> str:
        """Kafka key: one (route, model) pair stays in one partition, so per-key state is local."""
        return partition_key(self.route, self.request_model)

    @property
    def row_id(self) -> str:
        return f"{self.trace_id}/{self.span_id}"


def partition_key(route: str, model: str) -> str:
    return f"{route}|{model}"


class Severity(StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


class Alert(BaseModel):
    """An alert SREs subscribe to (topic ``alerts``). ``alert_id`` is deterministic so a
    replay after a crash yields the same id and storage deduplicates it."""

    model_config = ConfigDict(extra="ignore")
    schema_version: int = 1
    alert_id: str
    kind: str
    severity: Severity
    tenant: str = ""
    route: str = ""
    model: str = ""
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    finding_ids: list[str] = Field(default_factory=list)
    owner: str = ""
    oncall: str = ""
    runbook: str = ""
    dedup_key: str
    first_seen: datetime
    last_seen: datetime
    count: int = 1
    config_version: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class BreakerSignal(BaseModel):
    """Current breaker state for one target (compacted topic ``breaker``, keyed by target)."""

    model_config = ConfigDict(extra="ignore")
    schema_version: int = 1
    signal_id: str
    target: str
    state: BreakerState
    reason: str
    finding_ids: list[str] = Field(default_factory=list)
    evidence: dict[str, Any] = Field(default_factory=dict)
    policy_version: str = ""
    probe_share: float = Field(default=0.0, ge=0.0, le=1.0)
    fallback: str | None = None
    operator: str | None = None
    at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None


class ComponentKind(StrEnum):
    model = "model"
    deployment = "deployment"
    prompt = "prompt"
    guardrail_policy = "guardrail_policy"
    retrieval_index = "retrieval_index"
    toolset = "toolset"
    routing_config = "routing_config"
    price_catalog = "price_catalog"
    detector_config = "detector_config"
    redaction_policy = "redaction_policy"
    breaker_policy = "breaker_policy"
    ownership_registry = "ownership_registry"


class ChangeEvent(BaseModel):
    """A registered change (topic ``changes``): what changed, from which version to which,
    who owns it, where it applies, and a link to the ticket or commit."""

    model_config = ConfigDict(extra="ignore")
    schema_version: int = 1
    event_id: str = ""
    component_kind: ComponentKind
    component_id: str = Id
    old_version: str | None = None
    new_version: str
    owner: str = ""
    at: datetime = Field(default_factory=utcnow)
    scope_routes: list[str] = Field(default_factory=list)
    scope_tenants: list[str] = Field(default_factory=list)
    link: str = ""
    source: str = ""

    def model_post_init(self, __context: Any) -> None:
        if not self.event_id:
            basis = f"{self.component_kind}|{self.component_id}|{self.new_version}|{self.at.isoformat()}"
            self.event_id = hashlib.sha256(basis.encode()).hexdigest()[:24]


class DeadLetter(BaseModel):
    """Input Warden could not process: the reason, where it was, its size and SHA-256, and
    its content only as redacted text (``original_redacted``). ``original_b64`` is empty
    since the release that redacts dead letters (the field stays for v1 readers)."""

    schema_version: int = 1
    reason: str
    error_kind: str
    source_topic: str
    partition: int = -1
    offset: int = -1
    key: str | None = None
    original_b64: str
    original_bytes: int
    # Set on content-free dead letters (streams.guard.poison), whose bytes are not carried:
    # the SHA-256 of the bytes that were not sent, so the row still identifies them.
    original_sha256: str | None = None
    # The rejected bytes as text, redacted by the worker's policy on a best-effort basis (a
    # JSON document walked like a trace, anything else as one string); None when dropped
    # (no redactor, over the size limit, or redacting it failed).
    original_redacted: str | None = None
    received_at: datetime = Field(default_factory=utcnow)
