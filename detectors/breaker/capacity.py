"""What a route is made of, as seen in traffic: its members and their recent request counts.

A *member* is a route's model/deployment pair (``deployment=east,model=gpt-4o``). The
breaker engine uses the inventory for two rules:

* the capacity cap: the share of a route's members that open breakers cover;
* minimum traffic: requests a target saw in the last ``window_s`` seconds.

Counts use the sliding-window counter approximation (current and previous fixed window,
the previous one weighted by how much of it still overlaps the sliding window), so each
member costs four numbers whatever the traffic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from detectors.breaker.targets import CAPACITY_KEYS, covers, parse_target, scope_of, target_key

MAX_MEMBERS_PER_ROUTE = 256


class RouteInventory:
    """Members of every route with last-seen time and a sliding request count.

    >>> inv = RouteInventory(window_s=60)
    >>> for t in range(30):
    ...     inv.observe({"route": "r", "model": "a"}, at=1200.0 + t)
    >>> inv.observe({"route": "r", "model": "b"}, at=1230.0)
    >>> sorted(inv.members("r"))
    ['model=a', 'model=b']
    >>> inv.traffic({"route": "r", "model": "a"}, now=1230.0)
    30.0
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        # route -> member -> [last_seen, window_start, current, previous]
        self._routes: dict[str, dict[str, list[float]]] = {}
        self._parsed: dict[str, dict[str, str]] = {}

    def observe(self, scope: Mapping[str, str], at: float, requests: int = 1) -> None:
        route = scope.get("route")
        if not route:
            return
        member = target_key(scope_of(scope, CAPACITY_KEYS))
        members = self._routes.setdefault(route, {})
        row = members.get(member)
        if row is None:
            if len(members) >= MAX_MEMBERS_PER_ROUTE:
                # Bounded state: forget the member seen longest ago.
                del members[min(members, key=lambda m: members[m][0])]
            start = math.floor(at / self.window_s) * self.window_s
            row = members[member] = [at, start, 0.0, 0.0]
        self._roll(row, at)
        row[0] = max(row[0], at)
        row[2] += requests

    def _roll(self, row: list[float], at: float) -> None:
        start = row[1]
        if at < start + self.window_s:
            return
        new_start = math.floor(at / self.window_s) * self.window_s
        row[3] = row[2] if new_start - start < 2 * self.window_s else 0.0
        row[1], row[2] = new_start, 0.0

    def _estimate(self, row: list[float], now: float) -> float:
        start, cur, prev = row[1], row[2], row[3]
        if now >= start + 2 * self.window_s:
            return 0.0
        if now >= start + self.window_s:
            cur, prev, start = 0.0, cur, start + self.window_s
        overlap = max(0.0, 1.0 - (now - start) / self.window_s)
        return cur + prev * overlap

    def members(self, route: str) -> list[str]:
        return list(self._routes.get(route, {}))

    def member_scope(self, member: str) -> dict[str, str]:
        parsed = self._parsed.get(member)
        if parsed is None:
            parsed = self._parsed[member] = parse_target(member)
        return parsed

    def traffic(self, target_scope: Mapping[str, str], now: float) -> float:
        """Requests in the last ``window_s`` on the route members ``target_scope`` covers
        (over all tenants: members are route-level)."""
        route = target_scope.get("route")
        if not route:
            return 0.0
        part = scope_of(target_scope, CAPACITY_KEYS)
        rows = self._routes.get(route, {})
        return sum(
            self._estimate(row, now)
            for member, row in rows.items()
            if covers(part, self.member_scope(member))
        )

    def open_share(
        self, route: str, open_scopes: Iterable[Mapping[str, str]], now: float
    ) -> tuple[float, int]:
        """``(share, members)``: the share of the route's members covered by any of
        ``open_scopes``. Members implied by the scopes themselves count too, so with no
        traffic seen a single model's breaker covers the whole (known) route."""
        parts = [scope_of(s, CAPACITY_KEYS) for s in open_scopes]
        members = {m: self.member_scope(m) for m in self._routes.get(route, {})}
        for part in parts:
            if part and not any(covers(part, m) for m in members.values()):
                members[target_key(part)] = part
        if not members:
            return 1.0, 0
        covered = sum(1 for m in members.values() if any(covers(p, m) for p in parts))
        return covered / len(members), len(members)

    def prune(self, now: float, ttl_s: float) -> None:
        for route in list(self._routes):
            members = self._routes[route]
            for member in [m for m, row in members.items() if now - row[0] > ttl_s]:
                del members[member]
            if not members:
                del self._routes[route]

    def __len__(self) -> int:
        """Routes with a member seen within the TTL (after :meth:`prune`)."""
        return len(self._routes)

    def to_state(self) -> dict[str, Any]:
        return {r: {m: list(row) for m, row in ms.items()} for r, ms in self._routes.items()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], window_s: float) -> RouteInventory:
        inv = cls(window_s)
        inv._routes = {
            r: {m: [float(x) for x in row] for m, row in ms.items()} for r, ms in state.items()
        }
        return inv
