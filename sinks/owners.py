"""Row layout for the ``owners`` table (migration 002): the ownership registry, flattened.

The worker inserts one row per (registry version, component kind, pattern) each time it
loads a registry file; ``owners_current`` shows the version loaded last. Inserting the
same version again is harmless (ReplacingMergeTree on the version, kind and pattern).

>>> doc = {"version": "v1", "teams": {"ai": {"oncall": "pd:ai", "contact": "#ai"}},
...        "owners": {"route": {"chat-*": "ai"}}}
>>> rows, keys = rows_for(OWNERS, registry_records(doc, loaded_at=0))
>>> rows[0][:6], keys
(['v1', 'route', 'chat-*', 'ai', 'pd:ai', '#ai'], ['v1/route/chat-*'])
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sinks.tables import TableLayout, _s, _ts, rows_for

__all__ = ["OWNERS", "registry_records", "rows_for"]


def _owner_row(o: Mapping[str, Any]) -> list[Any]:
    return [_s(o["registry_version"]), _s(o["kind"]), _s(o["pattern"]), _s(o.get("team")),
            _s(o.get("oncall")), _s(o.get("contact")), _ts(o["loaded_at"])]


OWNERS = TableLayout(
    "owners",
    ("registry_version", "kind", "pattern", "team", "oncall", "contact", "loaded_at"),
    _owner_row,
    lambda o: f"{o['registry_version']}/{o['kind']}/{o['pattern']}",
)


def registry_records(doc: Mapping[str, Any], loaded_at: float | datetime | str) -> list[dict[str, Any]]:
    """Records for :data:`OWNERS` from a registry document (deploy/config/owners.yaml
    parsed: ``version``, ``teams.<team>.{oncall,contact}``, ``owners.<kind>.<pattern>: team``).

    ``loaded_at`` is when the worker loaded it (epoch seconds, datetime or ISO text).
    A team the registry does not describe keeps empty oncall and contact.
    """
    version = str(doc.get("version", ""))
    teams = doc.get("teams") or {}
    records = []
    for kind, patterns in (doc.get("owners") or {}).items():
        for pattern, team in (patterns or {}).items():
            info = teams.get(team) or {}
            records.append({"registry_version": version, "kind": str(kind), "pattern": str(pattern),
                            "team": str(team), "oncall": info.get("oncall", ""),
                            "contact": info.get("contact", ""), "loaded_at": loaded_at})
    return records
