"""``BreakerClient``: serving's local view of the compacted breaker topic.

It reads the topic from the beginning (the compacted log *is* the current state), then
follows it in a background thread. ``allow(target)`` is a dictionary lookup: no network,
no lock on the read path. When the broker cannot be reached the last known state is kept
and ``staleness_s`` grows; past ``stale_after_s`` the configured fail mode applies.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from streams.config import KafkaSecurity
from streams.records import BreakerSignal, BreakerState

FailMode = Literal["last_known", "open", "closed"]


class BreakerClient:
    """Follow breaker signals and answer ``allow(target)`` locally.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers.
    topic
        The breaker topic, by default ``warden.breaker.v1``.
    stale_after_s
        Seconds without contact with the broker after which ``fail_mode`` applies.
    fail_mode
        ``"last_known"`` keeps answering from the last state, ``"open"`` allows all
        traffic (fail open), ``"closed"`` refuses all traffic (fail closed).
    """

    def __init__(self, bootstrap: str, topic: str = "warden.breaker.v1", *,
                 stale_after_s: float = 30.0, fail_mode: FailMode = "last_known",
                 security: KafkaSecurity | None = None, rng: random.Random | None = None):
        self.topic = topic
        self.stale_after_s = stale_after_s
        self.fail_mode: FailMode = fail_mode
        self._states: dict[str, BreakerSignal] = {}
        self._rng = rng or random.Random()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._last_contact = time.monotonic()
        self.updates_seen = 0
        self.invalid_records = 0
        self.on_update: list[Any] = []
        self._conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": f"warden-breaker-client-{id(self)}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
            "socket.keepalive.enable": True,
            "reconnect.backoff.max.ms": 1000,
            **(security or KafkaSecurity()).confluent(),
        }
        self._thread = threading.Thread(target=self._run, name="breaker-client", daemon=True)

    # -- lifecycle -------------------------------------------------------------------
    def start(self, wait_s: float | None = 30.0) -> BreakerClient:
        """Start following; by default block until the compacted history is loaded."""
        self._thread.start()
        if wait_s is not None and not self._ready.wait(wait_s):
            raise TimeoutError(f"breaker topic {self.topic} not loaded within {wait_s} s: "
                               "is Kafka reachable at the configured bootstrap servers?")
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> BreakerClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the read path -----------------------------------------------------------------
    @property
    def staleness_s(self) -> float:
        """Seconds since the broker last answered (0 while connected)."""
        return max(0.0, time.monotonic() - self._last_contact)

    @property
    def stale(self) -> bool:
        return self.staleness_s > self.stale_after_s

    def state(self, target: str) -> BreakerSignal | None:
        """The current record for ``target`` (state, reason, fallback hint), or None."""
        return self._states.get(target)

    def states(self) -> Mapping[str, BreakerSignal]:
        return dict(self._states)

    def allow(self, target: str) -> bool:
        """May a request go to ``target`` now? Half-open lets a share through as probes."""
        if self.fail_mode != "last_known" and self.stale:
            return self.fail_mode == "open"
        signal = self._states.get(target)
        if signal is None or signal.state is BreakerState.closed:
            return True
        if signal.state is BreakerState.open:
            return False
        return self._rng.random() < signal.probe_share

    # -- the follower thread -----------------------------------------------------------
    def _run(self) -> None:
        consumer = Consumer(self._conf)
        try:
            metadata = consumer.list_topics(self.topic, timeout=30)
            partitions = sorted(metadata.topics[self.topic].partitions) or [0]
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            pending_eof = set(partitions)
            last_probe = 0.0
            while not self._stop.is_set():
                msg = consumer.poll(0.05)
                now = time.monotonic()
                if msg is not None:
                    self._last_contact = now
                    err = msg.error()
                    if err is None:
                        self._apply(msg.key(), msg.value())
                    elif err.code() == KafkaError._PARTITION_EOF:
                        pending_eof.discard(msg.partition())
                        if not pending_eof:
                            self._ready.set()
                if now - last_probe > 1.0:
                    last_probe = now
                    self._probe(consumer, partitions[0])
        finally:
            consumer.close()

    def _probe(self, consumer: Consumer, partition: int) -> None:
        # A round trip to the broker proves we are connected even when nothing changes.
        try:
            consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=1.0, cached=False)
            self._last_contact = time.monotonic()
        except Exception:  # unreachable: staleness grows, the last state stays
            pass

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # tombstone: the target was released
            if key:
                self._states.pop(key.decode(), None)
            return
        try:
            signal = BreakerSignal.model_validate_json(value)
        except ValidationError:
            self.invalid_records += 1
            return
        self._states[signal.target] = signal
        self.updates_seen += 1
        for callback in self.on_update:
            callback(signal)
