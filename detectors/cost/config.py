"""Cost policy (``deploy/config/budgets.yaml``): budgets, burn-rate rules, detector settings.

Durations are seconds or strings such as ``"30s"``, ``"5m"``, ``"1h"``, ``"3d"``. Budget
periods are calendar periods in UTC (``hour``, ``day``, ``week`` from Monday, ``month``)
or a duration (fixed windows aligned to the epoch, e.g. ``"7d"``).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from detectors.yaml_config import load_yaml_model

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CALENDAR = ("hour", "day", "week", "month")
SCOPE_KEYS = ("tenant", "application", "route")


def parse_duration(value: float | int | str) -> float:
    """Seconds in ``value`` (a number of seconds or ``"<n><s|m|h|d|w>"``).

    >>> parse_duration("5m"), parse_duration("1.5h"), parse_duration(30)
    (300.0, 5400.0, 30.0)
    """
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(value))
        if not m:
            raise ValueError(f"duration {value!r}: write seconds or e.g. '5m', '1h', '3d'")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be > 0")
    return seconds


def period_bounds(period: str, at: float) -> tuple[float, float]:
    """Start and end (epoch seconds) of the budget period holding ``at``.

    >>> period_bounds("day", 86400 * 3 + 5)
    (259200.0, 345600.0)
    >>> s, e = period_bounds("month", 1_740_000_000)   # 2025-02-19
    >>> (e - s) / 86400
    28.0
    """
    if period not in _CALENDAR:
        length = parse_duration(period)
        start = (at // length) * length
        return float(start), float(start + length)
    t = datetime.fromtimestamp(at, UTC)
    if period == "hour":
        first = t.replace(minute=0, second=0, microsecond=0)
        span = timedelta(hours=1)
    elif period == "day":
        first = t.replace(hour=0, minute=0, second=0, microsecond=0)
        span = timedelta(days=1)
    elif period == "week":
        first = (t - timedelta(days=t.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        span = timedelta(days=7)
    else:
        first = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        span = timedelta(days=calendar.monthrange(t.year, t.month)[1])
    return first.timestamp(), (first + span).timestamp()


class BurnRule(BaseModel):
    """Alert when spend burns the budget ``burn_rate`` times too fast over both windows."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    severity: Literal["page", "ticket"]
    long_window: float
    short_window: float
    burn_rate: float = Field(gt=0)

    @field_validator("long_window", "short_window", mode="before")
    @classmethod
    def _duration(cls, v: float | str) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _short_is_shorter(self) -> BurnRule:
        if self.short_window >= self.long_window:
            raise ValueError(
                f"burn rule: short_window ({self.short_window:g} s) must be shorter than "
                f"long_window ({self.long_window:g} s); the workbook uses 1/12 of it"
            )
        return self


# Google SRE workbook, "Alerting on SLOs", multiwindow multi-burn-rate alerts (table 5-8):
# 2% of a 30-day budget in 1 h, 5% in 6 h page; 10% in 1 d or 3 d ticket.
WORKBOOK_RULES = (
    BurnRule(severity="page", long_window=3600, short_window=300, burn_rate=14.4),
    BurnRule(severity="page", long_window=6 * 3600, short_window=1800, burn_rate=6.0),
    BurnRule(severity="ticket", long_window=86400, short_window=7200, burn_rate=3.0),
    BurnRule(severity="ticket", long_window=3 * 86400, short_window=6 * 3600, burn_rate=1.0),
)


class BudgetSpec(BaseModel):
    """A spend budget for one scope over a period."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    scope: dict[str, str] = Field(default_factory=dict)
    amount_usd: float = Field(gt=0)
    period: str = "month"
    on_exhaustion: Literal["breaker", "alert"] = "alert"
    rules: tuple[BurnRule, ...] | None = None

    @field_validator("scope")
    @classmethod
    def _scope_keys(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(set(v) - set(SCOPE_KEYS))
        if bad:
            raise ValueError(f"budget scope keys {bad} unknown; use {list(SCOPE_KEYS)}")
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: str) -> str:
        if v not in _CALENDAR:
            parse_duration(v)
        return v

    def matches(self, tenant: str, application: str, route: str) -> bool:
        values = {"tenant": tenant, "application": application, "route": route}
        return all(values[k] == want for k, want in self.scope.items())


class RegressionConfig(BaseModel):
    """Settings of :class:`~detectors.cost.regression.CostRegressionDetector`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ks: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    arl0: float = Field(default=1e7, gt=1)
    clip: float = Field(default=2.0, gt=0)
    warmup: int = Field(default=500, ge=32)
    half_life: float = Field(default=5000.0, gt=1)
    two_sided: bool = False
    min_relative_shift: float = Field(default=0.05, ge=0)
    critical_relative_shift: float = Field(default=1.0, gt=0)
    driver_share_min: float = Field(default=0.25, gt=0, le=1)
    events_window_s: float = Field(default=3600.0, ge=0)


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    idle_timeout_s: float = Field(default=300.0, gt=0)
    max_open_runs: int = Field(default=10_000, ge=1)
    close_on_final_answer: bool = True


class AccountingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rel_tolerance: float = Field(default=0.05, ge=0)
    abs_tolerance_usd: float = Field(default=1e-5, ge=0)
    realert_s: float = Field(default=3600.0, ge=0)


class CostPolicy(BaseModel):
    """Everything in ``budgets.yaml``; ``version`` is stored with every finding."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1)
    burn_rules: tuple[BurnRule, ...] = WORKBOOK_RULES
    budgets: list[BudgetSpec] = Field(default_factory=list)
    regression: RegressionConfig = RegressionConfig()
    runs: RunConfig = RunConfig()
    accounting: AccountingConfig = AccountingConfig()
    _match_cache: dict[tuple[str, str, str], list[BudgetSpec]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique_ids(self) -> CostPolicy:
        seen: set[str] = set()
        for b in self.budgets:
            if b.id in seen:
                raise ValueError(f"budget id {b.id!r} appears twice; budget ids must be unique")
            seen.add(b.id)
        return self

    def rules_for(self, budget: BudgetSpec) -> tuple[BurnRule, ...]:
        return budget.rules if budget.rules is not None else self.burn_rules

    def budgets_for(self, tenant: str, application: str, route: str) -> list[BudgetSpec]:
        """Budgets whose scope covers this call (cached; scopes are few)."""
        key = (tenant, application, route)
        found = self._match_cache.get(key)
        if found is None:
            if len(self._match_cache) > 65_536:
                self._match_cache.clear()
            found = self._match_cache[key] = [
                b for b in self.budgets if b.matches(tenant, application, route)]
        return found


def load_cost_policy(path: str | Path) -> CostPolicy:
    """Read and validate ``budgets.yaml``; errors name the file and the field."""
    return load_yaml_model(path, CostPolicy, "version and budgets")
