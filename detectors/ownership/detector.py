"""Behaviour fingerprint of one (route, model) and its change points, owned or not.

The fingerprint is output length, latency, time to first token, error rate, refusal rate,
finish-reason mix, tool-call mix and the completion embedding centroid, each with its own
online change-point test, plus the identity values traces report (provider model version,
system fingerprint, prompt/policy/index/toolset versions, deployment). When a signal moves,
the detector waits ``settle_s`` of event time so that the other signals moved by the same
change and a late ledger event can join, then emits ONE finding and re-learns every
baseline: ``change.owned`` when a ledger event in scope explains it, otherwise
``change.unowned_behaviour`` naming the signals, when, the most likely component and the
owner to page.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from detectors.findings import Finding
from detectors.ownership.attribution import IdentityMix, match_ledger, suspect
from detectors.ownership.changepoint import MeanShiftCusum, RateShiftCusum
from detectors.ownership.config import SEVERITY_RANK, ChangeSettings
from detectors.ownership.ledger import ChangeLedger
from detectors.ownership.mixes import CentroidShift, MixShift
from detectors.ownership.registry import OwnershipRegistry
from detectors.ownership.samples import BehaviourSample

_LOG_SIGNALS = ("output_tokens", "latency", "ttft")
MAX_TENANTS = 16


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class UnownedChangeDetector:
    """Detect behaviour changes of one (route, model) and say who owns them.

    Parameters
    ----------
    route, model
        The key this instance watches (the worker keeps one per partition key).
    config
        ``ChangeSettings``: enabled signals and their tests, ``settle_s``, ``lookback_s``,
        component kinds that can explain a change, severity rules.
    config_version
        Version of the config file, stored in every finding.

    Examples
    --------
    A silent provider update: the system fingerprint and the completion length change at
    t=3000 s with no change event.

    >>> import random
    >>> rng = random.Random(7)
    >>> det = UnownedChangeDetector("faq", "gpt-4o")
    >>> found = None
    >>> for i in range(6000):
    ...     new = i >= 3000
    ...     s = BehaviourSample(at=float(i), route="faq", request_model="gpt-4o",
    ...             system_fingerprint="fp_b" if new else "fp_a",
    ...             output_tokens=int(rng.lognormvariate(5.6 if new else 5.2, 0.5)),
    ...             latency_ms=rng.lognormvariate(7.0, 0.3), finish_reasons=("stop",))
    ...     found = det.update(s, ChangeLedger()) or found
    >>> found.kind, found.evidence["suspect"]["field"], sorted(found.evidence["signals"])
    ('change.unowned_behaviour', 'system_fingerprint', ['output_tokens'])
    """

    def __init__(self, route: str, model: str, config: ChangeSettings | None = None,
                 config_version: str = "") -> None:
        self.route, self.model = route, model
        self.config = config or ChangeSettings()
        self.config_version = config_version
        self.signals: dict[str, Any] = {name: self._new_signal(name) for name in self.config.signals}
        self.identity = IdentityMix(self.config.mean_shift.memory, self.config.identity_fast_samples)
        self.tenants: list[str] = []
        self.pending_since: float | None = None
        self.last_finding: Finding | None = None

    def _new_signal(self, name: str) -> Any:
        cfg = self.config
        if name in ("latency", "ttft"):
            return MeanShiftCusum(cfg.latency_shift)
        if name == "output_tokens":
            return MeanShiftCusum(cfg.mean_shift)
        if name in ("error_rate", "refusal_rate"):
            return RateShiftCusum(cfg.rate_shift)
        if name in ("finish_reasons", "tool_calls"):
            return MixShift(cfg.mix_shift)
        if name == "embedding_centroid":
            return CentroidShift(cfg.centroid_shift)
        raise ValueError(f"ownership.change.signals: unknown signal {name!r}; use any of "
                         "output_tokens, latency, ttft, error_rate, refusal_rate, finish_reasons, "
                         "tool_calls, embedding_centroid")

    @property
    def change_detected(self) -> bool:
        """A signal moved and the finding is waiting for the settle period to end."""
        return self.pending_since is not None

    def update(self, sample: BehaviourSample, ledger: ChangeLedger | None = None,
               registry: OwnershipRegistry | None = None) -> Finding | None:
        """Add one trace; returns the finding when a change point has just been resolved."""
        self.identity.update(sample.identity(), sample.at)
        if sample.tenant and sample.tenant not in self.tenants:
            self.tenants = (self.tenants + [sample.tenant])[-MAX_TENANTS:]
        for name, test in self.signals.items():
            value = self._value(name, sample)
            fired = value is not None and not test.drift_detected and test.update(value, sample.at)
            if fired and self.pending_since is None:
                self.pending_since = sample.at
        return self.advance(sample.at, ledger, registry)

    def advance(self, now: float, ledger: ChangeLedger | None = None,
                registry: OwnershipRegistry | None = None) -> Finding | None:
        """Resolve a pending change point once ``settle_s`` of event time has passed."""
        if self.pending_since is None or now < self.pending_since + self.config.settle_s:
            return None
        finding = self._resolve(ledger, registry)
        for test in self.signals.values():
            test.reset()
        self.identity.rebaseline()
        self.pending_since = None
        self.last_finding = finding
        return finding

    @staticmethod
    def _value(name: str, s: BehaviourSample) -> Any:
        if name == "error_rate":
            return not s.ok
        if not s.ok:
            return None  # an error has no meaningful length, latency or mix
        if name == "output_tokens":
            return math.log1p(max(s.output_tokens, 0))
        if name == "latency":
            return math.log1p(max(s.latency_ms, 0.0))
        if name == "ttft":
            return None if s.ttft_ms is None else math.log1p(max(s.ttft_ms, 0.0))
        if name == "refusal_rate":
            return s.refused
        if name == "finish_reasons":
            return s.finish_reasons[-1].lower() if s.finish_reasons else "<none>"
        if name == "tool_calls":
            names = set(s.tool_names)
            return {n: 1.0 / len(names) for n in names} if names else "<none>"
        return s.embedding  # embedding_centroid

    def _moved(self) -> dict[str, dict[str, Any]]:
        moved = {}
        for name, test in self.signals.items():
            if test.drift_detected:
                info = test.summary()
                if name in _LOG_SIGNALS:
                    info["change_pct"] = round(100.0 * math.expm1(info["after"] - info["before"]), 1)
                    info["unit"] = "log1p(tokens)" if name == "output_tokens" else "log1p(ms)"
                moved[name] = info
        return moved

    def _also_moving(self) -> dict[str, dict[str, Any]]:
        # Slower tests (windows, rare events) rarely fire within ``settle_s``; their partial
        # evidence still tells the on-call what else moved.
        out = {}
        for name, test in self.signals.items():
            info = test.partial() if hasattr(test, "partial") else None
            if info is not None:
                out[name] = info
        return out

    def _resolve(self, ledger: ChangeLedger | None, registry: OwnershipRegistry | None) -> Finding:
        cfg = self.config
        moved = self._moved()
        also = self._also_moving()
        change_at = min(m["changed_at"] for m in moved.values())
        detected_at = min(m["detected_at"] for m in moved.values())
        changed = self.identity.changed(cfg.identity_min_tv)
        match = match_ledger(ledger, self.route, self.model, self.tenants, change_at,
                             change_at - cfg.lookback_s, detected_at + cfg.settle_s,
                             cfg.explaining_kinds, changed, self.identity)
        page = registry.owner_to_page(self.route, model=self.model) if registry else None
        evidence: dict[str, Any] = {
            "signals": moved, "also_moving": also, "identity_changes": changed, "detected_at": detected_at,
            "tenants": list(self.tenants), "config_version": self.config_version,
            "page": page.to_dict() if page else None,
            "registry_version": registry.version if registry else None,
        }
        if match is not None:
            entry, how = match
            evidence.update(matched_event=entry.brief(), match=how, owner=entry.owner)
            evidence["summary"] = (f"{', '.join(sorted(moved))} moved at {_iso(change_at)}; owned by "
                                   f"{entry.owner or '?'} ({entry.component_kind} {entry.component_id} "
                                   f"-> {entry.new_version}, {entry.link or entry.event_id})")
            kind, severity = "change.owned", str(cfg.severity.owned)
        else:
            guess = suspect(changed, list(moved) + list(also), self.route, self.model)
            evidence.update(suspect=guess, owner=page.team if page else None)
            evidence["summary"] = (f"{', '.join(sorted(moved))} moved at {_iso(change_at)} with no "
                                   f"change event; most likely {guess['component_kind']} "
                                   f"{guess['component_id']}: {guess['reason']}")
            counted = list(moved) + (list(also) if cfg.severity.count_also_moving else [])
            kind, severity = "change.unowned_behaviour", self._severity(counted, bool(changed))
        return Finding(kind, {"route": self.route, "model": self.model}, score=float(len(moved)),
                       threshold=1.0, at=change_at, severity=severity, evidence=evidence,
                       detector="UnownedChangeDetector/1")

    def _severity(self, moved: list[str], identity_changed: bool) -> str:
        rules = self.config.severity
        if len(moved) >= rules.critical_if_signals_at_least or set(moved) & set(rules.critical_signals):
            return "critical"
        severity: str = "info" if set(moved) <= set(rules.info_only_signals) else rules.default
        if identity_changed and SEVERITY_RANK[severity] < SEVERITY_RANK[rules.identity_change_at_least]:
            severity = rules.identity_change_at_least
        return severity

    def feeds_breaker(self, finding: Finding, min_severity: str) -> bool:
        """Whether a finding of this detector should open the breaker (unowned, severe enough)."""
        return (finding.kind == "change.unowned_behaviour"
                and SEVERITY_RANK[finding.severity] >= SEVERITY_RANK[min_severity])

    def to_state(self) -> dict[str, Any]:
        return {"v": 1, "route": self.route, "model": self.model,
                "signals": {name: test.to_state() for name, test in self.signals.items()},
                "identity": self.identity.to_state(), "tenants": self.tenants,
                "pending_since": self.pending_since}

    @classmethod
    def from_state(cls, state: dict[str, Any], config: ChangeSettings | None = None,
                   config_version: str = "") -> UnownedChangeDetector:
        det = cls(state["route"], state["model"], config, config_version)
        for name, sig_state in state.get("signals", {}).items():
            if name in det.signals:  # a signal disabled since is dropped; a new one starts fresh
                det.signals[name] = type(det.signals[name]).from_state(
                    sig_state, det.signals[name].config)
        det.identity = IdentityMix.from_state(state.get("identity", {}),
                                              det.config.mean_shift.memory,
                                              det.config.identity_fast_samples)
        det.tenants = list(state.get("tenants", []))
        det.pending_since = state.get("pending_since")
        return det
