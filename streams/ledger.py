"""The change ledger as every govern worker sees it: the whole ``changes`` topic.

Change events are few and global (a deployment applies to every partition), so each
worker follows the topic from the beginning in a background thread, like a Faust global
table, and the governor drains new events into its ``ChangeLedger`` between batches.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from streams.config import WardenSettings
from streams.records import ChangeEvent


class ChangeFollower:
    def __init__(self, settings: WardenSettings):
        self.topic = settings.topic("changes.v1")
        self._conf = {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"warden-ledger-{time.time_ns()}",
                      "enable.auto.commit": False, "enable.partition.eof": True, **settings.security.confluent()}
        self._pending: deque[ChangeEvent] = deque()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.invalid = 0
        self._thread = threading.Thread(target=self._run, name="change-ledger", daemon=True)

    def start(self, wait_s: float = 60.0) -> ChangeFollower:
        self._thread.start()
        if not self._ready.wait(wait_s):
            raise TimeoutError(f"change ledger topic {self.topic} not loaded within {wait_s} s")
        return self

    def drain(self) -> list[ChangeEvent]:
        out = []
        while self._pending:
            out.append(self._pending.popleft())
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        consumer = Consumer(self._conf)
        try:
            partitions = sorted(consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            waiting = set(partitions)
            if not waiting:
                self._ready.set()
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        waiting.discard(msg.partition())
                        if not waiting:
                            self._ready.set()
                    continue
                try:
                    self._pending.append(ChangeEvent.model_validate_json(msg.value() or b""))
                except ValidationError:
                    self.invalid += 1
        finally:
            consumer.close()
