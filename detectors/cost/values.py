"""Plain values the cost detectors consume: one model call, one priced usage, one unit of work.

Nothing here knows about trace records or Kafka; the worker copies fields from its
records into these frozen dataclasses (one :class:`CostSample` per inference span).

Token conventions: ``input_tokens`` *includes* ``cached_input_tokens`` unless the price
entry says otherwise (OpenAI and the OpenTelemetry GenAI conventions count cache reads
inside the input; Anthropic reports them apart). Money is US dollars, time is seconds
since the epoch (UTC, event time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# A lower bound for logarithms of money: a request that cost nothing (a cache hit, an
# error before any token) must not send log cost to minus infinity.
COST_FLOOR_USD = 1e-7


@dataclass(frozen=True, slots=True)
class CostSample:
    """What the worker knows about one inference call (one span), as plain values.

    Parameters
    ----------
    at
        Event time of the call, epoch seconds.
    tenant, application, route
        Scope labels.
    provider, request_model
        Who served it and what was asked for.
    response_model, deployment
        What answered (a dated snapshot, a deployment name), when known.
    input_tokens, output_tokens, cached_input_tokens
        Token counts; see the module note on cached tokens.
    reported_cost_usd
        Cost the caller reported, if any (checked against the catalog).
    ok
        ``True`` when the call succeeded.
    attempt
        1 for a first try, >1 for a retry of the same step.
    trace_id, span_id, parent_span_id
        Agent run id (one trace tree), this step, its parent (``None`` for the root).
    tool_calls
        Tool calls the model asked for in this step; 0 on an ``ok`` step means the
        model answered, which ends an agent loop.

    >>> s = CostSample(at=0.0, tenant="t", application="a", route="r", provider="openai",
    ...                request_model="gpt-4o", input_tokens=1000, output_tokens=200)
    >>> s.model
    'gpt-4o'
    """

    at: float
    tenant: str
    application: str
    route: str
    provider: str
    request_model: str
    response_model: str | None = None
    deployment: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reported_cost_usd: float | None = None
    ok: bool = True
    attempt: int = 1
    trace_id: str = ""
    span_id: str = ""
    parent_span_id: str | None = None
    tool_calls: int = 0

    @property
    def model(self) -> str:
        """The model the call is judged by: what answered, else what was asked."""
        return self.response_model or self.request_model

    @property
    def identity(self) -> str:
        """Provider, model and deployment in one label: a change of it is a model switch."""
        base = f"{self.provider}/{self.model}"
        return f"{base}@{self.deployment}" if self.deployment else base


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """Prices in US dollars per million tokens.

    >>> TokenPrice(2.5, 10.0, 1.25).cost(uncached_input=1_000_000, cached_input=0, output=100_000)
    3.5
    """

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float

    def cost(self, uncached_input: float, cached_input: float, output: float) -> float:
        """Dollars for these token counts."""
        return (
            uncached_input * self.input_per_mtok
            + cached_input * self.cached_input_per_mtok
            + output * self.output_per_mtok
        ) / 1e6

    def as_list(self) -> list[float]:
        return [self.input_per_mtok, self.output_per_mtok, self.cached_input_per_mtok]


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """Tokens one model identity consumed inside a unit of work, with the price applied.

    ``price`` is ``None`` when the model is not in the catalog.
    """

    identity: str
    uncached_input_tokens: float
    cached_input_tokens: float
    output_tokens: float
    price: TokenPrice | None

    def cost_at(self, price: TokenPrice) -> float:
        """What these tokens would cost at ``price`` (a counterfactual for attribution)."""
        return price.cost(self.uncached_input_tokens, self.cached_input_tokens, self.output_tokens)

    def input_cost_at(self, price: TokenPrice) -> float:
        return price.cost(self.uncached_input_tokens, self.cached_input_tokens, 0.0)

    def output_cost_at(self, price: TokenPrice) -> float:
        return price.cost(0.0, 0.0, self.output_tokens)


@dataclass(frozen=True, slots=True)
class CostUnit:
    """One observation for a cost regression detector: a request, or a successful action.

    Parameters
    ----------
    at
        Event time, epoch seconds (for an action: when its run ended).
    cost_usd
        The monitored cost: of the request, or of the action *including* the runs that
        failed before it succeeded (cost per successful action).
    own_cost_usd
        Cost of this request or run alone (``cost_usd`` minus failed work carried in).
    usage
        Tokens per model identity, with prices.
    steps
        Agent steps (first attempts) in the run; 1 for a request.
    attempts
        All attempts including retries; 1 for a request.
    model
        Label for the finding's subject (the run's main model).
    """

    at: float
    cost_usd: float
    usage: tuple[ModelUsage, ...]
    own_cost_usd: float | None = None
    steps: int = 1
    attempts: int = 1
    model: str = ""

    @classmethod
    def request(cls, sample: CostSample, cost_usd: float, usage: ModelUsage) -> CostUnit:
        """The unit for cost per request: one call, counted whatever its status."""
        return cls(at=sample.at, cost_usd=cost_usd, usage=(usage,), model=sample.model)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """An entry of the change ledger, as values: what changed, which version, when.

    ``scope`` narrows where it applies (e.g. ``{"route": "chat"}``); empty = everywhere.
    """

    kind: str
    id: str
    version: str
    at: float
    scope: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "id": self.id, "version": self.version, "at": self.at,
                "scope": dict(self.scope)}


def events_near(
    events: Iterable[ChangeEvent],
    t: float,
    window_s: float,
    subject: Mapping[str, str] | None = None,
) -> list[ChangeEvent]:
    """Change events within ``window_s`` seconds of ``t`` that apply to ``subject``, nearest first.

    An event applies when every key of its scope that the subject also has matches.

    >>> evs = [ChangeEvent("prompt_template", "support", "v7", at=1000.0, scope={"route": "chat"}),
    ...        ChangeEvent("price", "openai/gpt-4o", "2025-01", at=5000.0),
    ...        ChangeEvent("prompt_template", "billing", "v2", at=1100.0, scope={"route": "bill"})]
    >>> [e.version for e in events_near(evs, 1200.0, 600.0, {"route": "chat"})]
    ['v7']
    """
    if window_s < 0:
        raise ValueError(f"events_near: window_s must be >= 0, got {window_s}")
    near = []
    for ev in events:
        if abs(ev.at - t) > window_s:
            continue
        if subject is not None and any(
            k in subject and subject[k] != v for k, v in ev.scope.items()
        ):
            continue
        near.append(ev)
    near.sort(key=lambda e: (abs(e.at - t), e.kind, e.id))
    return near


def safe_log(x: float) -> float:
    """``log(x)`` with money floored at :data:`COST_FLOOR_USD`."""
    return math.log(x if x > COST_FLOOR_USD else COST_FLOOR_USD)
