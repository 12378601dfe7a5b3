"""Requests to traces: one chat or RAG call, or an agent run of 2-6 calls with tool calls.

A :class:`Request` is what arrived (route, time, requested model) plus the knobs scenarios
turn (``out_x``, ``latency_x``, ``error_p``, a swapped response model, a prompt version...).
:func:`build_traces` turns it into ``InferenceTrace`` dicts with realistic texts, tokens,
latencies, finish reasons, retries, refusals and errors. Every random choice comes from the
request's own ``random.Random``, so a trace depends only on the seed and its request.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.sim.catalog import MODELS, ModelProfile, RouteSpec
from streams.sim.corpus import CLOSERS, OPENERS, Domain, load_domains
from streams.sim.personal import (
    REFUSALS,
    card_number,
    person_email,
    person_phone,
    secret_value,
    ssn,
)

ERROR_TYPES = (("rate_limit", "429 Too Many Requests: rate limit reached for requests"),
               ("timeout", "upstream request timed out after 30000 ms"),
               ("upstream_5xx", "502 Bad Gateway from provider"))


@dataclass
class Rates:
    """Background rates of the realistic day (shares of calls)."""

    error: float = 0.005
    retry_after_error: float = 0.6
    refusal: float = 0.01
    length_stop: float = 0.025
    content_filter: float = 0.002
    own_pii: float = 0.02          # users pasting their own email or phone
    echo_own_pii: float = 0.5      # answers confirming it back (an echo, not a leak)
    pasted_secret: float = 0.003   # users pasting a credential into the prompt
    # Answers warn about a pasted key without quoting it: by the project's policy an answer
    # that repeats a credential spreads it (streams.governor), so a quoted key is an incident
    # (scenario secret_leak), not background. Raise it to test that policy on echoes.
    echo_secret: float = 0.0
    multi_turn: float = 0.2
    tool_failure: float = 0.03


@dataclass
class Request:
    """One arrival and what scenarios changed about it."""

    route: RouteSpec
    at: float
    model: str
    rng: random.Random
    domain: str = ""
    response: ModelProfile | None = None       # silently answered by another model
    fingerprint: str | None = None             # silently updated model
    prompt_version: str | None = None
    out_x: float = 1.0
    latency_x: float = 1.0
    error_p: float | None = None
    passages: int | None = None
    tool_failure_p: float | None = None
    leak_pii: bool = False                     # the answer names someone else's data
    leak_secret: bool = False                  # the answer repeats a credential from its context
    principal: str | None = None
    input_x: float = 1.0
    tags: list[str] = field(default_factory=list)


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _tokens(text: str) -> int:
    # ~4 characters per token for English prose (OpenAI's rule of thumb).
    return max(1, round(len(text) / 4))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TraceBuilder:
    """Builds the traces of requests; one per simulated day (holds the corpus and rates)."""

    def __init__(self, rates: Rates | None = None):
        self.rates = rates or Rates()
        self.domains = load_domains()

    def build(self, req: Request) -> list[dict[str, Any]]:
        domain = self.domains[req.domain or req.route.domain]
        if req.route.kind == "agent":
            return self._agent_run(req, domain)
        return self._call_with_retry(req, domain)

    # -- texts -----------------------------------------------------------------------
    def _system(self, req: Request, domain: Domain) -> str:
        home = self.domains[req.route.domain]
        template = home.system_prompts[zlib.crc32(req.route.name.encode()) % len(home.system_prompts)]
        text = template.replace("{brand}", req.route.brand)
        n = req.passages if req.passages is not None else req.route.passages
        if n:
            passages = [req.rng.choice(home.passages) for _ in range(n)]
            text += "\nRetrieved context:\n" + "\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
        return text

    def _user(self, req: Request, domain: Domain) -> tuple[str, str | None, str | None]:
        """The user's message, and the PII / secret the user pasted into it (if any)."""
        rng, rates = req.rng, self.rates
        text = rng.choice(OPENERS) + rng.choice(domain.prompts) + rng.choice(CLOSERS)
        pii = secret = None
        if rng.random() < rates.own_pii:
            pii = person_email(rng) if rng.random() < 0.6 else person_phone(rng)
            text += rng.choice((f" You can reach me at {pii}.", f" My contact is {pii}.",
                                f" Please update my contact details to {pii}."))
        if rng.random() < rates.pasted_secret:
            secret = secret_value(rng)
            text += f" Here is the key I'm using: {secret}"
        return text, pii, secret

    def _answer(self, req: Request, domain: Domain, tokens: int, pii: str | None, secret: str | None) -> str:
        rng = req.rng
        sentences = list(domain.answers) + list(domain.passages)
        parts: list[str] = []
        if pii and rng.random() < self.rates.echo_own_pii:
            parts.append(rng.choice((f"I've updated your contact details to {pii}.",
                                     f"We'll send the confirmation to {pii}.",
                                     f"Thanks, I have {pii} as your contact.")))
        if secret:
            quoted = f" ({secret})" if rng.random() < self.rates.echo_secret else ""
            parts.append(f"Please rotate the key you pasted{quoted} right away: keys shared in chat "
                         "should be treated as exposed.")
        if req.leak_pii:
            other = rng.choice((person_email(rng), "SSN " + ssn(rng), "card " + card_number(rng)))
            parts.append(f"For reference, the account holder on file is listed under {other}.")
        if req.leak_secret:
            parts.append(f"The service credential in the runbook is {secret_value(rng)}, use it to connect.")
        while sum(len(p) for p in parts) < tokens * 4:
            parts.append(rng.choice(sentences))
        return " ".join(parts)

    # -- calls -----------------------------------------------------------------------
    def _profile(self, req: Request) -> ModelProfile:
        return req.response or MODELS[req.model]

    def _call_with_retry(self, req: Request, domain: Domain) -> list[dict[str, Any]]:
        trace_id = f"{req.rng.getrandbits(128):032x}"
        system = self._system(req, domain)
        messages = [{"role": "system", "content": system}]
        if req.rng.random() < self.rates.multi_turn:
            messages += [{"role": "user", "content": req.rng.choice(domain.prompts)},
                         {"role": "assistant", "content": req.rng.choice(domain.answers)}]
        user, pii, secret = self._user(req, domain)
        messages.append({"role": "user", "content": user})
        out: list[dict[str, Any]] = []
        at = req.at
        for attempt in (1, 2, 3):
            trace = self._call(req, domain, trace_id, None, at, messages, attempt, pii, secret, tools=())
            out.append(trace)
            if trace["status"] == "ok" or req.rng.random() >= self.rates.retry_after_error:
                break
            at += trace["latency_ms"] / 1000 + req.rng.uniform(0.5, 3.0)
        return out

    def _agent_run(self, req: Request, domain: Domain) -> list[dict[str, Any]]:
        rng = req.rng
        trace_id = f"{rng.getrandbits(128):032x}"
        root = f"{rng.getrandbits(64):016x}"
        user, pii, secret = self._user(req, domain)
        messages = [{"role": "system", "content": self._system(req, domain)}, {"role": "user", "content": user}]
        planned = rng.randint(1, 5)  # tool steps before the final answer: runs of 2-6 calls
        fail_p = self.rates.tool_failure if req.tool_failure_p is None else req.tool_failure_p
        out: list[dict[str, Any]] = []
        at, done, steps = req.at, 0, 0
        while steps < 16:
            steps += 1
            final = done >= planned
            tools = () if final else (rng.choice(req.route.tools),)
            trace = self._call(req, domain, trace_id, None if steps == 1 else root, at, messages,
                               1, pii, secret, tools=tools, fail_p=fail_p, span=root if steps == 1 else None)
            out.append(trace)
            at += trace["latency_ms"] / 1000 + _lognormal(rng, 0.4, 0.5)
            if trace["status"] == "error":
                if rng.random() >= self.rates.retry_after_error:
                    break
                continue
            if final:
                break
            call = trace["tool_calls"][0]
            if call["status"] == "ok":
                done += 1
            messages = messages + [{"role": "assistant", "content": f"Calling {call['name']}."},
                                   {"role": "tool", "content": str(call["result"])[:400]}]
        return out

    def _call(self, req: Request, domain: Domain, trace_id: str, parent: str | None, at: float,
              messages: list[dict[str, str]], attempt: int, pii: str | None, secret: str | None, *,
              tools: tuple[str, ...], fail_p: float = 0.0, span: str | None = None) -> dict[str, Any]:
        rng, rates, route = req.rng, self.rates, req.route
        profile = self._profile(req)
        error_p = rates.error if req.error_p is None else req.error_p
        failed = rng.random() < error_p
        input_tokens = round(sum(_tokens(m["content"]) for m in messages) * req.input_x) + 7 * len(messages)
        finish: list[str]
        output: list[dict[str, str]] = []
        tool_calls: list[dict[str, Any]] = []
        ttft = _lognormal(rng, profile.ttft_ms, profile.ttft_sigma) * req.latency_x
        error_type = error_message = None
        if failed:
            error_type, error_message = rng.choice(ERROR_TYPES)
            out_tokens = 0
            latency = 30000.0 if error_type == "timeout" else _lognormal(rng, 180.0, 0.4)
            ttft_value: float | None = None
            finish = ["error"]
        else:
            out_tokens = max(5, round(_lognormal(rng, profile.out_median * req.out_x, profile.out_sigma)))
            roll = rng.random()
            if tools:
                out_tokens = max(12, out_tokens // 6)
                finish = ["tool_calls"]
                ok = rng.random() >= fail_p
                tool_calls.append({"name": tools[0], "arguments": {"query": messages[1]["content"][:80]},
                                   "result": {"hits": rng.randint(1, 8)} if ok else {"error": "tool timed out"},
                                   "status": "ok" if ok else "error"})
                output.append({"role": "assistant", "content": ""})
            elif roll < rates.refusal:
                finish = ["stop"]
                text = rng.choice(REFUSALS)
                out_tokens = _tokens(text)
                output.append({"role": "assistant", "content": text})
            elif roll < rates.refusal + rates.content_filter:
                finish, out_tokens = ["content_filter"], 0
            else:
                if roll < rates.refusal + rates.content_filter + rates.length_stop:
                    out_tokens, finish = profile.max_tokens, ["length"]
                else:
                    finish = ["stop"]
                text = self._answer(req, domain, min(out_tokens, 400), pii, secret)
                output.append({"role": "assistant", "content": text})
            per_token = _lognormal(rng, profile.ms_per_token, profile.speed_sigma) * req.latency_x
            latency = ttft + out_tokens * per_token
            ttft_value = round(ttft, 1)
        meta = {"session_id": f"sess_{rng.getrandbits(48):012x}", "client": rng.choice(("web", "ios", "android")),
                "guardrail_policy_id": route.guardrail_id}
        if route.index_id:
            meta["retrieval_index_id"] = route.index_id
        if route.toolset_id:
            meta["toolset_id"] = route.toolset_id
        return {
            "schema_version": 1, "trace_id": trace_id, "span_id": span or f"{rng.getrandbits(64):016x}",
            "parent_span_id": parent, "timestamp": _iso(at), "tenant": route.tenant,
            "application": route.application, "route": route.name,
            "principal": req.principal or f"usr_{rng.getrandbits(40):010x}", "roles": ["customer"],
            "provider": profile.provider, "operation": "chat", "request_model": req.model,
            "response_model": profile.response_model, "deployment": profile.deployment, "region": profile.region,
            "model_version": None,
            "system_fingerprint": req.fingerprint or profile.fingerprint if profile.provider == "openai" else None,
            "prompt_template_id": route.template_id,
            "prompt_template_version": req.prompt_version or route.prompt_version,
            "guardrail_policy_version": route.guardrail_version, "retrieval_index_version": route.index_version,
            "toolset_version": route.toolset_version, "input_messages": messages, "output_messages": output,
            "tool_calls": tool_calls, "input_tokens": input_tokens, "output_tokens": out_tokens,
            "cached_input_tokens": 0, "finish_reasons": finish, "ttft_ms": ttft_value,
            "latency_ms": round(latency, 1), "status": "error" if failed else "ok", "error_type": error_type,
            "error_message": error_message, "cost_usd": None, "attempt": attempt,
            "data_classification": route.classification, "metadata": meta,
        }

