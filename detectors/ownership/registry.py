"""Who owns what: the versioned ownership registry (``deploy/config/owners.yaml``).

Maps routes, applications, models, deployments, prompt templates, guardrail policies,
retrieval indexes and toolsets to an owning team with an on-call contact. Ids are exact
or glob patterns (``fnmatch`` syntax, case-sensitive): an exact id wins, then the most
specific pattern (most literal characters), then file order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

COMPONENT_KINDS: tuple[str, ...] = (
    "route", "application", "model", "deployment", "prompt", "guardrail_policy",
    "retrieval_index", "toolset", "routing_config", "price_catalog", "detector_config",
    "redaction_policy", "breaker_policy", "ownership_registry",
)
_WILDCARDS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Owner:
    """The team that owns a component and how to reach it."""

    team: str
    oncall: str = ""
    contact: str = ""
    matched_by: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"team": self.team, "oncall": self.oncall, "contact": self.contact,
                "matched_by": self.matched_by}


class OwnershipRegistry:
    """Versioned mapping of components to owning teams.

    Parameters
    ----------
    version
        Version string of the registry file; stored with every finding that used it.
    teams
        ``team -> {"oncall": ..., "contact": ...}``.
    owners
        ``kind -> {id or glob pattern -> team}``; kinds are those of ``COMPONENT_KINDS``.

    >>> reg = OwnershipRegistry.from_mapping({
    ...     "version": "2024-06-01.1",
    ...     "teams": {"checkout-ai": {"oncall": "pagerduty:checkout-ai"}},
    ...     "owners": {"route": {"checkout*": "checkout-ai"}},
    ... })
    >>> reg.owner_of("route", "checkout-eu").oncall
    'pagerduty:checkout-ai'
    >>> reg.owner_of("route", "search") is None
    True
    """

    def __init__(self, version: str, teams: Mapping[str, Mapping[str, str]],
                 owners: Mapping[str, Mapping[str, str]]) -> None:
        self.version = str(version)
        self.teams = {name: dict(info or {}) for name, info in teams.items()}
        self._exact: dict[str, dict[str, str]] = {}
        self._patterns: dict[str, list[tuple[str, str]]] = {}
        for kind, table in owners.items():
            if kind not in COMPONENT_KINDS:
                raise ValueError(
                    f"owners.{kind}: unknown component kind; use one of {', '.join(COMPONENT_KINDS)}")
            for ident, team in (table or {}).items():
                if team not in self.teams:
                    raise ValueError(
                        f"owners.{kind}.{ident}: team {team!r} is not defined under teams:; "
                        "add it there with its oncall")
                if _WILDCARDS.intersection(ident):
                    self._patterns.setdefault(kind, []).append((str(ident), team))
                else:
                    self._exact.setdefault(kind, {})[str(ident)] = team
        for patterns in self._patterns.values():
            # Most literal characters first; sort is stable so file order breaks ties.
            patterns.sort(key=lambda p: -sum(ch not in _WILDCARDS for ch in p[0]))
        self._owners = {k: dict(v or {}) for k, v in owners.items()}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> OwnershipRegistry:
        """Build from a parsed YAML/JSON document with ``version``, ``teams``, ``owners``."""
        if not data or "version" not in data:
            raise ValueError("ownership registry: missing 'version:' (add a version string)")
        return cls(str(data["version"]), data.get("teams") or {}, data.get("owners") or {})

    @classmethod
    def from_yaml(cls, path: str | Path) -> OwnershipRegistry:
        """Load ``owners.yaml``."""
        return cls.from_mapping(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})

    def to_dict(self) -> dict[str, Any]:
        """The registry as published on the compacted topic (round-trips ``from_mapping``)."""
        return {"version": self.version, "teams": self.teams, "owners": self._owners}

    @property
    def content_hash(self) -> str:
        """Hash of the content, to tell two registries with the same version string apart."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def owner_of(self, kind: str, component_id: str) -> Owner | None:
        """The owner of one component, or ``None`` when nobody owns it."""
        team = self._exact.get(kind, {}).get(component_id)
        matched = component_id
        if team is None:
            for pattern, candidate in self._patterns.get(kind, ()):
                if fnmatchcase(component_id, pattern):
                    team, matched = candidate, pattern
                    break
        if team is None:
            return None
        info = self.teams.get(team, {})
        return Owner(team, str(info.get("oncall", "")), str(info.get("contact", "")),
                     f"{kind}:{matched}")

    def owner_to_page(self, route: str, application: str = "", model: str = "") -> Owner | None:
        """Who to page about a route: its owner, else its application's, else its model's."""
        for kind, ident in (("route", route), ("application", application), ("model", model)):
            if ident:
                owner = self.owner_of(kind, ident)
                if owner is not None:
                    return owner
        return None
