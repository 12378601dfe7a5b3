"""Findings → the records SREs and serving consume: alerts and breaker signals."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from detectors.findings import Finding
from streams.records import Alert, Severity

RUNBOOK_BASE = "docs/RUNBOOKS.md#"

SUMMARIES: dict[str, str] = {
    "error_rate.high": "error rate {score:.0%} over {requests} requests (threshold {threshold:.0%})",
    "error_rate.recovered": "error rate back to {score:.0%} (close threshold {threshold:.0%})",
}


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def summary_for(finding: Finding) -> str:
    template = SUMMARIES.get(finding.kind)
    values: dict[str, Any] = {"score": finding.score, "threshold": finding.threshold, **finding.evidence}
    scope = ", ".join(f"{k}={v}" for k, v in sorted(finding.subject.items()))
    if template:
        try:
            return f"{finding.kind} on {scope}: {template.format(**values)}"
        except (KeyError, ValueError, IndexError):
            pass
    return f"{finding.kind} on {scope}: score {finding.score:.4g} vs threshold {finding.threshold:.4g}"


def alert_for(finding: Finding, *, owner: str = "", oncall: str = "", config_version: str = "") -> Alert:
    """One alert per finding; repeats share ``dedup_key`` so SRE tooling can group them."""
    subject = finding.subject
    dedup_key = "|".join([finding.kind, *(f"{k}={v}" for k, v in sorted(subject.items()))])
    at = _ts(finding.at)
    return Alert(
        alert_id=finding.finding_id,
        kind=finding.kind,
        severity=Severity(finding.severity),
        tenant=subject.get("tenant", ""),
        route=subject.get("route", ""),
        model=subject.get("model", ""),
        summary=summary_for(finding),
        evidence={**dict(finding.evidence), "score": finding.score, "threshold": finding.threshold},
        finding_ids=[finding.finding_id],
        owner=owner,
        oncall=oncall,
        runbook=RUNBOOK_BASE + finding.kind.replace(".", "-"),
        dedup_key=dedup_key,
        first_seen=at,
        last_seen=at,
        config_version=config_version or str(finding.evidence.get("config_version", "")),
    )


def signal_id(target: str, state: str, at: float, finding_ids: list[str]) -> str:
    basis = f"{target}|{state}|{at:.3f}|{','.join(sorted(finding_ids))}"
    return hashlib.sha256(basis.encode()).hexdigest()[:24]


def alert_only_alert(transition: Any) -> Alert:
    """A breaker trip the policy held back (capacity cap, minimum traffic, override)."""
    from detectors.breaker import parse_target

    scope = parse_target(transition.target)
    at = _ts(transition.at)
    return Alert(
        alert_id=transition.transition_id, kind="breaker.held", severity=Severity.warning,
        tenant=scope.get("tenant", ""), route=scope.get("route", ""), model=scope.get("model", ""),
        summary=f"breaker for {transition.target} not moved: {transition.reason}",
        evidence={"rule": transition.rule, "state": transition.to_state, "trip_count": transition.trip_count},
        finding_ids=list(transition.finding_ids), runbook=RUNBOOK_BASE + "breaker-held",
        dedup_key=f"breaker.held|{transition.target}", first_seen=at, last_seen=at,
        config_version=transition.policy_version,
    )
