"""Sink batches ClickHouse can take: a bounded number of partitions per insert.

ClickHouse refuses an insert touching more than ``max_partitions_per_insert_block`` (100)
partitions, and retrying the same batch fails the same way forever. Event times come from
producers, so one sink batch can span any number of days (a backfill, a replay, a hostile
producer): :func:`partition_chunks` splits it into inserts of at most ``max_partitions``
partitions each. Materialized views fed by ``traces`` partition by day or month, which a
chunk of day partitions bounds too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

# Each table's PARTITION BY (sinks/migrations): the column and its granularity.
PARTITIONED_BY: dict[str, tuple[str, str]] = {
    "traces": ("timestamp", "day"),
    "findings": ("at", "month"),
    "alerts": ("first_seen", "month"),
    "breaker_events": ("at", "month"),
    "change_events": ("at", "month"),
    "dead_letters": ("received_at", "month"),
}


def partition_id(value: Any, granularity: str) -> str:
    """``toYYYYMMDD``/``toYYYYMM`` of a row's partition column, in UTC like the tables."""
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value
        return utc.strftime("%Y%m%d" if granularity == "day" else "%Y%m")
    return str(value)


def partition_chunks(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                     max_partitions: int) -> list[list[int]]:
    """Row indices per insert, each insert touching at most ``max_partitions`` partitions.

    Deterministic (same rows, same chunks: a replayed batch gets the same dedup tokens);
    rows keep their order within a partition.

    >>> from datetime import UTC, datetime, timedelta
    >>> day0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> rows = [[day0 + timedelta(days=i % 5)] for i in range(10)]
    >>> partition_chunks("traces", ["timestamp"], rows, 2)
    [[0, 5, 1, 6], [2, 7, 3, 8], [4, 9]]
    >>> partition_chunks("traces", ["timestamp"], rows, 100) == [list(range(10))]
    True
    """
    if not rows:
        return []
    spec = PARTITIONED_BY.get(table)
    if spec is None or spec[0] not in columns:
        return [list(range(len(rows)))]
    column, granularity = spec
    at = list(columns).index(column)
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(partition_id(row[at], granularity), []).append(i)
    if len(groups) <= max_partitions:
        return [list(range(len(rows)))]
    ordered = list(groups.values())
    return [[i for group in ordered[start:start + max_partitions] for i in group]
            for start in range(0, len(ordered), max_partitions)]
