"""Synthetic LLM traffic with known cost change points, for tests, benchmarks and demos.

One route served by one model: plain requests and agent runs (a ReAct loop whose context
grows by the tool results of each step), heavy-tailed prompts (a share of pasted
documents with Pareto sizes), retries after errors and abandoned runs. Runs overlap in
time, so their spans interleave as they would on the wire. Deterministic for a seed.

Scenarios (the change starts at ``change_at``; runs that start after it follow it):

* ``stable``: nothing changes.
* ``prompt_growth``: every input grows so that mean cost per request rises by 20%.
* ``model_switch``: the route is switched to a model five times the price.
* ``price_change``: the provider raises the model's prices by 25% (a new catalog entry).
* ``agent_loop``: agent runs take twice as many steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detectors.cost.prices import PriceCatalog
from detectors.cost.values import ChangeEvent, CostSample

SCENARIOS = ("stable", "prompt_growth", "model_switch", "price_change", "agent_loop")
EXPECTED_DRIVER = {"prompt_growth": "input_tokens", "model_switch": "model_switch",
                   "price_change": "price_change", "agent_loop": "agent_steps"}
START = 1_750_000_000.0  # 2025-06-15, after every catalog entry below starts

_PRICES = {"gpt-4.1-mini": (0.40, 1.60, 0.10), "gpt-4.1": (2.00, 8.00, 0.50)}


@dataclass(frozen=True)
class TrafficProfile:
    """Shape of the traffic on the route (token counts, rates, run structure)."""

    spans_per_s: float = 1.0
    agent_share: float = 0.35
    agent_extra_steps_mean: float = 3.0
    input_median: float = 1500.0
    input_sigma: float = 0.6
    heavy_share: float = 0.01
    context_growth: float = 600.0
    output_median: float = 220.0
    output_sigma: float = 0.8
    cached_share: float = 0.5
    retry_prob: float = 0.03
    fail_prob: float = 0.01
    step_latency_median_s: float = 2.5
    provider: str = "openai"
    model: str = "gpt-4.1-mini"
    switch_to: str = "gpt-4.1"
    route: str = "support-chat"
    tenants: tuple[str, ...] = ("acme", "globex", "initech")


@dataclass
class SyntheticStream:
    scenario: str
    samples: list[CostSample]
    change_at: float
    catalog: PriceCatalog
    events: list[ChangeEvent] = field(default_factory=list)
    expected_driver: str | None = None
    input_multiplier: float = 1.0


def price_catalog(change_at: float | None = None, rise: float = 1.25) -> PriceCatalog:
    """The catalog of the synthetic route; with ``change_at``, the small model's prices
    rise by ``rise`` from then on."""
    entries = [{"provider": "openai", "model": m, "input_per_mtok": p[0], "output_per_mtok": p[1],
                "cached_input_per_mtok": p[2], "effective_from": "2025-04-14"}
               for m, p in _PRICES.items()]
    if change_at is not None:
        p = _PRICES["gpt-4.1-mini"]
        entries.append({"provider": "openai", "model": "gpt-4.1-mini",
                        "input_per_mtok": p[0] * rise, "output_per_mtok": p[1] * rise,
                        "cached_input_per_mtok": p[2] * rise,
                        "effective_from": float(change_at)})
    return PriceCatalog.model_validate({"version": "synthetic-1", "entries": entries})


def _input_share(p: TrafficProfile) -> float:
    """Share of the mean cost that input tokens make (to size a 20% prompt growth)."""
    rng = np.random.default_rng(12345)
    pin, pout, pcache = _PRICES[p.model]
    tin = tout = 0.0
    for _ in range(4000):
        steps = _steps(rng, p, 1.0)
        base = _prompt(rng, p)
        for i in range(steps):
            inp = base + i * p.context_growth
            cached = p.cached_share * (base + (i - 1) * p.context_growth) if i else 0.0
            tin += (inp - cached) * pin + cached * pcache
            tout += p.output_median * np.exp(p.output_sigma ** 2 / 2) * pout
    return tin / (tin + tout)


def _steps(rng: np.random.Generator, p: TrafficProfile, mult: float) -> int:
    if rng.random() >= p.agent_share:
        return 1
    extra = rng.geometric(1.0 / (1.0 + p.agent_extra_steps_mean)) - 1
    return int(round((2 + extra) * mult))


def _prompt(rng: np.random.Generator, p: TrafficProfile) -> float:
    base = p.input_median * rng.lognormal(0.0, p.input_sigma)
    if rng.random() < p.heavy_share:  # a pasted document
        base *= 1.0 + 10.0 * rng.pareto(1.5)
    return float(min(base, 900_000.0))


def generate(scenario: str, n_before: int, n_after: int, seed: int = 0,
             profile: TrafficProfile | None = None, start: float = START) -> SyntheticStream:
    """``n_before`` spans before the change and ``n_after`` after it, time-ordered."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario {scenario!r} unknown; choose one of {SCENARIOS}")
    p = profile or TrafficProfile()
    rng = np.random.default_rng(seed)
    spans_per_run = (1 - p.agent_share) + p.agent_share * (2 + p.agent_extra_steps_mean)
    run_rate = p.spans_per_s / (spans_per_run * (1 + p.retry_prob))
    change_at = start + n_before / p.spans_per_s
    grow = 1.0 + 0.2 / _input_share(p) if scenario == "prompt_growth" else 1.0
    samples: list[CostSample] = []
    t, run, after = start, 0, 0
    # Generate until enough spans follow the change (runs last a minute at most).
    while after < n_after or t < change_at + 120:
        t += rng.exponential(1.0 / run_rate)
        changed = t >= change_at and scenario != "stable"
        spans = _run(rng, p, scenario if changed else "stable", run, t, grow)
        after += sum(s.at >= change_at for s in spans)
        samples.extend(spans)
        run += 1
    samples.sort(key=lambda s: (s.at, s.span_id))
    before = [s for s in samples if s.at < change_at][-n_before:]
    post = [s for s in samples if s.at >= change_at][:n_after]
    return SyntheticStream(scenario, before + post, change_at,
                           price_catalog(change_at if scenario == "price_change" else None),
                           _events(scenario, change_at, p), EXPECTED_DRIVER.get(scenario), grow)


def _run(rng: np.random.Generator, p: TrafficProfile, regime: str, run: int, t0: float,
         grow: float) -> list[CostSample]:
    steps = _steps(rng, p, 2.0 if regime == "agent_loop" else 1.0)
    model = p.switch_to if regime == "model_switch" else p.model
    g = grow if regime == "prompt_growth" else 1.0
    tenant = p.tenants[int(rng.integers(len(p.tenants)))]
    base = _prompt(rng, p)
    fails = rng.random() < p.fail_prob
    out, t, root = [], t0, f"r{run}-0-1"
    for i in range(steps):
        last = i == steps - 1
        ctx = base + i * p.context_growth * rng.lognormal(0.0, 0.3)
        inp = int(ctx * g)
        cached = int(p.cached_share * (base + (i - 1) * p.context_growth) * g) if i else 0
        n_attempts = 2 if (rng.random() < p.retry_prob or (fails and last)) else 1
        for attempt in range(1, n_attempts + 1):
            error = attempt < n_attempts or (fails and last)
            t += p.step_latency_median_s * rng.lognormal(0.0, 0.5)
            tokens_out = 0 if error else int(p.output_median * rng.lognormal(0.0, p.output_sigma))
            out.append(CostSample(
                at=t, tenant=tenant, application="assistant", route=p.route,
                provider=p.provider, request_model=model, response_model=model,
                input_tokens=inp, output_tokens=tokens_out, cached_input_tokens=min(cached, inp),
                ok=not error, attempt=attempt, trace_id=f"r{run}", span_id=f"r{run}-{i}-{attempt}",
                parent_span_id=None if i == 0 else root,
                tool_calls=0 if (last or error) else int(1 + rng.integers(2))))
    return out


def _events(scenario: str, at: float, p: TrafficProfile) -> list[ChangeEvent]:
    """The ledger: the change's own event plus unrelated ones (elsewhere, or long before)."""
    noise = [ChangeEvent("prompt_template", "billing-faq", "v3", at - 600, {"route": "billing"}),
             ChangeEvent("guardrail_policy", "default", "v12", at - 5 * 86400)]
    own = {
        "prompt_growth": ChangeEvent("prompt_template", "support", "v8", at, {"route": p.route}),
        "model_switch": ChangeEvent("route_config", p.route, "v2", at, {"route": p.route}),
        "price_change": ChangeEvent("price", f"{p.provider}/{p.model}", "synthetic-1", at),
        "agent_loop": ChangeEvent("toolset", "support-tools", "v3", at, {"route": p.route}),
    }
    return noise + ([own[scenario]] if scenario in own else [])
