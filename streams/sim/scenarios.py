"""Incidents as named, parameterised scenarios.

Each scenario changes the requests of one route (or one model of it) from ``start`` to
``end`` (epoch seconds, event time) and says what should find it: ``expected_kinds`` (any
one of them counts), within ``max_delay_s`` of the start, and the breaker's expected action
(``"open"``: a breaker signal for the route; ``None``: alerts only). ``forbidden_kinds`` is
for the negative control (a registered change must stay quiet).

``SCENARIOS`` maps each name to its class; ``standard_incidents`` places one of each over a
day at fractions of its length (incidents start after the first ~30% so the detectors have
a baseline).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from streams.sim.catalog import MODELS, ModelProfile, RouteSpec
from streams.sim.traffic import Request

UNOWNED = ["change.unowned_behaviour", "change.unregistered_version"]


@dataclass
class Scenario:
    """An incident: ``route`` (and ``model``: one arm only) from ``start`` to ``end``."""

    route: str
    start: float
    end: float
    model: str | None = None
    family: ClassVar[str] = ""
    expected_kinds: ClassVar[list[str]] = []
    forbidden_kinds: ClassVar[list[str]] = []
    max_delay_s: ClassVar[float] = 3600.0
    breaker: ClassVar[str | None] = None
    note: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return f"{self.family}@{self.route}"

    def covers(self, req: Request) -> bool:
        return (req.route.name == self.route and self.start <= req.at < self.end
                and (self.model is None or req.model == self.model))

    def progress(self, at: float) -> float:
        """0 at the start, 1 at the end (ramps)."""
        return min(1.0, max(0.0, (at - self.start) / max(1.0, self.end - self.start)))

    def apply(self, req: Request) -> None:
        """Change a request the scenario covers."""

    def extra_requests(self, route: RouteSpec, seed: int) -> list[Request]:
        """Requests the incident adds (a backfill job)."""
        return []

    def changes(self) -> list[dict[str, Any]]:
        """ChangeEvent records registered for this scenario (the negative control's)."""
        return []

    def magnitude(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("route", "start", "end", "model")}

    def truth(self, index: int) -> dict[str, Any]:
        return {
            "id": f"inc-{index:02d}-{self.family}", "family": self.family, "scenario": self.family,
            "route": self.route, "model": self.model, "start_epoch": self.start, "end_epoch": self.end,
            "start": _iso(self.start), "end": _iso(self.end), "expected_kinds": list(self.expected_kinds),
            "forbidden_kinds": list(self.forbidden_kinds), "max_delay_s": self.max_delay_s,
            "breaker": self.breaker, "magnitude": self.magnitude(), "note": self.note,
        }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class ErrorBurst(Scenario):
    error_rate: float = 0.45
    family: ClassVar[str] = "error_burst"
    expected_kinds: ClassVar[list[str]] = ["error_rate.high"]
    max_delay_s: ClassVar[float] = 300.0
    breaker: ClassVar[str | None] = "open"
    note: ClassVar[str] = "one A/B arm fails a large share of its calls (5xx, rate limits)"

    def apply(self, req: Request) -> None:
        req.error_p = self.error_rate


@dataclass
class SilentModelSwap(Scenario):
    to_model: str = "gpt-4o"
    family: ClassVar[str] = "silent_model_swap"
    expected_kinds: ClassVar[list[str]] = ["cost.regression", *UNOWNED]
    max_delay_s: ClassVar[float] = 3600.0
    note: ClassVar[str] = "requests answered by a pricier model on a fallback deployment, no change event"

    def apply(self, req: Request) -> None:
        base = MODELS[self.to_model]
        req.response = ModelProfile(**{**base.__dict__, "deployment": base.deployment.replace("-01", "-fallback")})


@dataclass
class PromptBloat(Scenario):
    passages: int = 9
    family: ClassVar[str] = "prompt_bloat"
    expected_kinds: ClassVar[list[str]] = ["cost.regression"]
    max_delay_s: ClassVar[float] = 7200.0
    note: ClassVar[str] = "a RAG route retrieves three times as many passages: input tokens about double"

    def apply(self, req: Request) -> None:
        req.passages = self.passages


@dataclass
class AgentLoop(Scenario):
    tool_failure: float = 0.5
    family: ClassVar[str] = "agent_loop"
    expected_kinds: ClassVar[list[str]] = ["cost.regression"]
    max_delay_s: ClassVar[float] = 7200.0
    note: ClassVar[str] = "tool calls fail and are retried: steps per run about double"

    def apply(self, req: Request) -> None:
        req.tool_failure_p = self.tool_failure


@dataclass
class SilentModelUpdate(Scenario):
    fingerprint: str = "fp_a875c7135c"
    output_x: float = 1.6
    latency_x: float = 1.3
    family: ClassVar[str] = "silent_model_update"
    expected_kinds: ClassVar[list[str]] = list(UNOWNED)
    note: ClassVar[str] = "new system fingerprint, longer and slower answers, no change event"

    def apply(self, req: Request) -> None:
        req.fingerprint, req.out_x, req.latency_x = self.fingerprint, self.output_x, self.latency_x


@dataclass
class UnregisteredPromptVersion(Scenario):
    version: str = "8"
    output_x: float = 0.55
    family: ClassVar[str] = "unregistered_prompt_version"
    expected_kinds: ClassVar[list[str]] = list(UNOWNED)
    note: ClassVar[str] = "the prompt version changes with no change event; answers get shorter"

    def apply(self, req: Request) -> None:
        req.prompt_version, req.out_x = self.version, self.output_x


@dataclass
class RegisteredPromptChange(UnregisteredPromptVersion):
    owner: str = "workspace-ai"
    family: ClassVar[str] = "registered_prompt_change"
    expected_kinds: ClassVar[list[str]] = []
    forbidden_kinds: ClassVar[list[str]] = list(UNOWNED)
    note: ClassVar[str] = "negative control: a prompt version bump with its change event, shorter answers"

    def changes(self) -> list[dict[str, Any]]:
        return [{"schema_version": 1, "component_kind": "prompt", "component_id": f"{self.route}-system",
                 "old_version": "7", "new_version": self.version, "owner": self.owner,
                 "at": _iso(self.start - 60), "scope_routes": [self.route],
                 "link": f"https://git.example/prompts/{self.route}/-/merge_requests/848", "source": "ci"}]


@dataclass
class CompletionPiiLeak(Scenario):
    share: float = 0.2
    family: ClassVar[str] = "pii_leak"
    expected_kinds: ClassVar[list[str]] = ["redaction.pii_in_completion"]
    max_delay_s: ClassVar[float] = 600.0
    breaker: ClassVar[str | None] = "open"
    note: ClassVar[str] = "answers name other people's email, SSN or card, absent from the input"

    def apply(self, req: Request) -> None:
        req.leak_pii = req.rng.random() < self.share


@dataclass
class CompletionSecretLeak(Scenario):
    share: float = 0.35
    family: ClassVar[str] = "secret_leak"
    expected_kinds: ClassVar[list[str]] = ["redaction.secret_in_completion"]
    max_delay_s: ClassVar[float] = 600.0
    breaker: ClassVar[str | None] = "open"
    note: ClassVar[str] = "answers repeat a service credential from the retrieved runbook"

    def apply(self, req: Request) -> None:
        req.leak_secret = req.rng.random() < self.share


@dataclass
class BudgetBurn(Scenario):
    multiplier: float = 12.0
    input_x: float = 3.0
    family: ClassVar[str] = "budget_burn"
    expected_kinds: ClassVar[list[str]] = ["cost.budget_burn", "cost.budget_exhausted"]
    max_delay_s: ClassVar[float] = 3600.0
    note: ClassVar[str] = "a backfill job multiplies the tenant's spend for an hour"

    def extra_requests(self, route: RouteSpec, seed: int) -> list[Request]:
        rng = random.Random(f"{seed}/{self.name}")
        rate = route.rate * self.multiplier
        out: list[Request] = []
        at = self.start
        while True:
            at += rng.expovariate(rate)
            if at >= self.end:
                return out
            out.append(Request(route, at, route.models[0][0], random.Random(rng.getrandbits(64)),
                               principal="svc-backfill", input_x=self.input_x, tags=["backfill"]))


@dataclass
class LatencyRegression(Scenario):
    latency_x: float = 2.5
    family: ClassVar[str] = "latency_regression"
    expected_kinds: ClassVar[list[str]] = ["drift.scalar", "change.unowned_behaviour"]
    note: ClassVar[str] = "provider latency x2.5, everything else equal"

    def apply(self, req: Request) -> None:
        req.latency_x = self.latency_x


@dataclass
class TopicShift(Scenario):
    to_domain: str = "software"
    share: float = 0.5
    ramp_s: float = 0.0
    family: ClassVar[str] = "topic_shift"
    expected_kinds: ClassVar[list[str]] = ["drift.embedding"]
    max_delay_s: ClassVar[float] = 7200.0
    note: ClassVar[str] = "a share of the route's prompts move to another domain (ramped in over ramp_s)"

    def apply(self, req: Request) -> None:
        ramp = min(1.0, (req.at - self.start) / self.ramp_s) if self.ramp_s else 1.0
        if req.rng.random() < self.share * ramp:
            req.domain = self.to_domain


SCENARIOS: dict[str, type[Scenario]] = {cls.family: cls for cls in (
    ErrorBurst, SilentModelSwap, PromptBloat, AgentLoop, SilentModelUpdate, UnregisteredPromptVersion,
    RegisteredPromptChange, CompletionPiiLeak, CompletionSecretLeak, BudgetBurn, LatencyRegression,
    TopicShift)}


@dataclass
class Placement:
    """Where a standard incident goes: scenario, route, start as a fraction of the day,
    duration in seconds of event time (None: to the end), parameters."""

    family: str
    route: str
    at: float
    duration_s: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


STANDARD: tuple[Placement, ...] = (
    Placement("error_burst", "assistant-ab", 0.44, 900, {"model": "claude-3-5-haiku"}),
    Placement("silent_model_swap", "shop-orders", 0.40),
    Placement("prompt_bloat", "helpdesk-answers", 0.36),
    Placement("agent_loop", "trip-agent", 0.35),
    Placement("silent_model_update", "kitchen-chat", 0.45),
    Placement("unregistered_prompt_version", "claims-assistant", 0.50),
    Placement("registered_prompt_change", "workspace-copilot", 0.48),
    # Leaks on one arm of an A/B route: the default policy opens one of two models, and
    # holds (capacity cap, alert only) a trip that would black out a single-model route.
    Placement("pii_leak", "network-support", 0.55, 1200, {"model": "gpt-4o-mini"}),
    Placement("secret_leak", "ops-agent", 0.60, 900, {"model": "gpt-4o"}),
    Placement("budget_burn", "contract-review", 0.62, 3600),
    Placement("latency_regression", "dev-copilot", 0.42),
    Placement("topic_shift", "bank-assist", 0.40, None, {"share": 0.5}),
    Placement("topic_shift", "care-navigator", 0.38, None, {"share": 1.0, "ramp_s": 3600.0,
                                                             "to_domain": "cooking"}),
)


def standard_incidents(start: float, hours: float) -> list[Scenario]:
    """One of every scenario over a day of ``hours`` beginning at ``start`` (epoch s)."""
    end_of_day = start + hours * 3600
    out = []
    for p in STANDARD:
        begin = start + p.at * hours * 3600
        end = min(end_of_day, begin + p.duration_s) if p.duration_s else end_of_day
        out.append(SCENARIOS[p.family](route=p.route, start=begin, end=end, **p.params))
    return out


def parse_incident(spec: str, start: float, hours: float) -> Scenario:
    """``FAMILY@ROUTE[:AT[:DURATION_S]][,key=value...]`` (``AT`` a fraction of the day), e.g.
    ``error_burst@assistant-ab:0.3:900,model=claude-3-5-haiku``."""
    head, *pairs = spec.split(",")
    family, _, where = head.partition("@")
    if family not in SCENARIOS:
        raise ValueError(f"unknown scenario {family!r}; scenarios: {', '.join(SCENARIOS)}")
    route, _, timing = where.partition(":")
    at_s, _, duration_s = timing.partition(":")
    begin = start + float(at_s or 0.4) * hours * 3600
    end = min(start + hours * 3600, begin + float(duration_s)) if duration_s else start + hours * 3600
    params: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        params[key] = _number(value)
    return SCENARIOS[family](route=route or "assistant-ab", start=begin, end=end, **params)


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
