"""``TracePublisher``: how a serving layer hands traces to Warden without ever waiting.

``publish()`` serialises the trace and enqueues it in librdkafka's bounded buffer; if
the buffer is full (broker down long enough) the trace is dropped and counted, never
blocking the request path. ``close()`` flushes what is buffered.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from streams.config import KafkaSecurity
from streams.records import InferenceTrace, partition_key


class PublisherStats:
    """Counters a serving layer can export: what was queued, delivered, dropped, failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.queued = 0
        self.delivered = 0
        self.dropped_buffer_full = 0
        self.failed = 0

    def add(self, field: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + n)

    def as_dict(self) -> dict[str, int]:
        return {"queued": self.queued, "delivered": self.delivered,
                "dropped_buffer_full": self.dropped_buffer_full, "failed": self.failed}


class _ClosedProducer:
    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise KafkaException("TracePublisher is closed: create a new one to publish again")

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


class TracePublisher:
    """Publish ``InferenceTrace`` records (or their dicts) to the raw topic.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers, ``host:port[,host:port]``.
    topic
        The raw trace topic, by default ``warden.traces.raw.v1``.
    buffer_messages, buffer_kbytes
        Bound of the in-process buffer; past it ``publish`` drops and counts.
    security
        TLS/SASL settings (``KafkaSecurity``), plaintext when omitted.
    """

    def __init__(self, bootstrap: str, topic: str = "warden.traces.raw.v1", *,
                 buffer_messages: int = 100_000, buffer_kbytes: int = 256 * 1024,
                 linger_ms: float = 5.0, security: KafkaSecurity | None = None,
                 extra: Mapping[str, Any] | None = None):
        self.topic = topic
        self.stats = PublisherStats()
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            # The same partitioner as the Java client and Faust (murmur2), so a
            # (route, model) key lands where the workers' state for it lives.
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": buffer_messages,
            "queue.buffering.max.kbytes": buffer_kbytes,
            "linger.ms": linger_ms,
            "compression.type": "lz4",
            "acks": "all",
            "enable.idempotence": True,
            "message.max.bytes": 20 * 1024 * 1024,
            "message.timeout.ms": 300_000,
        }
        conf.update((security or KafkaSecurity()).confluent())
        conf.update(extra or {})
        self._producer = Producer(conf)

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        self.stats.add("failed" if err is not None else "delivered")

    def publish(self, trace: InferenceTrace | Mapping[str, Any]) -> bool:
        """Enqueue one trace; returns False (and counts) when it had to be dropped."""
        if isinstance(trace, InferenceTrace):
            value = trace.model_dump_json(exclude_none=True).encode()
            key = trace.partition_key
        else:
            value = json.dumps(trace, separators=(",", ":"), default=str).encode()
            key = partition_key(str(trace.get("route", "")), str(trace.get("request_model", "")))
        return self.publish_raw(value, key.encode())

    def publish_raw(self, value: bytes, key: bytes | None = None) -> bool:
        """Enqueue bytes as they are (used by load generation and fault tests)."""
        try:
            self._producer.produce(self.topic, value=value, key=key, on_delivery=self._on_delivery)
        except BufferError:
            self.stats.add("dropped_buffer_full")
            self._producer.poll(0)
            return False
        except KafkaException:
            self.stats.add("failed")
            return False
        self.stats.add("queued")
        # Serve delivery callbacks without waiting: keeps the buffer draining.
        self._producer.poll(0)
        return True

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for buffered traces to be delivered; returns how many are still queued."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 30.0) -> int:
        """Flush, then release the client (its threads stop); returns traces left undelivered."""
        left = self.flush(timeout_s)
        self._producer = _ClosedProducer()  # type: ignore[assignment]
        return left

    def __enter__(self) -> TracePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
