"""The versioned breaker policy (``deploy/config/breaker-policy.yaml``), pydantic-loaded.

Shape::

    version: "2025.06.1"
    traffic_window_s: 300        # minimum-traffic window (per route member)
    inventory_ttl_s: 3600        # a model/deployment unseen this long leaves the route
    error_rate: {...}            # ErrorRateDetector defaults (detectors.error_rate)
    defaults: {...}              # BreakerSettings: trips, cooldown, probes, cap, ...
    scopes:                      # first match wins; unset fields come from defaults
      - name: payments
        match: {route: "checkout*", model: "*"}
        cooldown_s: 60
        error_rate: {open_threshold: 0.1, close_threshold: 0.03}

A scope's ``trips`` list replaces the default list (it is not merged), so a scope reads
on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from detectors.breaker.targets import SCOPE_KEYS, matches
from detectors.error_rate import ErrorRateConfig
from detectors.yaml_config import load_yaml_model

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "deploy" / "config" / "breaker-policy.yaml"
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
Severity = Literal["info", "warning", "critical"]


class TripRule(BaseModel):
    """Which findings trip a breaker, and how many of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(min_length=1)
    min_severity: Severity = "info"
    min_score: float | None = None
    count: int = Field(default=1, ge=1, le=100)
    within_s: float = Field(default=300.0, gt=0)
    min_traffic: int = Field(default=0, ge=0)
    respect_opt_out: bool = True  # finding evidence {"breaker": false} → alert only
    ignore_capacity_cap: bool = False  # True: may black out a route (secrets, say)

    def accepts(self, kind: str, severity: str, score: float) -> bool:
        return (
            kind == self.kind
            and SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[self.min_severity]
            and (self.min_score is None or score >= self.min_score)
        )


def default_trips() -> list[TripRule]:
    return [
        TripRule(kind="error_rate.high", min_severity="critical"),
        TripRule(kind="redaction.secret_in_completion"),
        TripRule(kind="redaction.pii_in_completion", count=3, within_s=600),
        TripRule(kind="drift.embedding", min_severity="critical"),
        TripRule(kind="cost.budget_exhausted"),
        TripRule(kind="change.unowned_behaviour", min_severity="critical"),
    ]


class BreakerSettings(BaseModel):
    """Everything a scope can tune (times in seconds, shares in [0, 1])."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trips: list[TripRule] = Field(default_factory=default_trips)
    cooldown_s: float = Field(default=30.0, gt=0)
    backoff_multiplier: float = Field(default=2.0, ge=1.0)
    max_cooldown_s: float = Field(default=900.0, gt=0)
    trip_decay_s: float = Field(default=1800.0, gt=0)
    probe_share: float = Field(default=0.05, gt=0, le=1)
    probe_requests: int = Field(default=20, ge=1)
    probe_max_error_rate: float = Field(default=0.1, ge=0, lt=1)
    max_open_share: float = Field(default=0.5, ge=0, le=1)
    fallback: str | None = None
    override_default_s: float = Field(default=3600.0, gt=0)
    override_max_s: float = Field(default=7 * 86400.0, gt=0)
    alert_repeat_s: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> BreakerSettings:
        if self.max_cooldown_s < self.cooldown_s:
            raise ValueError(
                f"max_cooldown_s ({self.max_cooldown_s}) is below cooldown_s ({self.cooldown_s}); "
                "raise max_cooldown_s"
            )
        if self.override_default_s > self.override_max_s:
            raise ValueError(
                f"override_default_s ({self.override_default_s}) exceeds override_max_s "
                f"({self.override_max_s}); lower it"
            )
        return self

    def cooldown(self, trips: int) -> float:
        """Back-off: ``cooldown_s * backoff_multiplier ** (trips - 1)``, capped."""
        grown = self.cooldown_s * self.backoff_multiplier ** max(trips - 1, 0)
        return min(grown, self.max_cooldown_s)

    def trip_rule(self, kind: str, severity: str, score: float) -> TripRule | None:
        return next((r for r in self.trips if r.accepts(kind, severity, score)), None)


class ScopePolicy(BaseModel):
    """One ``scopes:`` entry: a glob per scope key, then any BreakerSettings field."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)
    match: dict[str, str] = Field(default_factory=dict)
    error_rate: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_keys(self) -> ScopePolicy:
        unknown = sorted(set(self.match) - set(SCOPE_KEYS))
        if unknown:
            raise ValueError(
                f"scope {self.name!r}: match keys {unknown} unknown; use {list(SCOPE_KEYS)}"
            )
        return self


class BreakerPolicy(BaseModel):
    """The whole policy file. ``settings_for(scope)`` answers which settings apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    traffic_window_s: float = Field(default=300.0, gt=0)
    inventory_ttl_s: float = Field(default=3600.0, gt=0)
    error_rate: ErrorRateConfig = Field(default_factory=ErrorRateConfig)
    defaults: BreakerSettings = Field(default_factory=BreakerSettings)
    scopes: list[ScopePolicy] = Field(default_factory=list)
    _resolved: list[tuple[ScopePolicy, BreakerSettings, ErrorRateConfig]] = PrivateAttr(
        default_factory=list
    )

    @model_validator(mode="after")
    def _resolve_scopes(self) -> BreakerPolicy:
        # Resolve each scope against the defaults once, so a bad field fails at load time
        # with the scope's name, not at 3 a.m. when the first finding matches it.
        base = self.defaults.model_dump()
        resolved = []
        for i, scope in enumerate(self.scopes):
            try:
                settings = BreakerSettings.model_validate({**base, **(scope.model_extra or {})})
                er = ErrorRateConfig.model_validate(
                    {**self.error_rate.model_dump(), **scope.error_rate, "version": self.version}
                )
            except ValidationError as exc:
                raise ValueError(f"scopes[{i}] ({scope.name!r}): {exc}") from exc
            resolved.append((scope, settings, er))
        self._resolved = resolved
        return self

    def settings_for(self, scope: Mapping[str, str]) -> tuple[str, BreakerSettings]:
        """``(scope name, settings)`` of the first scope matching ``scope``, else defaults."""
        for entry, settings, _ in self._resolved:
            if matches(entry.match, scope):
                return entry.name, settings
        return "defaults", self.defaults

    def error_rate_for(self, scope: Mapping[str, str]) -> ErrorRateConfig:
        """ErrorRateDetector config for a (route, model) scope, carrying the policy version."""
        for entry, _, er in self._resolved:
            if matches(entry.match, scope):
                return er
        return self.error_rate.model_copy(update={"version": self.version})


def load_policy(path: str | Path = DEFAULT_POLICY_PATH) -> BreakerPolicy:
    """Load and validate a policy file; errors name the file and the field."""
    return load_yaml_model(path, BreakerPolicy, "'version:' at the top", what="breaker policy")
