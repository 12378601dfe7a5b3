"""``WardenLiteLLMLogger``: a LiteLLM ``CustomLogger`` that publishes every call, successful
or failed, as an ``InferenceTrace`` through :class:`~streams.publisher.TracePublisher`.

SDK::

    import litellm
    from streams.clients.litellm import WardenLiteLLMLogger
    litellm.callbacks = [WardenLiteLLMLogger(bootstrap="kafka:9092", tenant="acme", application="gateway")]

Proxy: ``litellm_settings.callbacks`` names an instance in a module beside its
``config.yaml`` (deploy/litellm/). Tenant, application and route come from the
constructor, overridden per call by request metadata ``warden_tenant`` /
``warden_application`` / ``warden_route`` (a proxy key's team alias becomes the tenant when
neither is set). Cost is LiteLLM's own ``response_cost``.

LiteLLM is not a dependency of Warden: it is imported when :class:`WardenLiteLLMLogger` is
first used (PEP 562 module ``__getattr__``), so importing this module, building traces with
:func:`trace_from_call` and Warden's own tests of other modules never need it. Publishing
never raises into LiteLLM: a call whose trace cannot be built or queued is counted in
``errors`` and logged without its content.
"""

from __future__ import annotations

import importlib
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from streams.publisher import TracePublisher
from streams.records import InferenceTrace

log = structlog.get_logger("warden.litellm")
LITELLM_REQUIREMENT = "litellm>=1.70,!=1.107.0,<1.107"  # 1.107.0 was a compromised release


@dataclass(frozen=True)
class CallDefaults:
    """Identity of the calls a logger publishes, unless a call's metadata names its own."""

    tenant: str = "default"
    application: str = "litellm"
    route: str | None = None  # default: the model group (proxy) or the model


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a LiteLLM object or of its dict form (both reach callbacks)."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _output(response: Any) -> tuple[list[dict[str, str]], list[dict[str, Any]], list[str], str | None]:
    """Messages, tool calls, finish reasons and model of a LiteLLM ``ModelResponse``."""
    messages: list[dict[str, str]] = []
    calls: list[dict[str, Any]] = []
    reasons: list[str] = []
    for choice in _get(response, "choices", None) or []:
        message = _get(choice, "message")
        if message is None:
            continue
        messages.append({"role": str(_get(message, "role", "assistant") or "assistant"),
                         "content": str(_get(message, "content", "") or "")})
        for call in _get(message, "tool_calls", None) or []:
            fn = _get(call, "function", {})
            calls.append({"name": str(_get(fn, "name", "") or "tool"), "arguments": _get(fn, "arguments")})
        if _get(choice, "finish_reason"):
            reasons.append(str(_get(choice, "finish_reason")))
    return messages, calls, reasons, _get(response, "model")


def _input(kwargs: Mapping[str, Any], slo: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's messages (chat calls); a text-completion prompt becomes one user message."""
    messages = kwargs.get("messages") or slo.get("messages") or []
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, Mapping):
            out.append({"role": str(message.get("role") or "user"), "content": message.get("content")})
    return out


def trace_from_call(kwargs: Mapping[str, Any], response: Any, defaults: CallDefaults = CallDefaults()) -> InferenceTrace:
    """One LiteLLM call (the ``kwargs`` and response its callbacks receive) as a trace.

    Most fields come from LiteLLM's ``standard_logging_object``, the same summary its own
    loggers read, so success and failure look alike whichever provider answered.
    """
    slo: Mapping[str, Any] = kwargs.get("standard_logging_object") or {}
    params: Mapping[str, Any] = kwargs.get("litellm_params") or {}
    meta: dict[str, Any] = {**(slo.get("metadata") or {}), **(params.get("metadata") or {})}
    failed = slo.get("status") == "failure" or kwargs.get("exception") is not None
    messages, calls, reasons, response_model = ([], [], [], None) if failed else _output(response)
    started = float(slo.get("startTime") or datetime.now(UTC).timestamp())
    ended = float(slo.get("endTime") or started)
    first_token = slo.get("completionStartTime")
    error: Mapping[str, Any] = slo.get("error_information") or {}
    model = str(kwargs.get("model") or slo.get("model") or "unknown")
    call_id = str(slo.get("id") or kwargs.get("litellm_call_id") or uuid.uuid4())
    usage = meta.get("usage_object") or _get(response, "usage") or {}
    cached = _get(_get(usage, "prompt_tokens_details") or {}, "cached_tokens") or 0
    cost = slo.get("response_cost")
    metadata = {"source": "litellm"}
    if slo.get("api_base"):
        metadata["litellm.api_base"] = str(slo["api_base"])[:512]
    if slo.get("call_type"):
        metadata["litellm.call_type"] = str(slo["call_type"])[:64]
    return InferenceTrace.model_validate({
        "trace_id": str(slo.get("trace_id") or call_id)[:128], "span_id": call_id[:128],
        "timestamp": datetime.fromtimestamp(started, UTC),
        "tenant": str(meta.get("warden_tenant") or meta.get("user_api_key_team_alias") or defaults.tenant),
        "application": str(meta.get("warden_application") or defaults.application),
        "route": str(meta.get("warden_route") or defaults.route or slo.get("model_group") or model),
        "principal": meta.get("user_api_key_end_user_id") or meta.get("user_api_key_user_id"),
        "provider": str(slo.get("custom_llm_provider") or params.get("custom_llm_provider") or "unknown"),
        "request_model": model, "response_model": response_model,
        "input_messages": _input(kwargs, slo), "output_messages": messages, "tool_calls": calls,
        "input_tokens": int(slo.get("prompt_tokens") or 0), "output_tokens": int(slo.get("completion_tokens") or 0),
        "cached_input_tokens": int(cached),
        "finish_reasons": reasons or (["error"] if failed else []),
        "ttft_ms": max(0.0, (float(first_token) - started) * 1000) if first_token and not failed else None,
        "latency_ms": max(0.0, (ended - started) * 1000),
        "status": "error" if failed else "ok",
        "error_type": str(error.get("error_code") or error.get("error_class") or "error")[:128] if failed else None,
        "error_message": (str(slo.get("error_str") or kwargs.get("exception") or "")[:8192] or None) if failed else None,
        "cost_usd": float(cost) if cost is not None and not failed else None,
        "metadata": metadata,
    })


def _logger_class() -> type:
    """Build the ``CustomLogger`` subclass: the one place that imports LiteLLM."""
    try:
        custom_logger = importlib.import_module("litellm.integrations.custom_logger").CustomLogger
    except ImportError as exc:
        raise ImportError(f"streams.clients.litellm needs LiteLLM: pip install '{LITELLM_REQUIREMENT}'") from exc

    class WardenLiteLLMLogger(custom_logger):  # type: ignore[misc,valid-type]
        """Publish each LiteLLM call (sync and async, success and failure) to Warden's raw topic.

        ``bootstrap`` and ``topic`` name Kafka and the raw topic, or pass a ``publisher``;
        ``tenant``, ``application`` and ``route`` name the calls (see the module docstring).
        """

        def __init__(self, bootstrap: str = "127.0.0.1:9092", topic: str = "warden.traces.raw.v1", *,
                     tenant: str = "default", application: str = "litellm", route: str | None = None,
                     publisher: TracePublisher | None = None) -> None:
            super().__init__()
            self.publisher = publisher or TracePublisher(bootstrap, topic)
            self.defaults = CallDefaults(tenant, application, route)
            # LiteLLM adds a callback once per class and public str/int attributes: these
            # make two loggers for other destinations or identities two callbacks, not one.
            self.destination = f"{self.publisher.topic}@{bootstrap if publisher is None else id(publisher)}"
            self.tenant, self.application, self.route = tenant, application, route or ""
            self._errors = 0
            self._lock = threading.Lock()

        @property
        def errors(self) -> int:
            """Calls whose trace could not be built or queued."""
            return self._errors

        # LiteLLM calls these by keyword: the parameter names are part of its interface. It
        # calls the sync pair for completion() and the async pair for acompletion(), never both.
        def log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                              end_time: Any) -> None:
            self.publish_call(kwargs, response_obj)

        def log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                              end_time: Any) -> None:
            self.publish_call(kwargs, response_obj)

        async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                          end_time: Any) -> None:
            self.publish_call(kwargs, response_obj)

        async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                          end_time: Any) -> None:
            self.publish_call(kwargs, response_obj)

        def publish_call(self, kwargs: Mapping[str, Any], response_obj: Any) -> bool:
            """Build and enqueue the trace (never blocks); False, and ``errors`` + 1, when that failed."""
            try:
                if self.publisher.publish(trace_from_call(kwargs, response_obj, self.defaults)):
                    return True
            except Exception as exc:  # a logging callback must never fail the model call
                log.warning("litellm_trace_not_built", error_type=type(exc).__name__)
            with self._lock:
                self._errors += 1
            return False

        def close(self, timeout_s: float = 30.0) -> int:
            """Flush; returns the traces left undelivered."""
            return self.publisher.close(timeout_s)

    return WardenLiteLLMLogger


_built: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name == "WardenLiteLLMLogger":
        if name not in _built:
            _built[name] = _logger_class()
        return _built[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
