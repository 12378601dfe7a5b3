"""The breaker over a replayed simulated day, on event time, without Kafka.

``warden replay`` runs the detectors and drops the per-batch traffic summaries
(``breaker.traffic``), which are not findings. The breaker needs them: they feed its
minimum-traffic rule, the capacity cap (how much of a route may be open) and the half-open
probes. :class:`DecidingReplay` keeps them and drives the worker's own
``streams.breaking.BreakerDecider`` with the traffic summaries and the findings of each
batch, in event-time order, ticking its timers at each record's time: a compressed day then
gets the breaker actions it would get over a real day, which the running worker (timers on
wall time) does not give yet.

>>> breaker_action({"route": "r", "model": "m", "start_epoch": 100.0},
...                [{"target": "model=m,route=r", "state": "open", "at": 130.0}])
'open model=m,route=r after 30 s'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from detectors.breaker import parse_target
from detectors.breaker.policy import load_policy
from detectors.findings import Finding
from streams.breaking import BreakerDecider
from streams.replay import Replay, ReplayBatch
from streams.wiring import finding_from_record

EARLY_S = 60.0  # a transition this long before an incident's start still counts as its action


class DecidingReplay:
    """A :class:`~streams.replay.Replay` whose findings and traffic also drive the breaker.

    ``signals`` are the breaker transitions (``BreakerSignal`` dicts), ``alert_only`` the
    trips the policy held back (capacity cap, minimum traffic, override), both in order.
    """

    def __init__(self, replay: Replay):
        self.replay = replay
        self.decider = BreakerDecider(load_policy(replay.config_dir / "breaker-policy.yaml"))
        self.states: dict[str, Any] = {}
        self.signals: list[dict[str, Any]] = []
        self.alert_only: list[dict[str, Any]] = []
        self._traffic: list[Finding] = []
        checkpoint = replay.governor.checkpoint

        def keep_traffic(keys: set[str]) -> tuple[dict[str, dict[str, Any]], list[Finding]]:
            states, traffic = checkpoint(keys)
            self._traffic += traffic
            return states, traffic

        replay.governor.checkpoint = keep_traffic  # type: ignore[method-assign]

    def run(self, lines: Iterable[str | bytes]) -> Iterator[ReplayBatch]:
        """``Replay.run``; the breaker acts on each batch before it is yielded."""
        for batch in self.replay.run(lines):
            self.decide(batch.findings)
            yield batch

    def decide(self, records: Sequence[Mapping[str, Any]]) -> None:
        found = [finding_from_record(r) for r in records]
        pending, self._traffic = self._traffic, []
        for finding in sorted(pending + found, key=lambda f: f.at):
            signals = self.decider.tick(finding.at, self.states)
            signals += self.decider.on_finding(finding, self.states)
            self.signals += [s.model_dump(mode="json") | {"at": s.at.timestamp()} for s in signals]
            self.alert_only += [t.to_dict() for t in self.decider.drain_alert_only()]


def breaker_action(incident: Mapping[str, Any], signals: Sequence[Mapping[str, Any]]) -> str | None:
    """The first breaker transition on the incident's route (and model) from its start on."""
    for signal in signals:
        scope = parse_target(str(signal["target"]))
        if float(signal["at"]) < float(incident["start_epoch"]) - EARLY_S or scope.get("route") != incident["route"]:
            continue
        if incident.get("model") and scope.get("model") not in (None, incident["model"]):
            continue
        delay = max(0.0, float(signal["at"]) - float(incident["start_epoch"]))
        return f"{signal['state']} {signal['target']} after {delay:.0f} s"
    return None
