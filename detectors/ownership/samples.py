"""The values the worker hands the ownership detectors for one trace.

``BehaviourSample`` is plain values (no trace record): the worker copies fields from the
trace, decides ``refused`` (``finish_reason == "content_filter"`` or ``looks_like_refusal``
on the completion text) and attaches the completion embedding when the drift encoder
sampled it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# Identity fields: what a trace says about the versions that produced it. The name is the
# ``field`` used in findings and config; the value is the ledger component kind.
IDENTITY_KINDS: dict[str, str] = {
    "prompt": "prompt",
    "guardrail_policy": "guardrail_policy",
    "retrieval_index": "retrieval_index",
    "toolset": "toolset",
    "model_version": "model",
    "system_fingerprint": "model",
    "response_model": "model",
    "deployment": "deployment",
}


@dataclass(frozen=True, slots=True, eq=False)
class BehaviourSample:
    """One trace, as values.

    Parameters
    ----------
    at
        Event time, seconds since the epoch (UTC).
    route, tenant, application
        Scope of the call.
    request_model, response_model
        What was asked for and what the provider answered with (``None`` if not reported).
    deployment, model_version, system_fingerprint
        Serving identity reported by the gateway/provider, when known.
    prompt_template_id, prompt_template_version
        Prompt template and its version.
    guardrail_policy_version, retrieval_index_version, toolset_version
        Versions of the guardrail policy, retrieval index and toolset; the matching
        ``*_id`` fields name the component when the trace carries it (metadata).
    output_tokens
        Completion tokens (count).
    latency_ms, ttft_ms
        End-to-end latency and time to first token, milliseconds (``ttft_ms`` optional).
    ok
        ``False`` when the call ended in an error.
    refused
        The model or a guardrail refused (content filter, refusal phrase).
    finish_reasons
        Provider finish reasons, in order.
    tool_names
        Names of the tools called.
    embedding
        Completion embedding (float32, e.g. 384-d), only when the drift encoder sampled it.

    >>> s = BehaviourSample(at=0.0, route="faq", request_model="gpt-4o", output_tokens=120)
    >>> s.model, s.identity()["prompt"]
    ('gpt-4o', None)
    """

    at: float
    route: str
    request_model: str
    tenant: str = ""
    application: str = ""
    response_model: str | None = None
    deployment: str | None = None
    model_version: str | None = None
    system_fingerprint: str | None = None
    prompt_template_id: str | None = None
    prompt_template_version: str | None = None
    guardrail_policy_id: str | None = None
    guardrail_policy_version: str | None = None
    retrieval_index_id: str | None = None
    retrieval_index_version: str | None = None
    toolset_id: str | None = None
    toolset_version: str | None = None
    output_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    ok: bool = True
    refused: bool = False
    finish_reasons: tuple[str, ...] = ()
    tool_names: tuple[str, ...] = ()
    embedding: np.ndarray | None = None

    @property
    def model(self) -> str:
        """The model the behaviour belongs to: what answered, else what was asked."""
        return self.response_model or self.request_model

    def identity(self) -> dict[str, str | None]:
        """Identity field -> version value seen (``None`` when the trace does not say)."""
        prompt = None
        if self.prompt_template_version is not None:
            prompt = f"{self.prompt_template_id or '-'}@{self.prompt_template_version}"
        return {
            "prompt": prompt,
            "guardrail_policy": self.guardrail_policy_version,
            "retrieval_index": self.retrieval_index_version,
            "toolset": self.toolset_version,
            "model_version": self.model_version,
            "system_fingerprint": self.system_fingerprint,
            "response_model": self.response_model,
            "deployment": self.deployment,
        }

    def component_id(self, field: str) -> str | None:
        """The component an identity field versions (``None`` when the trace does not name it)."""
        if field == "prompt":
            return self.prompt_template_id
        if field in ("model_version", "system_fingerprint", "response_model"):
            return self.model
        if field == "deployment":
            return self.deployment
        return {
            "guardrail_policy": self.guardrail_policy_id,
            "retrieval_index": self.retrieval_index_id,
            "toolset": self.toolset_id,
        }.get(field)

    def version_of(self, field: str) -> str | None:
        """The bare version of an identity field (the prompt version without its id)."""
        if field == "prompt":
            return self.prompt_template_version
        return self.identity().get(field)

    def components(self) -> list[tuple[str, str]]:
        """(kind, id) of every component this trace references, for ownership lookups."""
        out = [("route", self.route), ("model", self.model)]
        if self.application:
            out.append(("application", self.application))
        named = (
            ("deployment", self.deployment),
            ("prompt", self.prompt_template_id),
            ("guardrail_policy", self.guardrail_policy_id),
            ("retrieval_index", self.retrieval_index_id),
            ("toolset", self.toolset_id),
        )
        out.extend((kind, cid) for kind, cid in named if cid)
        return out


# Openings of model refusals in English. Anchored near the start of the completion because a
# refusal leads with it; a long answer that quotes "I can't" later is not a refusal.
_REFUSAL = re.compile(
    r"^\W{0,3}(?:(?:i'?m|i am)\s+(?:very\s+|really\s+)?sorry,?\s+(?:but\s+)?)?"
    r"(?:i\s+(?:can(?:'|no)?t|cannot|won'?t|will\s+not|am\s+(?:not\s+able|unable)|'m\s+(?:not\s+able|unable)"
    r"|must\s+(?:decline|refuse)|do\s+not\s+feel\s+comfortable)"
    r"|as\s+an\s+ai\b|unfortunately,?\s+i\s+(?:can(?:'|no)?t|cannot|am\s+unable)"
    r"|that(?:'s|\s+is)\s+not\s+something\s+i\s+can|this\s+request\s+(?:violates|goes\s+against))",
    re.IGNORECASE,
)
_HELP_VERB = re.compile(
    r"\b(?:help|assist|provide|comply|do\s+that|fulfil|fulfill|answer|share|create|generate|"
    r"write|support|engage|continue|discuss)\b|as\s+an\s+ai|violates|goes\s+against|decline|refuse"
    r"|not\s+something\s+i\s+can|comfortable",
    re.IGNORECASE,
)


def looks_like_refusal(text: str) -> bool:
    """Whether a completion opens with a refusal ("I'm sorry, but I can't help with that").

    Only the first 200 characters are read; a refusal opening must be followed by a verb
    of helping within them, so "I can't wait to show you" is not a refusal.

    >>> looks_like_refusal("I'm sorry, but I can't help with that request.")
    True
    >>> looks_like_refusal("I can't wait to show you the new dashboard!")
    False
    >>> looks_like_refusal("Here is the summary you asked for.")
    False
    """
    head = text.lstrip()[:200]
    match = _REFUSAL.match(head)
    return match is not None and _HELP_VERB.search(head, match.start()) is not None
