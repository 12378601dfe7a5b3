"""The versioned mapping file (``deploy/config/otlp-mapping.yaml``): which resource or span
attribute becomes a trace's tenant, application, route and other identity fields.

>>> m = OtlpMapping.from_dict({"version": "v1", "fields": {
...     "route": {"from": ["span.gen_ai.agent.name", "resource.service.name"], "default": "r"}}})
>>> m.resolve("route", {"gen_ai.agent.name": "planner"}, {"service.name": "svc"})
'planner'
>>> m.resolve("route", {}, {"service.name": "svc"}), m.resolve("route", {}, {})
('svc', 'r')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FIELDS = ("tenant", "application", "route", "principal", "deployment", "region", "data_classification")
SCOPES = ("resource", "span", "any")
REQUIRED_DEFAULTS = {"tenant": "default", "application": "unknown_service", "route": "default"}


class MappingError(ValueError):
    """A mapping file Warden cannot use; the message names the entry and the fix."""


@dataclass(frozen=True)
class FieldRule:
    sources: tuple[tuple[str, str], ...]  # (scope, attribute)
    default: str | None


@dataclass(frozen=True)
class OtlpMapping:
    version: str
    rules: Mapping[str, FieldRule]
    metadata: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> OtlpMapping:
        if not isinstance(doc, Mapping) or not str(doc.get("version", "")).strip():
            raise MappingError("mapping file needs a non-empty `version` (bump it on every change)")
        rules: dict[str, FieldRule] = {}
        for name, spec in (doc.get("fields") or {}).items():
            if name not in FIELDS:
                raise MappingError(f"fields.{name}: unknown field; use one of {', '.join(FIELDS)}")
            if not isinstance(spec, Mapping):
                raise MappingError(f"fields.{name}: expected {{from: [...], default: ...}}")
            sources = []
            for source in spec.get("from") or []:
                scope, _, attr = str(source).partition(".")
                if scope not in SCOPES or not attr:
                    raise MappingError(f"fields.{name}: source {source!r} must start with "
                                       "resource., span. or any. followed by an attribute name")
                sources.append((scope, attr))
            default = spec.get("default")
            rules[name] = FieldRule(tuple(sources), None if default is None else str(default))
        for name, default in REQUIRED_DEFAULTS.items():
            rule = rules.get(name)
            if rule is None:
                rules[name] = FieldRule((), default)
            elif rule.default is None:
                rules[name] = FieldRule(rule.sources, default)
        metadata = doc.get("metadata") or []
        if not isinstance(metadata, list):
            raise MappingError("metadata: expected a list of span attribute names")
        return cls(str(doc["version"]), rules, tuple(str(m) for m in metadata))

    @classmethod
    def load(cls, path: Path) -> OtlpMapping:
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise MappingError(f"cannot read the OTLP mapping file {path}: {exc}") from exc
        return cls.from_dict(doc or {})

    def resolve(self, name: str, span: Mapping[str, Any], resource: Mapping[str, Any]) -> str | None:
        """The first configured source that is set (non-empty), else the field's default."""
        rule = self.rules.get(name)
        if rule is None:
            return None
        for scope, attr in rule.sources:
            places = (span,) if scope == "span" else (resource,) if scope == "resource" else (span, resource)
            for place in places:
                value = place.get(attr)
                if value not in (None, "", []):
                    return str(value)
        return rule.default
