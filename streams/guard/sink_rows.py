"""A sink batch stored whatever it holds: partition-bounded inserts, refused rows set aside.

An outage (ClickHouse unreachable) keeps the old contract: retry until durable, offsets
move only after the write. A refusal while ClickHouse answers is the batch's fault, and
retrying it would fail the same way forever: the insert is halved until the refused rows
stand alone, and those become content-free dead letters (:mod:`streams.guard.poison`), so
one bad row never blocks its partition again. Batches spanning more partitions than
ClickHouse takes in one insert are split first (:func:`sinks.batching.partition_chunks`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from sinks.batching import partition_chunks
from sinks.clickhouse import ClickHouseStore, SinkError, batch_token
from sinks.tables import TableLayout
from streams.guard.poison import content_free_dead_letter

log = structlog.get_logger("warden.sink")
ID_FIELDS = ("trace_id", "span_id", "finding_id", "signal_id", "alert_id", "event_id")


@dataclass
class StoredBatch:
    durable: bool  # False: stopping before the batch was stored (Kafka replays it)
    kept: list[int] = field(default_factory=list)  # indices of records now in ClickHouse
    dead: list[dict[str, Any]] = field(default_factory=list)  # dead letters for the rest


@dataclass
class _Batch:
    store: ClickHouseStore
    layout: TableLayout
    records: Sequence[Any]
    source_topic: str
    partitions: Sequence[int]
    offsets: Sequence[int]
    should_stop: Callable[[], bool]
    result: StoredBatch


def store_batch(store: ClickHouseStore, layout: TableLayout, records: Sequence[Any], *,
                source_topic: str, partitions: Sequence[int] = (), offsets: Sequence[int] = (),
                max_partitions: int = 50, should_stop: Callable[[], bool] = lambda: False) -> StoredBatch:
    batch = _Batch(store, layout, records, source_topic, partitions, offsets, should_stop, StoredBatch(True))
    rows: list[list[Any]] = []
    keys: list[str] = []
    index: list[int] = []
    for i, record in enumerate(records):
        try:
            rows.append(layout.to_row(record))
            keys.append(layout.key(record))
            index.append(i)
        except Exception as exc:  # a record no row can hold (anyone may write the topic)
            batch.result.dead.append(_dead(batch, i, "sink_unconvertible", exc))
    for chunk in partition_chunks(layout.table, layout.columns, rows, max_partitions):
        if not _insert(batch, [rows[j] for j in chunk], [keys[j] for j in chunk], [index[j] for j in chunk]):
            return StoredBatch(False)
    return batch.result


def _insert(batch: _Batch, rows: list[list[Any]], keys: list[str], index: list[int]) -> bool:
    """Store ``rows`` (records ``index``); False only when stopping first."""
    table, columns = batch.layout.table, batch.layout.columns
    token = batch_token(table, keys)
    for attempt in range(2):
        try:
            batch.store.insert(table, columns, rows, dedup_token=token)
            batch.result.kept.extend(index)
            return True
        except SinkError as exc:
            error = exc
        if not batch.store.reachable():  # an outage: wait for ClickHouse, as before
            if not batch.store.insert_until_durable(table, columns, rows, dedup_token=token,
                                                    should_stop=batch.should_stop):
                return False
            batch.result.kept.extend(index)
            return True
        if len(rows) > 1:  # refused while ClickHouse answers: find the rows it refuses
            half = len(rows) // 2
            return (_insert(batch, rows[:half], keys[:half], index[:half])
                    and _insert(batch, rows[half:], keys[half:], index[half:]))
        if attempt == 0:  # one row: try once more after a pause (a transient refusal)
            time.sleep(batch.store.retry_backoff_s)
    # One row, refused twice while ClickHouse answers: the row is the problem.
    log.warning("sink_row_refused", table=table, error=str(error)[:300])
    batch.result.dead.append(_dead(batch, index[0], "sink_rejected", error))
    return True


def _dead(batch: _Batch, i: int, kind: str, exc: Exception) -> dict[str, Any]:
    record = batch.records[i]
    payload = json.dumps(record, sort_keys=True, default=str).encode()
    fields: Mapping[str, Any] = record if isinstance(record, Mapping) else {}
    ids = {k: fields.get(k) for k in ID_FIELDS if fields.get(k) is not None}
    return content_free_dead_letter(
        kind, f"ClickHouse cannot store this {batch.layout.table} row: {type(exc).__name__}: {str(exc)[:400]}",
        payload, source_topic=batch.source_topic,
        partition=batch.partitions[i] if i < len(batch.partitions) else -1,
        offset=batch.offsets[i] if i < len(batch.offsets) else -1, ids=ids,
    ).model_dump(mode="json")
