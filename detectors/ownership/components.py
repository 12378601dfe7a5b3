"""Traces that reference components nobody owns.

One ``ownership.unowned_component`` finding the first time a component without an owner is
seen, then one ``ownership.unowned_component.daily`` finding per UTC day with the number of
traces that referenced it that day (never one finding per trace).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from detectors.findings import Finding
from detectors.ownership.config import ComponentSettings
from detectors.ownership.registry import OwnershipRegistry
from detectors.ownership.samples import BehaviourSample

DAY_S = 86400.0


def _day(at: float) -> int:
    return int(at // DAY_S)


class UnownedComponentTracker:
    """Report components with no owner once, then as a daily count.

    Parameters
    ----------
    config
        ``ComponentSettings``: component kinds checked, severity, how many components are
        remembered (oldest first-sight is forgotten beyond that).

    >>> reg = OwnershipRegistry.from_mapping({"version": "1", "teams": {"t": {}},
    ...                                       "owners": {"route": {"faq": "t"}, "model": {"*": "t"}}})
    >>> tracker = UnownedComponentTracker()
    >>> [f.kind for f in tracker.update(BehaviourSample(at=10.0, route="quiz", request_model="m"), reg)]
    ['ownership.unowned_component']
    >>> tracker.update(BehaviourSample(at=20.0, route="quiz", request_model="m"), reg)
    []
    >>> [(f.kind, f.score) for f in tracker.update(BehaviourSample(at=90000.0, route="quiz", request_model="m"), reg)]
    [('ownership.unowned_component.daily', 2.0)]
    """

    def __init__(self, config: ComponentSettings | None = None) -> None:
        self.config = config or ComponentSettings()
        # "kind|id" -> [first_seen, day, count_that_day]; insertion order = first sight.
        self._seen: dict[str, list[float]] = {}
        self._owned_cache: dict[tuple[str, str, str], bool] = {}

    def update(self, sample: BehaviourSample, registry: OwnershipRegistry) -> list[Finding]:
        """Check the components one trace references; return the findings due now."""
        out: list[Finding] = []
        for kind, cid in sample.components():
            if kind in self.config.kinds and not self._owned(registry, kind, cid):
                finding = self._count(kind, cid, sample.at, registry.version)
                if finding is not None:
                    out.append(finding)
        return out

    def advance(self, now: float, registry_version: str = "") -> list[Finding]:
        """Emit daily counts of days that ended before ``now`` (call it on a timer)."""
        out = []
        for key, rec in self._seen.items():
            if rec[2] > 0 and _day(now) > rec[1]:
                out.append(self._daily(key, rec, registry_version))
                rec[1], rec[2] = float(_day(now)), 0.0
        return out

    def _owned(self, registry: OwnershipRegistry, kind: str, cid: str) -> bool:
        key = (registry.content_hash, kind, cid)
        hit = self._owned_cache.get(key)
        if hit is None:
            if len(self._owned_cache) > 4 * self.config.max_components:
                self._owned_cache.clear()  # registry reloads leave stale keys behind
            hit = self._owned_cache[key] = registry.owner_of(kind, cid) is not None
        return hit

    def _count(self, kind: str, cid: str, at: float, version: str) -> Finding | None:
        key = f"{kind}|{cid}"
        rec = self._seen.get(key)
        if rec is None:
            if len(self._seen) >= self.config.max_components:
                self._seen.pop(next(iter(self._seen)))
            self._seen[key] = [at, float(_day(at)), 1.0]
            return Finding(
                "ownership.unowned_component", {"component_kind": kind, "component_id": cid},
                score=1.0, threshold=1.0, at=at, severity=self.config.severity,
                evidence={"first_seen": at, "registry_version": version,
                          "fix": f"add {kind} {cid!r} under owners.{kind} in owners.yaml"},
                detector="UnownedComponentTracker/1",
            )
        finding = None
        if _day(at) > rec[1] and rec[2] > 0:
            finding = self._daily(key, rec, version)
            rec[1], rec[2] = float(_day(at)), 0.0
        elif _day(at) > rec[1]:
            rec[1] = float(_day(at))
        if _day(at) >= rec[1]:
            rec[2] += 1.0  # late traces of a closed day are not recounted
        return finding

    def _daily(self, key: str, rec: list[float], version: str) -> Finding:
        kind, cid = key.split("|", 1)
        day_start = rec[1] * DAY_S
        return Finding(
            "ownership.unowned_component.daily", {"component_kind": kind, "component_id": cid},
            score=rec[2], threshold=1.0, at=day_start, severity=self.config.severity,
            evidence={"day": datetime.fromtimestamp(day_start, UTC).date().isoformat(),
                      "traces": int(rec[2]), "first_seen": rec[0], "registry_version": version,
                      "unit": "traces that day"},
            detector="UnownedComponentTracker/1",
        )

    def to_state(self) -> dict[str, Any]:
        return {"v": 1, "seen": {k: [round(v[0], 3), int(v[1]), int(v[2])]
                                 for k, v in self._seen.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any],
                   config: ComponentSettings | None = None) -> UnownedComponentTracker:
        tracker = cls(config)
        tracker._seen = {k: [float(x) for x in v] for k, v in state.get("seen", {}).items()}
        return tracker
