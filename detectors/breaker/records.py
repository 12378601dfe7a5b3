"""Breaker transition records and the small per-target state behind them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from detectors.breaker.admission import CLOSED, HALF_OPEN, OPEN

STATES = (CLOSED, OPEN, HALF_OPEN)


@dataclass(frozen=True, slots=True)
class Transition:
    """One breaker state change (or an alert-only record), as published on the compacted
    breaker topic keyed by ``target`` and stored in ClickHouse.

    ``alert_only`` records keep ``from_state == to_state``: a trip the policy did not
    act on (capacity cap, minimum traffic, ``breaker: false`` in the finding, a manual
    override holding the state); ``reason`` says which. Times are epoch seconds.
    ``cooldown_until`` is when an open breaker turns half-open; ``expires_at`` is when a
    manual override ends.
    """

    target: str
    from_state: str
    to_state: str
    reason: str
    finding_ids: tuple[str, ...]
    policy_version: str
    at: float
    probe_share: float = 0.0
    fallback: str | None = None
    operator: str | None = None
    expires_at: float | None = None
    trip_count: int = 0
    alert_only: bool = False
    rule: str = ""
    cooldown_until: float | None = None

    @property
    def transition_id(self) -> str:
        """Deterministic id: replaying the same inputs yields the same id."""
        basis = json.dumps(
            [self.target, self.from_state, self.to_state, round(self.at, 3), self.reason]
        )
        return hashlib.sha256(basis.encode()).hexdigest()[:24]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["finding_ids"] = list(self.finding_ids)
        out["transition_id"] = self.transition_id
        return out


@dataclass(slots=True)
class Override:
    state: str
    reason: str
    operator: str
    at: float
    until: float


@dataclass(slots=True)
class TargetState:
    """Per-target state; :meth:`to_dict` drops defaults so idle targets cost little."""

    state: str = CLOSED
    prev: str = CLOSED
    since: float = 0.0
    reason: str = ""
    finding_ids: list[str] = field(default_factory=list)
    trips: int = 0
    open_until: float | None = None
    probe_ok: int = 0
    probe_fail: int = 0
    # kind -> [[at, finding_id], ...] for rules that need `count` findings `within_s`
    pending: dict[str, list[list[Any]]] = field(default_factory=dict)
    override: Override | None = None
    alert_key: str = ""
    alert_at: float | None = None
    # Ids of the last findings acted on: a finding delivered twice (at-least-once
    # delivery, a replayed batch) must not trip the breaker twice.
    seen: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        default = TargetState()
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                out[f.name] = asdict(value) if isinstance(value, Override) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetState:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if kwargs.get("override") is not None:
            kwargs["override"] = Override(**kwargs["override"])
        kwargs["finding_ids"] = list(kwargs.get("finding_ids", []))
        kwargs["pending"] = {k: [list(p) for p in v] for k, v in kwargs.get("pending", {}).items()}
        st = cls(**kwargs)
        if st.state not in STATES:
            raise ValueError(f"breaker state {st.state!r} unknown; expected one of {STATES}")
        return st
