"""Findings against a truth file: which incident was caught, by what, how fast, and what
else was raised. Used by ``warden sim score`` (after ``warden replay``) and the realistic-day tests.

A finding catches an incident when its kind is one of the incident's ``expected_kinds``,
its subject's route is the incident's route (and its model, when the incident names one
and the finding has one), and it is at most ``EARLY_S`` before the start. A false alarm is
a warning or critical finding on a stable route, or on an incident's route before its start,
after the first ``settle_s`` of the stream; notices never count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

EARLY_S = 60.0
LOUD = ("warning", "critical")


@dataclass
class IncidentResult:
    incident: Mapping[str, Any]
    finding: Mapping[str, Any] | None = None
    forbidden: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def caught(self) -> bool:
        """Found within its bound; the negative control is "caught" when nothing forbidden fired."""
        if not self.incident["expected_kinds"]:
            return not self.forbidden
        return self.finding is not None and self.delay_s is not None and self.delay_s <= self.incident["max_delay_s"]

    @property
    def delay_s(self) -> float | None:
        if self.finding is None:
            return None
        return max(0.0, seen_at(self.finding) - float(self.incident["start_epoch"]))


@dataclass
class Score:
    incidents: list[IncidentResult]
    false_alarms: list[Mapping[str, Any]]
    eligible_traces: int
    findings: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def all_caught(self) -> bool:
        return all(r.caught for r in self.incidents)

    @property
    def false_alarms_per_100k(self) -> float:
        return 1e5 * len(self.false_alarms) / max(1, self.eligible_traces)

    def false_alarms_by_kind(self) -> Counter[str]:
        """``kind@route`` of each false alarm, counted."""
        return Counter(f"{f['kind']}@{(f.get('subject') or {}).get('route', '')}" for f in self.false_alarms)

    def others(self) -> Counter[tuple[str, str, str]]:
        """(kind, severity, route) of warning and critical findings that caught no incident."""
        caught = {id(r.finding) for r in self.incidents if r.finding is not None}
        return Counter((f["kind"], f["severity"], str((f.get("subject") or {}).get("route", "")))
                       for f in self.findings if id(f) not in caught and f.get("severity") in LOUD)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: per incident its catch (kind, delay, driver), and the false alarms."""
        return {
            "all_caught": self.all_caught,
            "incidents": [{"id": r.incident["id"], "route": r.incident["route"], "caught": r.caught,
                           "finding": None if r.finding is None else r.finding["kind"],
                           "delay_s": r.delay_s, "driver": None if r.finding is None else driver(r.finding),
                           "forbidden": [f["kind"] for f in r.forbidden]} for r in self.incidents],
            "false_alarms": len(self.false_alarms), "false_alarms_per_100k": round(self.false_alarms_per_100k, 1),
            "false_alarms_by_kind": dict(self.false_alarms_by_kind()), "eligible_traces": self.eligible_traces,
        }


def driver(finding: Mapping[str, Any]) -> str:
    """What a finding says caused it (a cost driver, the changed fields, the moved signals):
    the line an on-call reads first."""
    ev = finding.get("evidence") or {}
    for key in ("driver", "drivers", "changed", "fields", "signal", "signals", "entities", "rule", "budget_id"):
        if ev.get(key):
            value = ev[key]
            if isinstance(value, dict):
                return ", ".join(map(str, value))
            return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return ""


def seen_at(finding: Mapping[str, Any]) -> float:
    """When the finding was raised (event time): ``evidence.detected_at`` where the detector
    dates its finding back to the estimated change point (``at``), else ``at``. Delays and
    false alarms are judged by when an on-call could have known."""
    detected = (finding.get("evidence") or {}).get("detected_at")
    return float(detected) if isinstance(detected, int | float) else float(finding["at"])


def _matches(finding: Mapping[str, Any], incident: Mapping[str, Any]) -> bool:
    subject = finding.get("subject") or {}
    if subject.get("route") != incident["route"]:
        return False
    model = incident.get("model")
    return not (model and subject.get("model") and subject["model"] != model)


def score(truth: Mapping[str, Any], findings: Iterable[Mapping[str, Any]]) -> Score:
    found = sorted(findings, key=seen_at)
    results = []
    for inc in truth["incidents"]:
        result = IncidentResult(inc)
        begin = float(inc["start_epoch"]) - EARLY_S
        for f in found:
            if seen_at(f) < begin or not _matches(f, inc):
                continue
            if f["kind"] in inc["expected_kinds"] and result.finding is None:
                result.finding = f
            if f["kind"] in inc.get("forbidden_kinds", []) and f.get("severity") in LOUD:
                result.forbidden.append(f)
        results.append(result)
    settle = float(truth["stream_start_epoch"]) + float(truth["false_alarm_rules"]["settle_s"])
    starts: dict[str, float] = {}
    for inc in truth["incidents"]:
        starts[inc["route"]] = min(starts.get(inc["route"], float("inf")), float(inc["start_epoch"]) - EARLY_S)
    false_alarms = [f for f in found if f.get("severity") in LOUD and seen_at(f) >= settle
                    and seen_at(f) < starts.get((f.get("subject") or {}).get("route", ""), float("inf"))]
    span = float(truth["stream_end_epoch"]) - float(truth["stream_start_epoch"])
    eligible = int(truth["traces"] * max(0.0, 1 - float(truth["false_alarm_rules"]["settle_s"]) / max(1.0, span)))
    return Score(results, false_alarms, eligible, found)
