"""Faust's aiokafka transport with a short consumer fetch wait (URL scheme ``wardenkafka://``).

faust-streaming creates its worker consumer with ``fetch_max_wait_ms=1500``, fixed. aiokafka
keeps one fetch in flight per broker and leaves out of it the partitions that still have
records buffered, so a record arriving on such a partition waits for the in-flight fetch to
come back: up to 1.5 s when the other partitions are quiet. The breaker's signal crosses two
consumers (govern, decide); with the fixed wait its p50 was 267 ms and its p99 0.8-2.4 s on
an otherwise idle machine. A short wait costs idle fetch requests (one per broker per wait
when nothing arrives) and buys latency; ``WARDEN_FETCH_MAX_WAIT_MS`` sets it, and it also
bounds aiokafka's prefetch back-off (below).

It also makes Faust's seek at the end of a rebalance hold for every stream partition
(issue 21, ``Consumer.perform_seek`` and ``seek_to_committed`` below): records it dropped
around a rebalance were otherwise never read again, and the next commit went past them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver

SCHEME = "wardenkafka"
DEFAULT_FETCH_MAX_WAIT_MS = 20


class LowLatencyConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this attribute to its Fetcher when the consumer starts; there is
        # no public way to pass it through Faust (tests/test_state_handoff.py checks it).
        consumer._fetch_max_wait_ms = self._fetch_max_wait_ms
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        # While any partition of a broker has fetched records not yet taken by the
        # application, aiokafka sends that broker no fetch at all for ``prefetch_backoff``
        # (0.1 s, not configurable through AIOKafkaConsumer): with one busy partition, a
        # record on a quiet one waited ~100 ms. Bounded by the fetch wait instead.
        fetcher = getattr(self._consumer, "_fetcher", None)
        if fetcher is not None:
            fetcher._prefetch_backoff = self._fetch_max_wait_ms / 1000

    async def seek_to_committed(self) -> Mapping[Any, int]:
        return await self.call_thread(self._seek_to_committed_or_reset)

    async def _seek_to_committed_or_reset(self) -> Mapping[Any, int]:
        """Faust's "seek stream partitions to committed offsets", for every partition.

        After a rebalance Faust resumes the stream partitions, fetches, and only then
        seeks them to their committed offsets and resumes flow control, which clears
        every agent's buffer: what was fetched in between is thrown away and read again
        from the committed offset. aiokafka's ``seek_to_committed`` seeks only partitions
        whose committed offset is above 0, so a partition the group had not committed
        yet (a worker joins in the first second of traffic) kept the advanced position:
        the records cleared from the buffer (and the batches the rebalance fence of
        streams.state drops to be replayed) were never read, and the next commit went
        past them (issue 21: the two-worker rebalance lost 120-180 leading records of a
        partition; the test waited for them and looked stalled). Such a partition starts
        where a new consumer would (``consumer_auto_offset_reset``, earliest); a replay of
        records its previous owner handled is idempotent (streams.governor, the sinks).
        """
        consumer = self._ensure_consumer()
        committed: Mapping[Any, int] = await consumer.seek_to_committed()
        streams = [tp for tp, offset in committed.items()
                   if not offset and not self.consumer._is_changelog_tp(tp)]
        if not streams:
            return committed
        for tp in streams:
            if committed[tp] == 0:
                consumer.seek(tp, 0)
        unset = [tp for tp in streams if committed[tp] is None]
        reset = str(self.app.conf.consumer_auto_offset_reset).lower()
        if unset and reset == "earliest":
            await consumer.seek_to_beginning(*unset)
        elif unset and reset == "latest":
            await consumer.seek_to_end(*unset)
        return committed

    @property
    def _fetch_max_wait_ms(self) -> int:
        return int(getattr(self.app, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS))


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return LowLatencyConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """Seek the stream partitions to their committed offsets with the fetch loop stopped.

        At the end of a rebalance Faust resumes the stream partitions, seeks them, then
        resumes flow control, which clears every agent's buffer, and then the consumer's
        flow. Its fetch loop kept handing out records fetched before the seek while the
        seek ran: they moved the read offset past the committed one, were cleared with the
        buffers, and their re-read copies were dropped as already read; the next commit
        went past them (issue 21). Stopped here, the loop hands out nothing until Faust
        resumes the flow after clearing the buffers. A seek made with the flow already
        stopped (Faust's own, when records arrive during a rebalance) leaves it stopped.
        """
        if self.flow_active:
            self.stop_flow()
        await super().perform_seek()


class Transport(driver.Transport):
    Consumer = Consumer


TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")


def broker_url(bootstrap: str) -> str:
    """``host:port[,host:port...]`` as a Faust broker URL using this transport."""
    return ";".join(f"{SCHEME}://{server.strip()}" for server in bootstrap.split(",") if server.strip())
