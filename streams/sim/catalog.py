"""Who sends traffic in the simulated day: models (token and latency distributions) and
routes (domain, kind, tenant, models and their A/B shares, volume, components)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelProfile:
    """A served model. Output tokens are lognormal around ``out_median`` (sigma
    ``out_sigma``); latency is time to first token (lognormal, ms) plus ``ms_per_token``
    per output token (lognormal noise ``speed_sigma``)."""

    name: str
    provider: str
    response_model: str
    deployment: str
    region: str
    fingerprint: str | None
    ttft_ms: float
    ttft_sigma: float
    ms_per_token: float
    speed_sigma: float
    out_median: float
    out_sigma: float
    max_tokens: int = 1024


MODELS: dict[str, ModelProfile] = {m.name: m for m in (
    ModelProfile("gpt-4o-mini", "openai", "gpt-4o-mini-2024-07-18", "oai-gpt-4o-mini-eastus2-01", "eastus2",
                 "fp_0aa8d3e20b", 340.0, 0.35, 11.0, 0.15, 150.0, 0.5),
    ModelProfile("gpt-4o", "openai", "gpt-4o-2024-08-06", "oai-gpt-4o-eastus2-01", "eastus2",
                 "fp_6b68a8204b", 460.0, 0.35, 17.0, 0.15, 170.0, 0.5),
    ModelProfile("gpt-4.1-nano", "openai", "gpt-4.1-nano-2025-04-14", "oai-gpt-41-nano-swedencentral-01",
                 "swedencentral", "fp_38343a2f8f", 240.0, 0.3, 7.0, 0.15, 120.0, 0.5),
    ModelProfile("claude-3-5-haiku", "anthropic", "claude-3-5-haiku-20241022", "anthropic-c35-haiku-us-east-1",
                 "us-east-1", None, 520.0, 0.35, 13.0, 0.15, 160.0, 0.5),
    ModelProfile("claude-sonnet-4", "anthropic", "claude-sonnet-4-20250514", "anthropic-sonnet-4-us-east-1",
                 "us-east-1", None, 880.0, 0.35, 21.0, 0.15, 260.0, 0.5, 2048),
    ModelProfile("gemini-2.5-flash", "google", "gemini-2.5-flash", "gcp-gemini-25-flash-europe-west4",
                 "europe-west4", None, 390.0, 0.35, 9.0, 0.15, 140.0, 0.5),
)}


@dataclass(frozen=True)
class RouteSpec:
    """One route: ``kind`` is ``chat`` (one call), ``rag`` (one call with ``passages``
    retrieved passages) or ``agent`` (runs of 2-6 steps with tool calls under one trace id).
    ``models`` are (model, share) pairs: an A/B split when there are two. ``rate`` is the
    mean request rate (requests/s) of the realistic day."""

    name: str
    domain: str
    kind: str
    tenant: str
    application: str
    team: str
    brand: str
    models: tuple[tuple[str, float], ...]
    rate: float
    classification: str = "internal"
    passages: int = 0
    tools: tuple[str, ...] = ()
    peak_hour: float = 14.0
    prompt_version: str = "7"
    guardrail_version: str = "2026.02.1"
    index_version: str | None = None
    toolset_version: str | None = None
    reports_cost: bool = False
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def template_id(self) -> str:
        return f"{self.name}-system"

    @property
    def guardrail_id(self) -> str:
        return f"gr-{self.tenant}-default"

    @property
    def index_id(self) -> str | None:
        return f"kb-{self.name}" if self.kind == "rag" else None

    @property
    def toolset_id(self) -> str | None:
        return f"tools-{self.name}" if self.kind == "agent" else None


def _rag(name: str, domain: str, tenant: str, app: str, team: str, brand: str,
         models: tuple[tuple[str, float], ...], rate: float, **kw: object) -> RouteSpec:
    return RouteSpec(name, domain, "rag", tenant, app, team, brand, models, rate, passages=3,
                     index_version="2026-03-01", **kw)  # type: ignore[arg-type]


def _agent(name: str, domain: str, tenant: str, app: str, team: str, brand: str,
           models: tuple[tuple[str, float], ...], rate: float, tools: tuple[str, ...], **kw: object) -> RouteSpec:
    return RouteSpec(name, domain, "agent", tenant, app, team, brand, models, rate, tools=tools,
                     toolset_version="12", **kw)  # type: ignore[arg-type]


# Volumes differ ~4x between routes; rates are requests/s averaged over the day (a request of
# an agent route is a run of 2-6 calls). Peak hours differ so the daily cycles do not align.
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("shop-orders", "retail", "chat", "northwind", "storefront", "commerce-ai", "Northwind",
              (("gpt-4o-mini", 1.0),), 0.12, peak_hour=19.0),
    _rag("helpdesk-answers", "hr", "contoso", "people-portal", "people-ai", "Contoso",
         (("claude-3-5-haiku", 1.0),), 0.08, peak_hour=10.5),
    _agent("trip-agent", "travel", "initech", "trip-planner", "travel-ai", "Initech Travel",
           (("gpt-4o-mini", 1.0),), 0.05, ("search_flights", "search_hotels", "get_fare_rules", "book"),
           peak_hour=20.0),
    RouteSpec("kitchen-chat", "cooking", "chat", "hooli", "kitchen-app", "consumer-ai", "Hooli Kitchen",
              (("gpt-4o-mini", 1.0),), 0.10, classification="public", peak_hour=18.0),
    RouteSpec("claims-assistant", "insurance", "chat", "umbrella", "claims-web", "claims-ai", "Umbrella",
              (("gpt-4.1-nano", 1.0),), 0.09, classification="confidential", peak_hour=11.0),
    _rag("network-support", "telecom", "globex", "care-app", "care-ai", "Globex",
         (("gpt-4o-mini", 0.6), ("gemini-2.5-flash", 0.4)), 0.10, peak_hour=17.0),
    _rag("contract-review", "legal", "wayne", "legal-desk", "legal-ai", "Wayne",
         (("claude-sonnet-4", 1.0),), 0.03, classification="confidential", peak_hour=15.0),
    RouteSpec("dev-copilot", "software", "chat", "tyrell", "ide-plugin", "devex-ai", "Tyrell",
              (("gpt-4.1-nano", 1.0),), 0.11, peak_hour=14.0),
    RouteSpec("bank-assist", "banking", "chat", "acme", "acme-mobile", "banking-ai", "Acme",
              (("gpt-4o-mini", 1.0),), 0.09, classification="restricted", peak_hour=12.0),
    _rag("care-navigator", "healthcare", "stark", "patient-portal", "health-ai", "Stark",
         (("gemini-2.5-flash", 1.0),), 0.08, classification="restricted", peak_hour=9.5),
    RouteSpec("assistant-ab", "travel", "chat", "umbrella", "assistant-app", "assistant-ai", "Umbrella",
              (("gpt-4o-mini", 0.8), ("claude-3-5-haiku", 0.2)), 0.3, peak_hour=13.0),
    RouteSpec("workspace-copilot", "hr", "chat", "wayne", "workspace", "workspace-ai", "Wayne",
              (("gpt-4o", 1.0),), 0.07, peak_hour=11.5),
    _agent("ops-agent", "software", "tyrell", "ops-console", "platform-ai", "Tyrell",
           (("gpt-4o", 0.6), ("claude-sonnet-4", 0.4)), 0.04, ("run_query", "read_runbook", "get_logs", "open_ticket"),
           peak_hour=16.0),
    RouteSpec("store-faq", "retail", "chat", "northwind", "storefront", "commerce-ai", "Northwind",
              (("gemini-2.5-flash", 1.0),), 0.07, classification="public", peak_hour=20.5),
    RouteSpec("quote-chat", "insurance", "chat", "umbrella", "quotes-web", "claims-ai", "Umbrella",
              (("gpt-4o-mini", 0.5), ("claude-3-5-haiku", 0.5)), 0.06, peak_hour=12.5),
    _agent("billing-agent", "telecom", "globex", "care-app", "care-ai", "Globex",
           (("gpt-4o-mini", 1.0),), 0.04, ("get_invoice", "get_usage", "apply_credit"), peak_hour=18.5),
)


def route(name: str) -> RouteSpec:
    for spec in ROUTES:
        if spec.name == name:
            return spec
    raise KeyError(f"no simulated route {name!r}; routes: {', '.join(r.name for r in ROUTES)}")
