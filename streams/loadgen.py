"""Synthetic traffic with injectable incidents, for the demo, tests and benchmarks.

Incidents are ``NAME[@START[:LENGTH]]`` with START and LENGTH as fractions of the run
(``error_burst@0.3:0.15``) or trace counts (``pii@1000:200``):

* ``error_burst`` – the first route's first model fails 60% of requests;
* ``pii`` / ``secret`` – planted personal data / credentials in prompts, completions,
  tool arguments and metadata (what was planted is returned, for canary checks); most
  ``pii`` answers echo the user's own value, every fourth leaks another customer's;
* ``malformed`` – 1% of records are broken bytes, wrong types or missing fields;
* ``cost`` – the second route's prompts grow by 60% (input tokens);
* ``drift`` – the third route's prompts move to another topic.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from streams.config import WardenSettings

ROUTES = ["support-chat", "checkout-assistant", "code-review", "search-summarize", "hr-helpdesk",
          "travel-agent", "claims-triage", "sales-email"]
MODELS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku")]
TENANTS = ["acme", "globex", "initech"]
TOPICS = {
    "base": ["How do I reset my password for the billing portal?", "Summarise this support ticket for me.",
             "What is the refund policy for annual plans?", "Draft a polite reply to a delayed order.",
             "Explain the difference between the pro and team plans.", "Where can I download my invoice?"],
    "drift": ["Write a SQL query joining orders and customers by region.",
              "Why does my Kubernetes pod keep restarting with OOMKilled?",
              "Refactor this Python function to use async IO.", "How do I configure TLS for Kafka clients?",
              "Explain gradient checkpointing in PyTorch.", "Port this bash script to PowerShell."],
}
FILLER = ("The customer reported the issue after the latest update and attached the logs from the "
          "previous three sessions, which show the same sequence of events each time. ")
PII = ["jane.doe@example.org", "+1 (415) 555-0132", "4111 1111 1111 1111", "078-05-1120",
       "GB82 WEST 1234 5698 7654 32", "mark.twain@riverboat.net", "+44 20 7946 0958"]
SECRETS = ["AKIAIOSFODNN7EXAMPLE", "ghp_" + "x1Y2z3A4b5C6d7E8f9G0h1I2j3K4l5M6n7O8",
           "sk-proj-" + "Q9w8E7r6T5y4U3i2O1p0A9s8D7f6G5h4J3k2L1z0X9c8V7b6",
           "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"]


@dataclass
class Incident:
    name: str
    start: int
    length: int

    def active(self, i: int) -> bool:
        return self.start <= i < self.start + self.length


@dataclass
class LoadPlan:
    count: int
    rate: float
    routes: list[str]
    trace_kb: float
    incidents: list[Incident]
    seed: int = 7
    planted: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, *, count: int, rate: float, routes: int, trace_kb: float, incidents: list[str],
              seed: int = 7) -> LoadPlan:
        parsed = [parse_incident(spec, count) for spec in incidents]
        return cls(count, rate, ROUTES[:max(1, min(routes, len(ROUTES)))], trace_kb, parsed, seed)

    def active(self, name: str, i: int) -> bool:
        return any(inc.name == name and inc.active(i) for inc in self.incidents)


def parse_incident(spec: str, count: int) -> Incident:
    name, _, window = spec.partition("@")
    if name not in ("error_burst", "pii", "secret", "malformed", "cost", "drift"):
        raise ValueError(f"unknown incident {name!r}: use error_burst, pii, secret, malformed, cost or drift")
    start_s, _, length_s = (window or "0.3:0.2").partition(":")

    def point(text: str, default: float) -> int:
        value = float(text) if text else default
        return int(value * count) if value <= 1.0 else int(value)

    return Incident(name, point(start_s, 0.3), point(length_s, 0.2 if name != "malformed" else 1.0))


def make_trace(plan: LoadPlan, i: int, rng: random.Random, now: datetime) -> dict[str, Any]:
    route = plan.routes[i % len(plan.routes)]
    provider, model = MODELS[(i // len(plan.routes)) % len(MODELS)]
    topic = "drift" if plan.active("drift", i) and route == plan.routes[min(2, len(plan.routes) - 1)] else "base"
    prompt = rng.choice(TOPICS[topic])
    words = max(0, int(plan.trace_kb * 1024) - 600)
    context = (FILLER * (words // len(FILLER) + 1))[:words]
    growth = 1.6 if plan.active("cost", i) and route == plan.routes[min(1, len(plan.routes) - 1)] else 1.0
    input_tokens = int((220 + rng.randint(0, 60) + words // 4) * growth)
    error = plan.active("error_burst", i) and route == plan.routes[0] and model == MODELS[0][1] \
        and rng.random() < 0.6
    completion = "I can help with that. Here are the steps you can follow."
    tool_args: dict[str, Any] = {"query": prompt[:40], "top_k": 5}
    metadata = {"client": "web", "locale": "en-US"}
    if plan.active("pii", i):
        value = PII[i % len(PII)]
        prompt = f"{prompt} My contact is {value}."
        # Most answers echo the user's own contact (redacted, not a leak); every fourth one
        # discloses another customer's, which is a leak (docs/REDACTION.md, echoes).
        leaked = PII[(i + 3) % len(PII)] if i % 4 == 0 else value
        completion = f"{completion} I will reach you at {leaked}."
        tool_args["customer"] = value
        metadata["customer_ref"] = value
        plan.planted.extend([value] if leaked == value else [value, leaked])
    if plan.active("secret", i):
        value = SECRETS[i % len(SECRETS)]
        prompt = f"{prompt} Use the api key {value} for the call."
        tool_args["token"] = value
        plan.planted.append(value)
    return {
        "schema_version": 1, "trace_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "span_id": f"{rng.getrandbits(64):016x}", "timestamp": now.isoformat(),
        "tenant": TENANTS[i % len(TENANTS)], "application": f"app-{route}", "route": route,
        "principal": f"svc-{route}", "roles": ["service"], "provider": provider, "operation": "chat",
        "request_model": model, "response_model": model, "deployment": f"{model}-eu-1", "region": "eu-west-1",
        "system_fingerprint": "fp_2024_11", "prompt_template_id": f"{route}-main", "prompt_template_version": "v3",
        "input_messages": [{"role": "system", "content": context}, {"role": "user", "content": prompt}],
        "output_messages": [] if error else [{"role": "assistant", "content": completion}],
        "tool_calls": [{"name": "kb_search", "arguments": tool_args, "result": {"hits": 3}, "status": "ok"}],
        "input_tokens": input_tokens, "output_tokens": 0 if error else 40 + rng.randint(0, 80),
        "finish_reasons": ["error"] if error else ["stop"], "ttft_ms": 180 + rng.random() * 60,
        "latency_ms": 600 + rng.random() * 400, "status": "error" if error else "ok",
        "error_type": "upstream_5xx" if error else None, "metadata": metadata,
    }


def malformed(i: int, rng: random.Random) -> bytes:
    variants = [b"{not json", b'"a string"', b'{"trace_id": 42}', b"\xff\xfe\xfa", b"[]",
                json.dumps({"schema_version": 9, "trace_id": "x"}).encode()]
    return variants[i % len(variants)]


def run_load(settings: WardenSettings, plan: LoadPlan, console: Console | None = None) -> dict[str, Any]:
    """Publish the plan at its rate; returns counts (sent, malformed, publisher stats)."""
    from streams.publisher import TracePublisher

    rng = random.Random(plan.seed)
    publisher = TracePublisher(settings.kafka_bootstrap, settings.topic("traces.raw.v1"),
                               security=settings.security)
    sent = bad = 0
    started = time.monotonic()
    progress = Progress(TextColumn("loadgen"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, disable=console is None, transient=False)
    with progress:
        task = progress.add_task("traces", total=plan.count)
        for i in range(plan.count):
            if plan.active("malformed", i) and rng.random() < 0.01:
                publisher.publish_raw(malformed(i, rng), b"malformed")
                bad += 1
            else:
                publisher.publish(make_trace(plan, i, rng, datetime.now(UTC)))
                sent += 1
            due = started + (i + 1) / plan.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if i % 100 == 0:
                progress.update(task, completed=i + 1)
        progress.update(task, completed=plan.count)
    left = publisher.close()
    return {"valid": sent, "malformed": bad, "undelivered": left, **publisher.stats.as_dict(),
            "seconds": round(time.monotonic() - started, 2)}
