"""Warden's config files for a simulated day: ``deploy/config`` plus an ownership registry
and budgets that cover every route, team, model and component of the day (so nothing is
an unowned component by accident), and, for a compressed day, the compressed detector
settings of :mod:`streams.sim.compressed`."""

from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from streams.config import CONFIG_DIR

if TYPE_CHECKING:
    from streams.sim.day import SimDay

PLATFORM_KINDS = ("routing_config", "price_catalog", "detector_config", "redaction_policy", "breaker_policy",
                  "ownership_registry")
# A budget of twice a route's usual spend per period: the daily cycle's peak burns it at
# ~0.7x, a backfill job that multiplies spend ~50x pages within the hour.
BUDGET_HEADROOM = 2.0


def owners_doc(day: SimDay) -> dict[str, Any]:
    teams = {spec.team for spec in day.routes} | {"ml-platform", "trust-safety"}
    owners: dict[str, dict[str, str]] = defaultdict(dict)
    for spec in day.routes:
        owners["route"][spec.name] = spec.team
        owners["application"][spec.application] = spec.team
        owners["prompt"][spec.template_id] = spec.team
        if spec.index_id:
            owners["retrieval_index"][spec.index_id] = spec.team
        if spec.toolset_id:
            owners["toolset"][spec.toolset_id] = spec.team
    for kind in ("model", "deployment", *PLATFORM_KINDS):
        owners[kind]["*"] = "ml-platform"
    owners["guardrail_policy"]["*"] = "trust-safety"
    return {"version": f"sim-{day.seed}-1",
            "teams": {t: {"oncall": f"pagerduty:{t}", "contact": f"#{t}"} for t in sorted(teams)},
            "owners": {k: dict(v) for k, v in owners.items()}}


def route_spend(day: SimDay, config_dir: Path) -> dict[str, float]:
    """USD per route over the day at catalog prices, without incident-added traffic.

    The simulator's own records are valid by construction (tests/test_sim.py checks them
    with the govern agent's validation), so they are priced as constructed models: full
    validation of every trace made writing a day three times slower."""
    from detectors.cost import CostAccountant, load_price_catalog
    from streams.records import InferenceTrace
    from streams.values import cost_sample

    accountant = CostAccountant(load_price_catalog(config_dir / "prices.yaml"))
    spend: dict[str, float] = defaultdict(float)
    for record in day.traces():
        if record["principal"] == "svc-backfill":
            continue
        trace = InferenceTrace.model_construct(**{**record, "timestamp": _parse(record["timestamp"])})
        costing = accountant.account(cost_sample(trace))
        spend[record["route"]] += costing.cost_usd or 0.0
    return dict(spend)


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def budgets_doc(day: SimDay, base: dict[str, Any], spend: dict[str, float]) -> dict[str, Any]:
    period = "day" if day.hours >= 24 else f"{int(day.hours * 60)}m"
    doc = dict(base)
    doc["version"] = f"sim-{day.seed}-budgets-1"
    doc["budgets"] = [{"id": f"{name}-{period}", "scope": {"route": name},
                       "amount_usd": round(max(0.01, spend.get(name, 0.0) * BUDGET_HEADROOM), 4),
                       "period": period, "on_exhaustion": "alert"} for name in sorted(spend)]
    return doc


def write_config(day: SimDay, target: Path, *, compressed: bool | None = None) -> Path:
    """Write the day's config directory; ``compressed`` (default: when the day is shorter
    than 24 h) applies :mod:`streams.sim.compressed`."""
    from streams.sim import compressed as compressed_settings

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(CONFIG_DIR, target)
    (target / "owners.yaml").write_text(yaml.safe_dump(owners_doc(day), sort_keys=False))
    base = yaml.safe_load((target / "budgets.yaml").read_text())
    (target / "budgets.yaml").write_text(yaml.safe_dump(budgets_doc(day, base, route_spend(day, target)),
                                                        sort_keys=False))
    if compressed if compressed is not None else day.hours < 24:
        compressed_settings.apply(target, day.hours)
    return target
