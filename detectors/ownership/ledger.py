"""The change ledger: registered changes, indexed for the questions detectors ask.

"Which change events are in scope of route R within [t - window, t]?" and "is version V of
component C registered?". Entries are plain values (the worker converts
``streams.records.ChangeEvent``); the ledger is bounded by age and count, and remembers the
registered versions of expired entries in a compact set so an old but still-served
version stays known.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any

from detectors.ownership.config import LedgerSettings


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One registered change.

    Parameters
    ----------
    component_kind
        ``model``, ``deployment``, ``prompt``, ``guardrail_policy``, ``retrieval_index``,
        ``toolset``, ``routing_config``, ``price_catalog``, ``detector_config``,
        ``redaction_policy`` ...
    component_id
        The component (a glob pattern such as ``gpt-4o*`` matches several).
    old_version, new_version
        Versions before and after the change.
    owner
        Team that made (and owns) the change.
    at
        When it took effect, seconds since the epoch (UTC).
    scope_routes, scope_tenants
        Where it applies (globs allowed); empty means everywhere.
    link
        Ticket, pull request or commit.
    event_id
        Id of the change event (deduplicates replays).
    """

    component_kind: str
    component_id: str
    new_version: str
    at: float
    old_version: str | None = None
    owner: str = ""
    scope_routes: tuple[str, ...] = ()
    scope_tenants: tuple[str, ...] = ()
    link: str = ""
    event_id: str = ""

    def in_scope(self, route: str, tenants: Iterable[str] = ()) -> bool:
        """Whether the change applies to ``route`` for any of ``tenants`` (empty = any)."""
        if self.scope_routes and not any(fnmatchcase(route, p) for p in self.scope_routes):
            return False
        tenants = [t for t in tenants if t]
        if self.scope_tenants and tenants:
            return any(fnmatchcase(t, p) for t in tenants for p in self.scope_tenants)
        return True

    def names(self, component_id: str | None) -> bool:
        """Whether this entry is about ``component_id`` (``None`` = the trace did not say)."""
        return component_id is None or fnmatchcase(component_id, self.component_id)

    def brief(self) -> dict[str, Any]:
        """What a finding quotes about it."""
        return {"event_id": self.event_id, "component_kind": self.component_kind,
                "component_id": self.component_id, "old_version": self.old_version,
                "new_version": self.new_version, "owner": self.owner, "at": self.at,
                "link": self.link}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scope_routes"], d["scope_tenants"] = list(self.scope_routes), list(self.scope_tenants)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LedgerEntry:
        return cls(**{**d, "scope_routes": tuple(d.get("scope_routes", ())),
                      "scope_tenants": tuple(d.get("scope_tenants", ()))})


class ChangeLedger:
    """Bounded, serialisable index of change events.

    Parameters
    ----------
    config
        ``LedgerSettings``: retention (seconds, relative to the newest entry), entry and
        version caps.

    >>> ledger = ChangeLedger()
    >>> ledger.add(LedgerEntry("prompt", "faq-system", "v7", at=1000.0, old_version="v6",
    ...                        owner="support-ai", scope_routes=("faq",), event_id="e1"))
    True
    >>> [e.event_id for e in ledger.in_scope("faq", start=0.0, end=2000.0)]
    ['e1']
    >>> ledger.is_registered("prompt", "v7", "faq-system") is not None
    True
    >>> ledger.is_registered("prompt", "v8", "faq-system") is None
    True
    """

    def __init__(self, config: LedgerSettings | None = None) -> None:
        self.config = config or LedgerSettings()
        self._entries: list[LedgerEntry] = []  # sorted by (at, event_id)
        self._keys: list[tuple[float, str]] = []
        self._ids: set[str] = set()
        # (kind, version) -> component ids (patterns) that registered it; survives expiry.
        self._versions: dict[tuple[str, str], list[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: LedgerEntry) -> bool:
        """Index one entry; ``False`` when it was already there (same ``event_id``)."""
        eid = entry.event_id or f"{entry.component_kind}|{entry.component_id}|{entry.new_version}|{entry.at}"
        if eid in self._ids:
            return False
        key = (entry.at, eid)
        i = bisect.bisect(self._keys, key)
        self._keys.insert(i, key)
        self._entries.insert(i, entry)
        self._ids.add(eid)
        for version in {entry.new_version, entry.old_version} - {None}:
            self._remember(entry.component_kind, str(version), entry.component_id)
        self._expire()
        return True

    def _remember(self, kind: str, version: str, component_id: str) -> None:
        ids = self._versions.pop((kind, version), [])
        if component_id not in ids:
            ids.append(component_id)
        self._versions[(kind, version)] = ids[-8:]  # re-insert: most recent last
        while len(self._versions) > self.config.max_versions:
            self._versions.pop(next(iter(self._versions)))

    def _expire(self) -> None:
        horizon = self._keys[-1][0] - self.config.retention_s
        drop = bisect.bisect_left(self._keys, (horizon, ""))
        drop = max(drop, len(self._entries) - self.config.max_entries)
        if drop > 0:
            for key in self._keys[:drop]:
                self._ids.discard(key[1])
            del self._keys[:drop], self._entries[:drop]

    def in_scope(self, route: str, start: float, end: float, tenants: Iterable[str] = (),
                 kinds: Iterable[str] | None = None) -> list[LedgerEntry]:
        """Entries with ``start <= at <= end`` that apply to ``route`` (and ``tenants``)."""
        kinds = set(kinds) if kinds is not None else None
        tenants = list(tenants)
        lo = bisect.bisect_left(self._keys, (start, ""))
        hi = bisect.bisect_right(self._keys, (end, "\uffff"))
        return [e for e in self._entries[lo:hi]
                if (kinds is None or e.component_kind in kinds) and e.in_scope(route, tenants)]

    def is_registered(self, kind: str, version: str,
                      component_id: str | None = None) -> dict[str, Any] | None:
        """Whether a change registered ``version`` of a ``kind`` component (as new or old
        version); returns ``{"component_id": pattern}`` of the registration, else ``None``.
        ``component_id=None`` accepts any component of that kind."""
        for pattern in reversed(self._versions.get((kind, version), [])):
            if component_id is None or fnmatchcase(component_id, pattern):
                return {"component_id": pattern}
        return None

    def to_state(self) -> dict[str, Any]:
        return {"v": 1, "entries": [e.to_dict() for e in self._entries],
                "versions": [[k, v, ids] for (k, v), ids in self._versions.items()]}

    @classmethod
    def from_state(cls, state: dict[str, Any], config: LedgerSettings | None = None) -> ChangeLedger:
        ledger = cls(config)
        ledger._versions = {(k, v): list(ids) for k, v, ids in state.get("versions", [])}
        for d in state.get("entries", []):
            ledger.add(LedgerEntry.from_dict(d))
        return ledger
