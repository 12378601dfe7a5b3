"""A simulated day: arrivals, scenarios, traces in time order, and the truth file.

>>> day = SimDay(seed=3, hours=1.0, scale=0.2, incidents=[])
>>> traces = day.traces()
>>> traces == SimDay(seed=3, hours=1.0, scale=0.2, incidents=[]).traces()   # same seed, same day
True
>>> all(a["timestamp"] <= b["timestamp"] for a, b in zip(traces, traces[1:]))
True
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.sim.catalog import ROUTES, RouteSpec
from streams.sim.scenarios import Scenario, standard_incidents
from streams.sim.traffic import Rates, Request, TraceBuilder

# Peak-to-trough ratio of the daily cycle: rate(t) = mean * (1 + A cos(2 pi (h - peak) / 24)).
PEAK_TO_TROUGH = 2.5
AMPLITUDE = (PEAK_TO_TROUGH - 1) / (PEAK_TO_TROUGH + 1)
DEFAULT_START = datetime(2026, 3, 2, tzinfo=UTC).timestamp()
TRUTH_SCHEMA = "warden-scenarios/1"


@dataclass
class SimDay:
    """One day of traffic over ``routes``; ``hours`` of event time hold one full daily
    cycle (24 for a real day; fewer compress the cycle, not the rates), ``scale``
    multiplies every route's rate. ``incidents=None`` places the standard set."""

    seed: int = 1
    start: float = DEFAULT_START
    hours: float = 24.0
    scale: float = 1.0
    routes: Sequence[RouteSpec] = ROUTES
    incidents: list[Scenario] | None = None
    rates: Rates = field(default_factory=Rates)

    def __post_init__(self) -> None:
        if self.incidents is None:
            self.incidents = standard_incidents(self.start, self.hours)
        known = {r.name for r in self.routes}
        for inc in self.incidents:
            if inc.route not in known:
                raise ValueError(f"scenario {inc.name} names route {inc.route!r}, not one of the day's routes")
        self._traces: list[dict[str, Any]] | None = None

    @property
    def end(self) -> float:
        return self.start + self.hours * 3600

    @property
    def scenarios(self) -> list[Scenario]:
        assert self.incidents is not None
        return self.incidents

    def rate_at(self, spec: RouteSpec, at: float) -> float:
        """Requests/s of a route at event time ``at`` (daily cycle over ``hours``)."""
        hour = (at - self.start) / (self.hours * 3600) * 24
        return spec.rate * self.scale * (1 + AMPLITUDE * math.cos(2 * math.pi * (hour - spec.peak_hour) / 24))

    def requests(self, spec: RouteSpec) -> Iterator[Request]:
        """Poisson arrivals with the daily cycle (thinning), each with its own RNG."""
        rng = random.Random(f"{self.seed}/{spec.name}")
        peak = spec.rate * self.scale * (1 + AMPLITUDE)
        at = self.start
        names = [m for m, _ in spec.models]
        shares = [s for _, s in spec.models]
        while peak > 0:
            at += rng.expovariate(peak)
            if at >= self.end:
                return
            if rng.random() * peak <= self.rate_at(spec, at):
                yield Request(spec, at, rng.choices(names, shares)[0], random.Random(rng.getrandbits(64)))

    def traces(self) -> list[dict[str, Any]]:
        """Every trace of the day, sorted by timestamp (cached)."""
        if self._traces is None:
            builder = TraceBuilder(self.rates)
            out: list[dict[str, Any]] = []
            for spec in self.routes:
                requests = list(self.requests(spec))
                for inc in self.scenarios:
                    if inc.route == spec.name:
                        requests += inc.extra_requests(spec, self.seed)
                for req in requests:
                    for inc in self.scenarios:
                        if inc.covers(req):
                            inc.apply(req)
                    out += [t for t in builder.build(req) if _epoch(t["timestamp"]) < self.end]
            out.sort(key=lambda t: (t["timestamp"], t["trace_id"], t["span_id"]))
            self._traces = out
        return self._traces

    def changes(self) -> list[dict[str, Any]]:
        """The registered changes of the day (ChangeEvent records), in time order."""
        return sorted((c for inc in self.scenarios for c in inc.changes()), key=lambda c: c["at"])

    def truth(self) -> dict[str, Any]:
        traces = self.traces()
        per_route = Counter(t["route"] for t in traces)
        incident_of = {inc.route: f"inc-{i:02d}-{inc.family}" for i, inc in enumerate(self.scenarios, 1)}
        routes = []
        for spec in self.routes:
            routes.append({
                "route": spec.name, "tenant": spec.tenant, "application": spec.application, "team": spec.team,
                "kind": spec.kind, "domain": spec.domain, "stable": spec.name not in incident_of,
                "incident": incident_of.get(spec.name), "models": [m for m, _ in spec.models],
                "model_shares": dict(spec.models), "prompt_template_id": spec.template_id,
                "data_classification": spec.classification, "traces": per_route[spec.name],
            })
        return {
            "schema": TRUTH_SCHEMA, "variant": "warden-sim", "seed": self.seed, "hours": self.hours,
            "scale": self.scale, "stream_start": _iso(self.start), "stream_end": _iso(self.end),
            "stream_start_epoch": self.start, "stream_end_epoch": self.end, "traces": len(traces),
            "false_alarm_rules": {"settle_s": 3600.0 * self.hours / 24, "before_start_margin_s": 60.0,
                                  "severities": ["warning", "critical"]},
            "routes": routes,
            "incidents": [inc.truth(i) for i, inc in enumerate(self.scenarios, 1)],
        }

    def write(self, directory: Path) -> dict[str, Path]:
        """``traces.jsonl``, ``changes.jsonl``, ``truth.json`` and ``config/`` into ``directory``
        (for ``warden replay --input traces.jsonl --changes changes.jsonl --config config``)."""
        from streams.sim.config import write_config

        directory.mkdir(parents=True, exist_ok=True)
        paths = {"traces": directory / "traces.jsonl", "changes": directory / "changes.jsonl",
                 "truth": directory / "truth.json", "config": directory / "config"}
        with paths["traces"].open("w", encoding="utf-8") as out:
            for trace in self.traces():
                out.write(json.dumps(trace, separators=(",", ":")) + "\n")
        paths["changes"].write_text("".join(json.dumps(c) + "\n" for c in self.changes()), encoding="utf-8")
        paths["truth"].write_text(json.dumps(self.truth(), indent=1), encoding="utf-8")
        write_config(self, paths["config"])
        return paths


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
