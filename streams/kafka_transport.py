"""Faust's aiokafka transport with a short consumer fetch wait (URL scheme ``wardenkafka://``).

faust-streaming creates its worker consumer with ``fetch_max_wait_ms=1500``, fixed. aiokafka
keeps one fetch in flight per broker and leaves out of it the partitions that still have
records buffered, so a record arriving on such a partition waits for the in-flight fetch to
come back: up to 1.5 s when the other partitions are quiet. The breaker's signal crosses two
consumers (govern, decide); with the fixed wait its p50 was 267 ms and its p99 0.8-2.4 s on
an otherwise idle machine. A short wait costs idle fetch requests (one per broker per wait
when nothing arrives) and buys latency; ``WARDEN_FETCH_MAX_WAIT_MS`` sets it, and it also
bounds aiokafka's prefetch back-off (below).
"""

from __future__ import annotations

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

    @property
    def _fetch_max_wait_ms(self) -> int:
        return int(getattr(self.app, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS))


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return LowLatencyConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = Consumer


TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")


def broker_url(bootstrap: str) -> str:
    """``host:port[,host:port...]`` as a Faust broker URL using this transport."""
    return ";".join(f"{SCHEME}://{server.strip()}" for server in bootstrap.split(",") if server.strip())
