"""Versions that appear in traffic with no change event: unowned changes by themselves.

A prompt version, guardrail policy, retrieval index, toolset, provider model version,
system fingerprint or deployment first seen in traces is looked up in the change ledger.
Change events often arrive a little after the first traffic (CI publishes once the deploy
finished), so an unknown version is held for ``grace_s`` of EVENT time (the newest trace
time this watcher has seen, or ``advance(now)``), and reported only if the ledger still
does not know it then. Versions seen during the first ``learn_s`` are the baseline.
"""

from __future__ import annotations

from typing import Any

from detectors.findings import Finding
from detectors.ownership.config import VersionSettings
from detectors.ownership.ledger import ChangeLedger
from detectors.ownership.registry import OwnershipRegistry
from detectors.ownership.samples import IDENTITY_KINDS, BehaviourSample

# Our own changes that legitimately bring a new provider-side identity with them.
_SERVING_KINDS = ("model", "deployment", "routing_config")


class VersionWatcher:
    """Report the first sight of an unregistered (component, version) in traffic.

    Parameters
    ----------
    config
        ``VersionSettings``: watched identity fields and their severities, ``learn_s``,
        ``grace_s``, ``lookback_s``, ``max_versions``.
    learn_until
        End of the baseline period, epoch seconds. ``None``: ``learn_s`` after the first
        trace. A watcher created for a new key long after Warden started should get the
        global value, so a new route does not learn its unregistered versions silently.

    >>> ledger = ChangeLedger()
    >>> w = VersionWatcher(learn_until=100.0)
    >>> s = lambda t, v: BehaviourSample(at=t, route="faq", request_model="m",
    ...                                  prompt_template_id="faq-sys", prompt_template_version=v)
    >>> w.update(s(0.0, "v1"), ledger)        # baseline
    []
    >>> w.update(s(200.0, "v2"), ledger)      # unknown: held for the grace period
    []
    >>> [f.kind for f in w.update(s(200.0 + 601, "v2"), ledger)]
    ['change.unregistered_version']
    """

    def __init__(self, config: VersionSettings | None = None,
                 learn_until: float | None = None) -> None:
        self.config = config or VersionSettings()
        self.learn_until = learn_until
        self.clock = float("-inf")
        self._known: dict[str, float] = {}  # "field|component|version" -> first seen
        self._last: dict[str, str] = {}  # "field|component" -> newest known version
        self._pending: dict[str, dict[str, Any]] = {}

    def update(self, sample: BehaviourSample, ledger: ChangeLedger,
               registry: OwnershipRegistry | None = None) -> list[Finding]:
        """Look at one trace's versions; return findings whose grace period ended."""
        if self.learn_until is None:
            self.learn_until = sample.at + self.config.learn_s
        self.clock = max(self.clock, sample.at)
        for field in self.config.fields:
            version = sample.version_of(field)
            if version is None:
                continue
            cid = sample.component_id(field) or "*"
            key = f"{field}|{cid}|{version}"
            if key in self._known or key in self._pending:
                continue
            if sample.at < self.learn_until or self._explained(
                    field, cid, version, sample.at, sample.route, sample.tenant, ledger):
                self._learn(key, sample.at)
            else:
                self._pending[key] = {"field": field, "component_id": cid, "version": version,
                                      "first_seen": sample.at, "route": sample.route,
                                      "tenant": sample.tenant, "application": sample.application,
                                      "model": sample.model}
        return self._resolve(ledger, registry)

    def advance(self, now: float, ledger: ChangeLedger,
                registry: OwnershipRegistry | None = None) -> list[Finding]:
        """Move event time to ``now`` (idle partitions) and resolve pending versions."""
        self.clock = max(self.clock, now)
        return self._resolve(ledger, registry)

    @property
    def pending(self) -> int:
        """Versions waiting for their grace period to end."""
        return len(self._pending)

    def _learn(self, key: str, at: float) -> None:
        self._known[key] = at
        field, cid, version = key.split("|", 2)
        self._last.pop(f"{field}|{cid}", None)
        self._last[f"{field}|{cid}"] = version
        for table in (self._known, self._last):
            while len(table) > self.config.max_versions:
                table.pop(next(iter(table)))

    def _explained(self, field: str, cid: str, version: str, at: float, route: str,
                   tenant: str, ledger: ChangeLedger) -> bool:
        kind = IDENTITY_KINDS[field]
        if ledger.is_registered(kind, version, None if cid == "*" else cid) is not None:
            return True
        if field not in ("model_version", "system_fingerprint", "deployment", "response_model"):
            return False
        # A serving change of ours in scope around the first sight explains a new
        # provider-side identity (a new deployment serves a new model version).
        events = ledger.in_scope(route, at - self.config.lookback_s, at + self.config.grace_s,
                                 [tenant], _SERVING_KINDS)
        return bool(events)

    def _resolve(self, ledger: ChangeLedger, registry: OwnershipRegistry | None) -> list[Finding]:
        out = []
        for key, info in list(self._pending.items()):
            if self.clock < info["first_seen"] + self.config.grace_s:
                continue
            del self._pending[key]
            if not self._explained(info["field"], info["component_id"], info["version"],
                                   info["first_seen"], info["route"], info["tenant"], ledger):
                out.append(self._finding(info, registry))
            self._learn(key, info["first_seen"])
        return out

    def _finding(self, info: dict[str, Any], registry: OwnershipRegistry | None) -> Finding:
        field, cid = info["field"], info["component_id"]
        kind = IDENTITY_KINDS[field]
        evidence: dict[str, Any] = {
            "field": field, "version": info["version"],
            "previous_version": self._last.get(f"{field}|{cid}"),
            "first_seen": info["first_seen"], "grace_s": self.config.grace_s,
            "tenant": info["tenant"], "model": info["model"],
        }
        if registry is not None:
            owner = registry.owner_of(kind, cid) if cid != "*" else None
            page = registry.owner_to_page(info["route"], info["application"], info["model"])
            evidence["component_owner"] = owner.to_dict() if owner else None
            to_page = owner or page
            evidence["page"] = to_page.to_dict() if to_page else None
            evidence["registry_version"] = registry.version
        return Finding(
            "change.unregistered_version",
            {"route": info["route"], "component_kind": kind, "component_id": cid, "field": field},
            score=1.0, threshold=1.0, at=info["first_seen"],
            severity=self.config.fields.get(field, "warning"), evidence=evidence,
            detector="VersionWatcher/1",
        )

    def to_state(self) -> dict[str, Any]:
        clock = None if self.clock == float("-inf") else self.clock
        return {"v": 1, "learn_until": self.learn_until, "clock": clock,
                "known": self._known, "last": self._last, "pending": self._pending}

    @classmethod
    def from_state(cls, state: dict[str, Any], config: VersionSettings | None = None) -> VersionWatcher:
        watcher = cls(config, state.get("learn_until"))
        clock = state.get("clock")
        watcher.clock = float("-inf") if clock is None else float(clock)
        watcher._known = dict(state.get("known", {}))
        watcher._last = dict(state.get("last", {}))
        watcher._pending = {k: dict(v) for k, v in state.get("pending", {}).items()}
        return watcher
