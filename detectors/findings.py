"""The one thing every detector emits: a small frozen ``Finding``.

Streams turn findings into alerts, breaker signals and ClickHouse rows; detectors never
know about any of those.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector concluded, about what, how strongly, and why.

    Parameters
    ----------
    kind
        Dotted name of what was found, e.g. ``"error_rate.high"``, ``"drift.embedding"``.
    subject
        The scope it is about, e.g. ``{"route": "checkout", "model": "gpt-4o"}``.
    score
        The detector's statistic (units in ``evidence["unit"]`` when not obvious).
    threshold
        The value ``score`` was compared with.
    at
        Event time the finding refers to, seconds since the epoch (UTC).
    severity
        ``"info"``, ``"warning"`` or ``"critical"``.
    evidence
        JSON-serialisable figures that justify it: window sizes, p-values, ids (never
        raw text or personal data).
    detector
        Class name (and version) of the detector that produced it.

    >>> f = Finding("error_rate.high", {"route": "r", "model": "m"}, 0.5, 0.2, at=0.0)
    >>> f.finding_id == Finding("error_rate.high", {"route": "r", "model": "m"}, 0.5, 0.2, at=0.0).finding_id
    True
    """

    kind: str
    subject: Mapping[str, str]
    score: float
    threshold: float
    at: float
    severity: str = "warning"
    evidence: Mapping[str, Any] = field(default_factory=dict)
    detector: str = ""

    @property
    def finding_id(self) -> str:
        """Deterministic id: the same finding replayed after a crash has the same id."""
        basis = json.dumps(
            [self.kind, dict(sorted(self.subject.items())), round(self.at, 3), self.detector],
            sort_keys=True,
        )
        return hashlib.sha256(basis.encode()).hexdigest()[:24]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Inverse of :meth:`to_dict` (``finding_id`` is recomputed, not trusted)."""
        return cls(str(data["kind"]), dict(data.get("subject") or {}), float(data["score"]),
                   float(data["threshold"]), float(data["at"]), str(data.get("severity", "warning")),
                   dict(data.get("evidence") or {}), str(data.get("detector", "")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "finding_id": self.finding_id,
            "kind": self.kind,
            "subject": dict(self.subject),
            "score": float(self.score),
            "threshold": float(self.threshold),
            "at": float(self.at),
            "severity": self.severity,
            "evidence": dict(self.evidence),
            "detector": self.detector,
        }
