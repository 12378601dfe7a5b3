"""Bounded per-scope state under cardinality attacks (security issue 16).

Every (route, model) a trace names gets detector state in the govern agent's table, a
breaker engine and drift monitors. Route and model are whatever the producer writes, so a
producer with a bug or bad intent could name a million scopes and run the worker out of
memory, and again after each restart (Faust's memory store restores every changelog key).

``ScopeAdmission`` decides, per trace, whether its scope may hold state:

* a scope already holding state is always admitted;
* a new scope is admitted while the worker holds fewer than ``max_total`` scopes, its
  route fewer than ``max_per_route`` and its tenant fewer than ``max_per_tenant``;
* at the total cap, the least recently seen scope gives its slot (*reclaimed*: its state
  is deleted, a tombstone on the changelog) when it has been idle ``reclaim_s`` or more.
  Recency, not arrival, decides: a spray of new names cannot push out a route that is
  busy, and a scope whose error-rate detector is tripped (its breaker is, or is about to
  be, open) is *pinned* and never reclaimed or expired;
* otherwise the trace *overflows*: it is still redacted, priced and stored, but updates no
  detector; its per-trace findings go to the overflow scope (:data:`OVERFLOW_ROUTE`).
  Overflows are counted per reason and reported as one ``cardinality.scope_cap`` finding
  (and one log line) per ``alert_every_s``.

Independently of the cap, :meth:`ScopeAdmission.expire` returns the scopes unseen for
``ttl_s``: the caller deletes their state, so a restart does not restore them.

Memory is therefore bounded by ``max_total`` times a scope's state size, during a flood and
after a restart (the changelog holds at most the cap's scopes plus tombstones, which
compaction removes; :meth:`restore` trims a table that holds more, e.g. after the cap was
lowered).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from detectors.findings import Finding

OVERFLOW_ROUTE = "~overflow"
OVERFLOW_MODEL = "~overflow"
SCOPE_CAP = "cardinality.scope_cap"
# How many pinned scopes one admission steps over looking for a slot to reclaim: bounds
# the work per trace when many breakers are open at once.
RECLAIM_SCAN = 64


@dataclass(frozen=True)
class ScopeLimits:
    """Caps on scopes holding detector state in one worker (counts), and periods (s)."""

    max_total: int = 5_000
    max_per_route: int = 64
    max_per_tenant: int = 2_000
    idle_s: float = 600.0  # decoded detectors unused this long leave memory (state stays in the table)
    reclaim_s: float = 900.0  # at the cap, a scope unseen this long gives its slot (state deleted)
    ttl_s: float = 86_400.0  # a scope unseen this long is deleted even below the cap
    alert_every_s: float = 60.0


@dataclass
class _Held:
    route: str
    tenant: str
    seen_at: float  # wall time (s) of the scope's last trace
    pinned: bool = False  # its error-rate detector is tripped: never reclaimed or expired


class ScopeAdmission:
    """Which scopes hold state; see the module docstring.

    >>> admission = ScopeAdmission(ScopeLimits(max_total=2, max_per_route=1, reclaim_s=60))
    >>> admission.admit("a|m1", "a", "t", 0.0, {}), admission.admit("a|m2", "a", "t", 0.0, {})
    ((None, None), ('per_route', None))
    >>> admission.admit("b|m1", "b", "t", 1.0, {}), admission.admit("c|m1", "c", "t", 2.0, {})
    ((None, None), ('total', None))
    >>> admission.admit("c|m1", "c", "t", 70.0, {})   # "a|m1" idle 70 s: its slot is reclaimed
    (None, 'a|m1')
    """

    def __init__(self, limits: ScopeLimits):
        self.limits = limits
        self._held: OrderedDict[str, _Held] = OrderedDict()  # least recently seen first
        self._routes: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()
        self.overflowed: Counter[str] = Counter()  # since the last report, per reason
        self.overflowed_total = 0
        self.reclaimed = 0
        self.expired = 0
        self._reported_at = float("-inf")

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def admit(self, key: str, route: str, tenant: str, now: float,
              states: Mapping[str, object]) -> tuple[str | None, str | None]:
        """``(overflow reason or None, key of a reclaimed scope or None)``. The caller
        deletes a reclaimed scope's state; it holds state for ``key`` when admitted."""
        held = self._held.get(key)
        if held is not None:
            held.seen_at = max(held.seen_at, now)
            self._held.move_to_end(key)
            return None, None
        if key in states:  # in the table (restored, or written by a previous owner)
            self._hold(key, route, tenant, now)
            return None, None
        if self._routes[route] >= self.limits.max_per_route:
            return self._overflow("per_route"), None
        if self._tenants[tenant] >= self.limits.max_per_tenant:
            return self._overflow("per_tenant"), None
        reclaimed = None
        if len(self._held) >= self.limits.max_total:
            reclaimed = self._reclaimable(now)
            if reclaimed is None:
                return self._overflow("total"), None
            self.release(reclaimed)
            self.reclaimed += 1
        self._hold(key, route, tenant, now)
        return None, reclaimed

    def _reclaimable(self, now: float) -> str | None:
        """The least recently seen unpinned scope, when idle for ``reclaim_s``."""
        for _ in range(min(RECLAIM_SCAN, len(self._held))):
            key, held = next(iter(self._held.items()))
            if not held.pinned:
                return key if now - held.seen_at >= self.limits.reclaim_s else None
            self._held.move_to_end(key)  # protected: look past it (and not again next time)
        return None

    def expire(self, now: float) -> list[str]:
        """Unpinned scopes unseen for ``ttl_s``, released here; the caller deletes their
        state (a tombstone on the changelog, so a restart does not bring them back)."""
        out: list[str] = []
        for _ in range(len(self._held)):
            key, held = next(iter(self._held.items()))
            if now - held.seen_at < self.limits.ttl_s:
                break  # least recently seen first: the rest are younger
            if held.pinned:
                self._held.move_to_end(key)
                continue
            self.release(key)
            out.append(key)
        self.expired += len(out)
        return out

    def pin(self, key: str, pinned: bool) -> None:
        held = self._held.get(key)
        if held is not None:
            held.pinned = pinned

    def restore(self, scopes: Iterable[tuple[str, str, str, float, bool]]) -> list[str]:
        """Scopes found in the table (after a start or a rebalance): ``(key, route, tenant,
        seen_at, pinned)``, held in the order they were last seen so reclaiming takes the
        oldest. Returns the keys beyond ``max_total`` (oldest unpinned first), released:
        the caller deletes their state, so a restart honours the cap."""
        for key, route, tenant, seen_at, pinned in scopes:
            if key not in self._held:
                self._hold(key, route, tenant, seen_at)
                self._held[key].pinned = pinned
        self._held = OrderedDict(sorted(self._held.items(), key=lambda item: item[1].seen_at))
        excess = len(self._held) - self.limits.max_total
        trimmed = [k for k, h in self._held.items() if not h.pinned][:max(excess, 0)]
        for key in trimmed:
            self.release(key)
        return trimmed

    def release(self, key: str) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            self._routes[held.route] -= 1
            self._tenants[held.tenant] -= 1
            if self._routes[held.route] <= 0:
                del self._routes[held.route]
            if self._tenants[held.tenant] <= 0:
                del self._tenants[held.tenant]

    def _hold(self, key: str, route: str, tenant: str, now: float) -> None:
        self._held[key] = _Held(route, tenant, now)
        self._routes[route] += 1
        self._tenants[tenant] += 1

    def _overflow(self, reason: str) -> str:
        self.overflowed[reason] += 1
        self.overflowed_total += 1
        return reason

    def report(self, now: float) -> Finding | None:
        """One ``cardinality.scope_cap`` finding per ``alert_every_s`` while scopes overflow."""
        if not self.overflowed or now - self._reported_at < self.limits.alert_every_s:
            return None
        counts, self.overflowed = dict(self.overflowed), Counter()
        self._reported_at = now
        limits = self.limits
        return Finding(
            SCOPE_CAP, {"route": OVERFLOW_ROUTE, "model": OVERFLOW_MODEL}, float(sum(counts.values())),
            float(limits.max_total), now, "warning",
            {"overflowed": counts, "held": len(self._held), "max_total": limits.max_total,
             "max_per_route": limits.max_per_route, "max_per_tenant": limits.max_per_tenant,
             "why": "traces of scopes beyond the cap are stored and redacted but update no detector; "
                    "a producer may be sending random route or model names"},
            "ScopeAdmission")


def held_scopes(states: Mapping[str, object], skip: set[str],
                now: float) -> list[tuple[str, str, str, float, bool]]:
    """``(key, route, tenant, seen_at, pinned)`` of every scope state in ``states``. A state
    written before ``seen_at`` was recorded counts as seen now (it is not reclaimed first)."""
    held = []
    for key in list(states):
        state = states.get(key)
        if key in skip or not isinstance(state, Mapping):
            continue
        subject = state.get("subject")
        route = str(subject.get("route", "")) if isinstance(subject, Mapping) else ""
        seen_at = state.get("seen_at")
        held.append((key, route, str(state.get("tenant", "")),
                     float(seen_at) if isinstance(seen_at, int | float) and seen_at else now,
                     bool(state.get("tripped", False))))
    return held
