"""Worker state in Faust tables, kept on the right side of a rebalance.

Two things make per-key state move correctly with its partition:

* **Co-partitioned keys.** A table's changelog partition must be the partition of the
  source record with the same key, or a rebalance hands the new owner a partition whose
  state is in a changelog partition it does not recover. Faust serialises table keys as
  JSON by default (``"route|model"`` with quotes), which the murmur2 partitioner sends to a
  different partition than the raw ``route|model`` key of the source topic. ``StateTable``
  stores keys as their raw UTF-8 bytes, so key, source partition and changelog partition
  agree.
* **A fence around each batch's effects.** With ``stream_wait_empty=False`` (our batches
  hold unacknowledged events by design) Faust does not wait for agents when partitions are
  revoked, so a batch could write state and outputs while its partitions are already being
  handed to another worker, which recovers the table before those writes land and replays
  the batch from the committed offset. ``RebalanceFence`` makes a batch's effects all or
  nothing with respect to a revocation: revocation waits for the commits under way (state,
  outputs, producer flush, acknowledgements) and flushes them before the partitions are
  handed over; a batch that began before a revocation commits nothing, and its events are
  replayed by whoever owns them next.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.partitioner import murmur2
from faust.serializers import codecs


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``: the same in the
    Java client, aiokafka, Faust tables and ``TracePublisher``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class StateTable(MutableMapping[str, Any]):
    """A Faust table seen as a ``str``-keyed mapping whose keys are stored as raw bytes.

    Create the table with ``key_type=bytes`` and ``use_partitioner=True``. In replay and
    tests a plain ``dict`` takes its place.
    """

    def __init__(self, table: Any):
        self.table = table

    @classmethod
    def create(cls, app: Any, name: str, partitions: int,
               topic_config: dict[str, str] | None = None) -> StateTable:
        """A Faust table for per-key state: raw byte keys partitioned like the source topic,
        values in standard JSON (:data:`CODEC`) whatever JSON libraries are installed.
        ``topic_config``: extra settings of its changelog topic (min.insync.replicas)."""
        table = app.Table(name, default=None, key_type=bytes, partitions=partitions, use_partitioner=True,
                          extra_topic_configs=dict(topic_config or {}))
        # Faust fixes "json" (or the value type's codec): the table writes and recovers its
        # changelog with these two.
        table.value_serializer = table.changelog_topic.value_serializer = CODEC
        send_changelog = table.send_changelog

        def tracked(partition: int | None, key: Any, *args: Any, **kwargs: Any) -> Any:
            # The partition is named here, not left to the producer's partitioner (what
            # use_partitioner does): Faust's on_key_del asserts that the changelog record it
            # sent has a partition, so deleting a key (the tombstone a cardinality eviction
            # writes, streams/cardinality.py) failed with use_partitioner. murmur2, as the
            # producer's default partitioner would choose.
            if partition is None and isinstance(key, bytes):
                partition = (murmur2(key) & 0x7FFFFFFF) % partitions  # partition_of, on the bytes
            # Faust queues changelog records in its producer buffer, whose flush() gives up
            # after 0.1 s without progress: a busy loop could acknowledge a batch whose state
            # was not yet in Kafka. Commits wait for these futures instead (Commit.delivered).
            future = send_changelog(partition, key, *args, **kwargs)
            UNCONFIRMED_CHANGELOG.track(future)
            return future

        table.send_changelog = tracked
        return cls(table)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self.table.get(key.encode(), default)

    def __getitem__(self, key: str) -> Any:
        return self.table[key.encode()]

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.encode() in self.table

    def __iter__(self) -> Iterator[str]:
        return iter([k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in self.table])

    def __len__(self) -> int:
        return len(self.table)


class Unconfirmed:
    """Changelog records handed to Faust and not yet acknowledged by the broker."""

    def __init__(self) -> None:
        self._futures: set[asyncio.Future[Any]] = set()

    def track(self, future: asyncio.Future[Any]) -> None:
        self._futures.add(future)
        future.add_done_callback(self._settled)

    def _settled(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._futures.discard(future)  # a failed one stays: every later commit raises it

    async def delivered(self) -> None:
        """Wait for every changelog record written so far; raise the first failure."""
        if self._futures:
            await asyncio.gather(*list(self._futures))

    def __len__(self) -> int:
        return len(self._futures)


UNCONFIRMED_CHANGELOG = Unconfirmed()


class OwnedKeys(MutableMapping[str, Any]):
    """The keys of a ``StateTable`` whose partition this worker owns, for work driven by a
    timer rather than by records (the memory store keeps keys of revoked partitions)."""

    def __init__(self, table: StateTable, owned: set[int], partitions: int):
        self.table, self.owned, self.partitions = table, owned, partitions

    def __iter__(self) -> Iterator[str]:
        return iter([k for k in self.table if partition_of(k, self.partitions) in self.owned])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __getitem__(self, key: str) -> Any:
        return self.table[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key]


class RebalanceFence:
    """Keeps each batch's effects on one side of a partition revocation.

    >>> import asyncio
    >>> class FakeApp:  # what the fence needs from a Faust app
    ...     class consumer:
    ...         @staticmethod
    ...         def assignment(): return {"tp0"}
    ...     class producer:
    ...         @staticmethod
    ...         async def flush(): pass
    >>> fence = RebalanceFence(FakeApp)
    >>> class Event:
    ...     class message: tp = "tp0"
    >>> async def demo():
    ...     started = fence.generation
    ...     await fence.revoked()                      # a rebalance begins mid-batch
    ...     async with fence.commit(started, None, [Event]) as commit:
    ...         return commit.ok
    >>> asyncio.run(demo())
    False
    """

    def __init__(self, app: Any):
        self.app = app
        self.generation = 0
        # Commits run concurrently (agents must not wait on each other: the breaker path is
        # latency-bound); only revocation excludes them.
        self._committing = 0
        self._drained = asyncio.Condition()

    async def revoked(self) -> None:
        """Call from ``on_partitions_revoked``: refuses later commits of batches begun before
        this point, waits for the commits under way and flushes what they produced, so the
        next owner of the partitions recovers it."""
        async with self._drained:
            self.generation += 1
            await self._drained.wait_for(lambda: self._committing == 0)
        await self.app.producer.flush()
        await UNCONFIRMED_CHANGELOG.delivered()

    def owns(self, partitions: set[Any]) -> bool:
        return partitions <= set(self.app.consumer.assignment())

    @asynccontextmanager
    async def commit(self, generation: int, stream: Any, events: Sequence[Any],
                     acks: Sequence[Any] | None = None) -> AsyncIterator[Commit]:
        """``async with fence.commit(batch_generation, stream, events) as commit``: when
        ``commit.ok``, write state and ``await commit.send(...)`` outputs in the block; on
        leaving it the producer is flushed, every send is checked, and only then are the
        events acknowledged (outputs and changelog are in Kafka before an offset can be
        committed; a failed send leaves the batch unacknowledged). When not ``ok`` the batch
        began before a revocation or its partitions moved: write nothing; its events stay
        unacknowledged and are replayed. ``acks``: the events to acknowledge, when not
        ``events`` (an agent that checkpoints on an interval acknowledges with the checkpoint)."""
        # No await between the check and the count: a revocation cannot slip in between.
        ok = generation == self.generation and self.owns({e.message.tp for e in events})
        commit = Commit(self.app.producer, ok)
        if ok:
            self._committing += 1
        try:
            yield commit
            if ok:
                await commit.delivered()
                await ack_all(stream, events if acks is None else acks)
        finally:
            if ok:
                async with self._drained:
                    self._committing -= 1
                    self._drained.notify_all()


class Commit:
    """The outputs of one batch. ``send`` hands a record straight to the producer (Faust's
    per-record ``Topic.send`` machinery cost ~1 ms per record on a 2-core VM, which made the
    govern commit, not the detectors, the breaker's bottleneck)."""

    def __init__(self, producer: Any, ok: bool):
        self.ok = ok
        self._producer = producer
        self._pending: list[Any] = []

    async def send(self, topic: str, key: bytes, value: Any) -> None:
        """``value`` is a record, or bytes already serialized with :func:`dumps` (govern
        measures a record's size before sending it)."""
        body = value if isinstance(value, bytes) else dumps(value)
        self._pending.append(await self._producer.send(topic, key, body, None, None, None))

    async def delivered(self) -> None:
        await self._producer.flush()
        await asyncio.gather(*self._pending)  # raises the first failed send
        await UNCONFIRMED_CHANGELOG.delivered()  # the state written with this batch


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None``, recursively.

    >>> finite({"mean_before": float("nan"), "limits": [1.0, float("-inf")]})
    {'mean_before': None, 'limits': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """Standard JSON (RFC 8259) for every record and state value Warden writes.

    Python's ``json`` writes NaN and infinity as the bare tokens ``NaN``/``Infinity``, which
    other JSON parsers reject, and simplejson (which Faust's own codec picks when it is
    installed) raises on them: a detector's NaN once crashed the drift agent on a machine
    that had simplejson. Non-finite floats are written as ``null``.

    >>> dumps({"score": float("inf"), "n": 3})
    b'{"score":null,"n":3}'
    """
    try:
        return json.dumps(value, separators=(",", ":"), default=str, allow_nan=False).encode()
    except ValueError:  # a NaN or an infinity somewhere (rare): the slower, sanitising pass
        return json.dumps(finite(value), separators=(",", ":"), default=str, allow_nan=False).encode()


class StandardJSON(codecs.Codec):
    """Faust codec ``warden_json``: :func:`dumps` out, the standard library's parser in, the
    same whichever JSON libraries the machine has (Faust's ``json`` codec prefers
    simplejson or orjson when installed, each with its own rules)."""

    def _dumps(self, obj: Any) -> bytes:
        return dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return json.loads(s)


CODEC = "warden_json"
codecs.register(CODEC, StandardJSON())


async def ack_all(stream: Any, events: Sequence[Any]) -> None:
    for event in events:
        await stream.ack(event)
