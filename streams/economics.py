"""Cost governance in the worker: one ``CostGovernor`` over the ``usage`` topic.

Budgets span routes (a tenant's budget covers every route it calls) and agent runs span
models, so neither fits the (route, model) partitioning of traces. The govern agent
sends one compact usage record per trace to ``usage.v1`` (one partition) and a single
``economics`` agent runs budgets, run aggregation and cost regressions, checkpointing
its state to a Faust table once per batch. One partition carries tens of thousands of
~300-byte records per second, far above what one governing worker produces; past that,
shard ``usage`` by budget scope.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from detectors.cost import CostPolicy, PriceCatalog, load_cost_policy, load_price_catalog
from detectors.cost.governor import CostGovernor
from detectors.cost.values import ChangeEvent as CostChangeEvent
from detectors.findings import Finding
from streams.config import WardenSettings
from streams.records import ChangeEvent
from streams.values import cost_change_event, cost_sample_from_record

STATE_KEY = "economics"


class Economics:
    def __init__(self, catalog: PriceCatalog, policy: CostPolicy):
        self.catalog, self.policy = catalog, policy
        self.events: deque[CostChangeEvent] = deque(maxlen=1000)
        self._seq = -1
        self._governor: CostGovernor | None = None
        self._applied: dict[str, int] = {}  # raw partition -> highest offset counted

    @classmethod
    def from_settings(cls, settings: WardenSettings) -> Economics:
        return cls(load_price_catalog(settings.config_dir / "prices.yaml"),
                   load_cost_policy(settings.config_dir / "budgets.yaml"))

    def add_changes(self, events: Sequence[ChangeEvent]) -> None:
        self.events.extend(cost_change_event(e) for e in events)

    def governor(self, states: Mapping[str, Any]) -> CostGovernor:
        stored = states.get(STATE_KEY)
        if self._governor is not None and (stored is None or stored.get("seq") == self._seq):
            return self._governor
        if stored:
            self._governor = CostGovernor.from_state(stored["governor"], self.catalog, self.policy)
            self._seq = int(stored["seq"])
            self._applied = {str(k): int(v) for k, v in (stored.get("applied") or {}).items()}
        else:
            self._governor, self._seq, self._applied = CostGovernor(self.catalog, self.policy), 0, {}
        return self._governor

    def update(self, records: Sequence[Mapping[str, Any]], states: MutableMapping[str, Any]) -> list[Finding]:
        governor = self.governor(states)
        events = list(self.events)
        found: list[Finding] = []
        for record in records:
            if not self._first_time(record.get("_source")):
                continue  # sent again by a replayed raw batch: already counted
            found += governor.update(cost_sample_from_record(record), events)
        governor.drain_runs()
        self._seq += 1
        states[STATE_KEY] = {"seq": self._seq, "governor": governor.to_state(), "applied": self._applied}
        return found

    def _first_time(self, source: Sequence[int] | None) -> bool:
        # Each raw partition is governed in order, so its usage records arrive in offset
        # order; a replay after a crash or rebalance repeats a prefix of what was applied.
        if not source:
            return True
        partition, offset = str(source[0]), int(source[1])
        if offset <= self._applied.get(partition, -1):
            return False
        self._applied[partition] = offset
        return True
