"""Cost governance in the worker: one ``CostGovernor`` over the ``usage`` topic.

Budgets span routes (a tenant's budget covers every route it calls) and agent runs span
models, so neither fits the (route, model) partitioning of traces. The govern agent
sends one compact usage record per trace to ``usage.v1`` (one partition) and a single
``economics`` agent runs budgets, run aggregation and cost regressions, checkpointing
its state to a Faust table incrementally, on an interval (``Economics`` below). One
partition carries tens of thousands of ~300-byte records per second, far above what one
governing worker produces; past that, shard ``usage`` by budget scope.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from detectors.cost import CostPolicy, PriceCatalog, load_cost_policy, load_price_catalog
from detectors.cost.governor import CostGovernor
from detectors.cost.values import ChangeEvent as CostChangeEvent
from detectors.findings import Finding
from streams.config import WardenSettings
from streams.records import ChangeEvent
from streams.state import dumps
from streams.values import cost_change_event, cost_sample_from_record

LEGACY_KEY = "economics"  # one full-state record (before incremental checkpoints)
BASE_KEY = "economics/base"
BASE_CHUNK_PREFIX = "economics/base/"  # + f"{seq:012d}/{i:04d}": open runs of that base
DELTA_PREFIX = "economics/delta/"  # + f"{seq:012d}"
BASE_EVERY = 60  # checkpoints between full bases (5 min at the default 5 s interval)
RUNS_PER_CHUNK = 2000  # ~500 KB of JSON: under Kafka's default 1 MB message limit
RESEEK_EVERY_S = 2.0  # while rewinding, seek again if the expected record has not come
GIVE_UP_AFTER_S = 60.0  # then accept the gap (records deleted by retention), loudly


@dataclass(frozen=True)
class Admission:
    """What to do with a batch of usage records (see :meth:`Economics.admit`): count the
    first ``take``; when ``seek_to`` is set, seek the usage partition there (the records
    after the prefix are dropped unacknowledged and come again); ``lost`` records were given
    up on (no longer in the topic)."""

    take: int
    seek_to: int | None = None
    lost: int = 0


class Economics:
    """The economics agent's logic over a key-value state (a Faust table, a dict in replay).

    State is checkpointed incrementally, so that writing it costs what changed, not every
    open agent run (10,000 open runs are 2.7 MB of JSON, ~50 ms to encode): a *base* every
    ``BASE_EVERY`` checkpoints holds everything (its open runs in chunks under Kafka's
    message size limit, written before the ``economics/base`` record that names them), and
    each checkpoint in between is one *delta* record with the small part of the state and
    the runs touched since the previous one. A delta is one record, so each checkpoint is
    atomic; records of one partition keep their order, so a delta's presence implies its
    base's. Loading takes the base and applies the deltas written after it, in order.

    Each checkpoint also holds the usage offset it counts up to, and that, not Kafka's
    committed offset, decides what is counted: a record at or below it is a redelivery, and
    a first record past it means the consumer's position skipped records the state never
    counted (a committed offset that got ahead of a checkpoint), so the agent seeks back
    (:meth:`admit`). Budgets are money; "at least once, usually" is not good enough.
    """

    def __init__(self, catalog: PriceCatalog, policy: CostPolicy):
        self.catalog, self.policy = catalog, policy
        self.events: deque[CostChangeEvent] = deque(maxlen=1000)
        self._seq = -1
        self._base_seq = -1
        self._governor: CostGovernor | None = None
        self._applied: dict[str, int] = {}  # raw partition -> highest offset counted
        self._next: int | None = None  # the usage offset to count next (None: not known yet)
        self._rewinding: tuple[int, float, float] | None = None  # (to, since, last seek)

    @classmethod
    def from_settings(cls, settings: WardenSettings) -> Economics:
        return cls(load_price_catalog(settings.config_dir / "prices.yaml"),
                   load_cost_policy(settings.config_dir / "budgets.yaml"))

    def add_changes(self, events: Sequence[ChangeEvent]) -> None:
        self.events.extend(cost_change_event(e) for e in events)

    def governor(self, states: Mapping[str, Any]) -> CostGovernor:
        if self._governor is None:
            self._load(states)
        assert self._governor is not None
        return self._governor

    def _load(self, states: Mapping[str, Any]) -> None:
        # Detached copies: the governor must not share objects with the table.
        def read(key: str) -> Any:
            value = states.get(key)
            return _detached(value) if value else None

        base = read(BASE_KEY)
        if base:
            base_runs = [run for i in range(int(base["chunks"]))
                         for run in read(f"{BASE_CHUNK_PREFIX}{int(base['seq']):012d}/{i:04d}")["runs"]]
        else:
            base = read(LEGACY_KEY)
            base_runs = _open_runs(base["governor"]) if base else []
        self._rewinding = None
        if not base:
            self._governor, self._applied = CostGovernor(self.catalog, self.policy), {}
            self._seq = self._base_seq = -1
            self._next = None
            return
        deltas = sorted((read(k) for k in list(states) if k.startswith(DELTA_PREFIX)), key=lambda d: int(d["seq"]))
        deltas = [d for d in deltas if int(d["seq"]) > int(base["seq"])]
        latest = deltas[-1] if deltas else base
        governor = CostGovernor.from_state(latest["governor"], self.catalog, self.policy)
        governor.runs.apply_delta(base_runs)  # the base's open runs, in their order
        for delta in deltas:
            governor.runs.apply_delta(delta["runs"])
        governor.runs.take_delta()  # what was loaded is not a change
        self._governor = governor
        self._seq = int(latest["seq"])
        self._base_seq = int(base["seq"]) if BASE_KEY in states else -1  # legacy: rebase at once
        self._applied = {str(k): int(v) for k, v in (latest.get("applied") or {}).items()}
        self._next = None if latest.get("usage_next") is None else int(latest["usage_next"])

    def admit(self, offsets: Sequence[int], states: Mapping[str, Any], now: float) -> Admission:
        """The longest prefix of a batch (usage-topic offsets, one partition, in order) that
        continues what the state has counted without a hole.

        The usage topic is written only by Warden's own non-transactional producers and never
        compacted, so its offsets are contiguous: a record past the next expected offset
        means records in between were never delivered to this state. Then the agent seeks
        back to the expected offset, again every ``RESEEK_EVERY_S`` while records from
        before the seek drain, and after ``GIVE_UP_AFTER_S`` (the records are gone,
        deleted by retention) it accepts the hole and reports it.

        >>> eco = Economics.__new__(Economics)
        >>> eco._governor, eco._next, eco._rewinding = object(), 10, None
        >>> eco.admit([9, 10, 11, 13, 14], {}, now=0.0)   # 9: a redelivery; 12 is missing
        Admission(take=3, seek_to=12, lost=0)
        """
        self.governor(states)
        expected, take = self._next, 0
        for offset in offsets:
            if expected is not None and offset > expected:
                break
            expected = offset + 1 if expected is None else max(expected, offset + 1)
            take += 1
        if take == len(offsets) or expected is None:
            if take:
                self._rewinding = None
            return Admission(take)
        if self._rewinding is None or self._rewinding[0] != expected:
            self._rewinding = (expected, now, now)
            return Admission(take, seek_to=expected)
        target, since, last_seek = self._rewinding
        if now - since >= GIVE_UP_AFTER_S:
            first_past = offsets[take]
            self._next, self._rewinding = first_past, None
            return Admission(len(offsets), lost=first_past - target)
        if now - last_seek >= RESEEK_EVERY_S:
            self._rewinding = (target, since, now)
            return Admission(take, seek_to=target)
        return Admission(take)

    def reseek_due(self, now: float) -> int | None:
        """While rewinding with nothing arriving: the offset to seek to again, every
        ``RESEEK_EVERY_S`` (None when not due or not rewinding).

        :meth:`admit` seeks again only when a batch comes, but a seek can come to nothing:
        records fetched before it were handed out after it, moved the consumer's read
        offset past the seek, and their re-read copies were then dropped as already read
        (issue 21, the same race as at a rebalance). No batch came after that, and the
        agent counted nothing more (make test-long, 2026-12-08, at load 8). The agent calls
        this when a wait for records ends empty.

        >>> eco = Economics.__new__(Economics)
        >>> eco._rewinding = None
        >>> eco.reseek_due(now=10.0) is None
        True
        >>> eco._rewinding = (12, 0.0, 0.0)
        >>> eco.reseek_due(now=1.0) is None, eco.reseek_due(now=2.5), eco.reseek_due(now=3.0) is None
        (True, 12, True)
        """
        if self._rewinding is None:
            return None
        target, since, last_seek = self._rewinding
        if now - last_seek < RESEEK_EVERY_S:
            return None
        self._rewinding = (target, since, now)
        return target

    @property
    def next_offset(self) -> int | None:
        """The usage offset counted next (what the latest checkpoint holds, after one)."""
        return self._next

    def update(self, records: Sequence[Mapping[str, Any]], states: MutableMapping[str, Any], *,
               checkpoint: bool = True, offsets: Sequence[int] | None = None) -> list[Finding]:
        """Apply usage records; with ``checkpoint`` also write the state to ``states``.

        The worker checkpoints on an interval, not per batch, and acknowledges the records
        in between only with the checkpoint that contains them (a crash replays them onto
        the last checkpoint). ``offsets``: the records' usage-topic offsets, when they come
        from Kafka (after :meth:`admit`): one at or below what is counted is skipped."""
        governor = self.governor(states)
        events = list(self.events)
        found: list[Finding] = []
        for i, record in enumerate(records):
            if offsets is not None:
                if self._next is not None and offsets[i] < self._next:
                    continue  # delivered again: already counted
                self._next = offsets[i] + 1
            if not self._first_time(record.get("_source")):
                continue  # sent again by a replayed raw batch: already counted
            found += governor.update(cost_sample_from_record(record), events)
        governor.drain_runs()
        if checkpoint:
            self.checkpoint(states)
        return found

    def checkpoint(self, states: MutableMapping[str, Any]) -> None:
        governor = self.governor(states)
        self._seq += 1
        delta = governor.runs.take_delta()
        small = governor.to_state(include_open_runs=False)
        if self._base_seq < 0 or self._seq - self._base_seq >= BASE_EVERY:
            self._write_base(states, governor, small)
        else:
            _store(states, f"{DELTA_PREFIX}{self._seq:012d}", {
                "seq": self._seq, "base": self._base_seq, "governor": small,
                "applied": self._applied, "usage_next": self._next, "runs": delta})

    def _write_base(self, states: MutableMapping[str, Any], governor: CostGovernor,
                    small: dict[str, Any]) -> None:
        runs = governor.runs.to_state()["open"]
        chunks = [runs[i:i + RUNS_PER_CHUNK] for i in range(0, len(runs), RUNS_PER_CHUNK)]
        for i, chunk in enumerate(chunks):
            _store(states, f"{BASE_CHUNK_PREFIX}{self._seq:012d}/{i:04d}", {"runs": chunk})
        _store(states, BASE_KEY, {"seq": self._seq, "chunks": len(chunks), "governor": small,
                                  "applied": self._applied, "usage_next": self._next})
        # Only once the new base is written: what it replaces.
        current = f"{BASE_CHUNK_PREFIX}{self._seq:012d}/"
        for key in [k for k in states if k == LEGACY_KEY or k.startswith(DELTA_PREFIX)
                    or (k.startswith(BASE_CHUNK_PREFIX) and not k.startswith(current))]:
            del states[key]
        self._base_seq = self._seq

    def forget(self) -> None:
        """Drop what was applied since the last checkpoint (after a revocation its records
        are replayed by the partition's next owner): reload from the table on next use."""
        self._governor = None

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


def _detached(value: Any) -> Any:
    """A copy sharing nothing with ``value``: a governor's state holds references to its
    detectors' lists and dicts, and a Faust memory store keeps the object it was given, so
    records applied after a checkpoint would otherwise leak into it (and count twice when
    replayed onto it). Through JSON, because that is what the changelog holds."""
    return json.loads(dumps(value))


def _store(states: MutableMapping[str, Any], key: str, value: dict[str, Any]) -> None:
    states[key] = _detached(value)


def _open_runs(governor_state: Mapping[str, Any]) -> list[list[Any]]:
    """Open runs stored inside a full governor state (a legacy single-record checkpoint)."""
    return list(governor_state.get("runs", {}).get("open", []))
