"""Alert grouping: repeats share a dedup key, are counted, and are re-sent at most once
per rate-limit interval, so a flapping detector pages once, not per trace.

An alert group lives ``group_window_s`` after its last repeat; the alert id is fixed for
the group (first finding's id), so storage keeps one row per group with the latest count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.records import Alert


@dataclass(frozen=True)
class GroupingPolicy:
    group_window_s: float = 3600.0  # a repeat after this much quiet opens a new group
    rate_limit_s: float = 300.0  # an open group is re-sent (with its count) at most this often
    max_groups: int = 10_000


class AlertGrouper:
    """Per-route grouping state (kept with the route's breaker state in a Faust table).

    >>> from datetime import UTC, datetime
    >>> def alert(t):
    ...     at = datetime.fromtimestamp(t, UTC)
    ...     return Alert(alert_id=f"a{t}", kind="k", severity="warning", summary="s",
    ...                  dedup_key="k|r", first_seen=at, last_seen=at)
    >>> g = AlertGrouper(GroupingPolicy(rate_limit_s=60))
    >>> [a.count if a else None for a in (g.offer(alert(t)) for t in (0, 10, 20, 70, 80))]
    [1, None, None, 4, None]
    """

    def __init__(self, policy: GroupingPolicy | None = None, groups: dict[str, dict[str, Any]] | None = None):
        self.policy = policy or GroupingPolicy()
        self.groups: dict[str, dict[str, Any]] = groups or {}

    def offer(self, alert: Alert) -> Alert | None:
        """The alert to publish for this occurrence, or None when the group absorbs it."""
        at = alert.last_seen.timestamp()
        group = self.groups.get(alert.dedup_key)
        if group is None or at - group["last_seen"] > self.policy.group_window_s:
            self._prune(at)
            self.groups[alert.dedup_key] = {"alert_id": alert.alert_id, "first_seen": at, "last_seen": at,
                                            "count": 1, "sent_at": at}
            return alert
        group["count"] += 1
        group["last_seen"] = max(group["last_seen"], at)
        if at - group["sent_at"] < self.policy.rate_limit_s:
            return None
        group["sent_at"] = at
        return alert.model_copy(update={
            "alert_id": group["alert_id"], "count": group["count"],
            "first_seen": alert.first_seen.fromtimestamp(group["first_seen"], alert.first_seen.tzinfo)})

    def _prune(self, now: float) -> None:
        stale = [k for k, g in self.groups.items() if now - g["last_seen"] > self.policy.group_window_s]
        for key in stale:
            del self.groups[key]
        while len(self.groups) >= self.policy.max_groups:
            del self.groups[min(self.groups, key=lambda k: self.groups[k]["last_seen"])]

    def to_state(self) -> dict[str, dict[str, Any]]:
        return self.groups
