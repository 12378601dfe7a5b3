"""Publishing change events: the Python API CI/CD pipelines (and the worker) use."""

from __future__ import annotations

import getpass

from confluent_kafka import Producer

from streams.config import WardenSettings
from streams.records import ChangeEvent, ComponentKind


class ChangePublisher:
    """Publish ``ChangeEvent`` records to the ledger topic and wait for the broker's ack."""

    def __init__(self, settings: WardenSettings):
        self.topic = settings.topic("changes.v1")
        self._producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
                                   "enable.idempotence": True, **settings.security.confluent()})

    def publish(self, event: ChangeEvent, timeout_s: float = 30.0) -> ChangeEvent:
        errors: list[str] = []
        self._producer.produce(self.topic, key=f"{event.component_kind}:{event.component_id}".encode(),
                               value=event.model_dump_json().encode(),
                               on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
        left = self._producer.flush(timeout_s)
        if left or errors:
            raise RuntimeError(f"change event {event.event_id} not acknowledged by Kafka "
                               f"({errors[0] if errors else 'timed out'}): is the broker reachable?")
        return event


def config_load_event(kind: ComponentKind, component_id: str, version: str, content_hash: str,
                      source: str = "warden-worker") -> ChangeEvent:
    """A versioned file (policy, catalog, registry, detector config) was loaded."""
    return ChangeEvent(component_kind=kind, component_id=component_id, new_version=version,
                       owner="warden", source=source, link=f"sha256:{content_hash}")


def operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"
