"""Synthetic per-(route, model) traffic for tests, benchmarks and notebooks.

Not a detector: a small generative model of what one route's traces look like, with the
nuisances real traffic has (heavy-tailed lengths, a max-tokens cap, topic mix that comes
in sessions so neighbouring traces are correlated, a daily latency cycle, Poisson
arrivals), and a ``TrafficProfile`` whose fields a scenario changes at a given trace.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from detectors.ownership.samples import BehaviourSample

DIM = 384


@dataclass(frozen=True, slots=True)
class TrafficProfile:
    """Behaviour of one (route, model). Lengths in tokens, latencies in ms, rates 0..1."""

    route: str = "support-chat"
    model: str = "gpt-4o"
    tenant: str = "acme"
    application: str = "helpdesk"
    rate_per_s: float = 2.0
    tokens_log_mean: float = 5.2  # ~180 tokens
    tokens_log_sd: float = 0.6
    topic_token_offsets: tuple[float, ...] = (-0.4, -0.1, 0.0, 0.2, 0.5)
    session_stay: float = 0.5  # chance the next trace keeps the previous topic
    max_tokens: int = 1024
    latency_base_ms: float = 400.0
    latency_per_token_ms: float = 12.0
    latency_log_sd: float = 0.25
    daily_latency_swing: float = 0.15  # +/- share of latency over a day
    ttft_ms: float = 350.0
    error_rate: float = 0.01
    refusal_rate: float = 0.02
    tool_rate: float = 0.3
    tools: tuple[str, ...] = ("search_kb", "get_order", "create_ticket")
    tool_weights: tuple[float, ...] = (0.6, 0.3, 0.1)
    system_fingerprint: str = "fp_a1b2c3"
    model_version: str = "2024-08-06"
    deployment: str = "gpt4o-eastus-1"
    prompt_template_id: str = "support-system"
    prompt_version: str = "v12"
    guardrail_policy_version: str = "gp-3"
    retrieval_index_version: str = "kb-2024-06-01"
    toolset_version: str = "ts-5"
    embed_rate: float = 0.1
    style_seed: int = 1  # the model's "voice": a fixed direction in embedding space
    style_weight: float = 0.35
    embed_noise: float = 1.2


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM)
    return v / np.linalg.norm(v)


def simulate(profile: TrafficProfile, n: int, seed: int = 0, start: float = 1_717_200_000.0,
             change_index: int | None = None, after: TrafficProfile | None = None
             ) -> Iterator[BehaviourSample]:
    """Yield ``n`` samples; from trace ``change_index`` on, behave as ``after``.

    >>> base = TrafficProfile()
    >>> samples = list(simulate(base, 500, change_index=250,
    ...                         after=replace(base, system_fingerprint="fp_new")))
    >>> samples[249].system_fingerprint, samples[250].system_fingerprint
    ('fp_a1b2c3', 'fp_new')
    """
    rng = np.random.default_rng(seed)
    topic_rng = np.random.default_rng(12345)  # topics are the route's, not the model's
    topics = [_unit(topic_rng) for _ in profile.topic_token_offsets]
    styles: dict[int, np.ndarray] = {}
    t, topic = start, 0
    for i in range(n):
        p = after if (after is not None and change_index is not None and i >= change_index) else profile
        t += float(rng.exponential(1.0 / p.rate_per_s))
        if rng.random() > p.session_stay:
            topic = int(rng.integers(len(p.topic_token_offsets)))
        ok = rng.random() >= p.error_rate
        refused = ok and rng.random() < p.refusal_rate
        tokens = 0
        if ok:
            mu = p.tokens_log_mean + p.topic_token_offsets[topic % len(p.topic_token_offsets)]
            tokens = 25 if refused else int(min(math.exp(rng.normal(mu, p.tokens_log_sd)), p.max_tokens))
        tools: tuple[str, ...] = ()
        if ok and not refused and rng.random() < p.tool_rate:
            k = 1 + int(rng.random() < 0.3)
            tools = tuple(rng.choice(p.tools, size=k, p=np.asarray(p.tool_weights) / sum(p.tool_weights)))
        finish = ("content_filter",) if refused else ("length",) if tokens >= p.max_tokens else (
            ("tool_calls",) if tools else ("stop",))
        swing = 1.0 + p.daily_latency_swing * math.sin(2 * math.pi * (t % 86400.0) / 86400.0)
        latency = (p.latency_base_ms + p.latency_per_token_ms * tokens) * swing
        latency *= math.exp(rng.normal(0.0, p.latency_log_sd))
        embedding = None
        if ok and rng.random() < p.embed_rate:
            if p.style_seed not in styles:
                styles[p.style_seed] = _unit(np.random.default_rng(p.style_seed))
            vec = topics[topic % len(topics)] + p.style_weight * styles[p.style_seed]
            embedding = (vec + p.embed_noise * rng.normal(size=DIM) / math.sqrt(DIM)).astype(np.float32)
        yield BehaviourSample(
            at=t, route=p.route, request_model=p.model, tenant=p.tenant, application=p.application,
            response_model=p.model, deployment=p.deployment, model_version=p.model_version,
            system_fingerprint=p.system_fingerprint, prompt_template_id=p.prompt_template_id,
            prompt_template_version=p.prompt_version,
            guardrail_policy_version=p.guardrail_policy_version,
            retrieval_index_version=p.retrieval_index_version, toolset_version=p.toolset_version,
            output_tokens=tokens, latency_ms=latency if ok else latency * 0.2,
            ttft_ms=p.ttft_ms * swing * math.exp(rng.normal(0.0, 0.3)) if ok else None,
            ok=ok, refused=refused, finish_reasons=finish if ok else (), tool_names=tools,
            embedding=embedding,
        )


__all__ = ["TrafficProfile", "simulate", "replace"]
