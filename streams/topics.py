"""Kafka topics: names, partitioning and retention are part of the versioned contract.

Each name carries the major version of the record it holds (``.v1``); a breaking record
change gets a new topic so old and new readers can run side by side. The README's
"Topics" table is generated from ``TOPICS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import WardenSettings

HOUR_MS = 3_600_000
# The breaker topic is small and read whole by every client; usage feeds one economics
# agent whose budgets span routes (see streams/economics.py).
SINGLE_PARTITION = {"breaker.v1", "usage.v1"}


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without prefix
    record: str
    key: str
    compacted: bool
    retention_ms: int  # -1: forever
    purpose: str


def topic_specs(settings: WardenSettings) -> list[TopicSpec]:
    raw_ms = int(settings.raw_retention_hours * HOUR_MS)
    return [
        TopicSpec("traces.raw.v1", "InferenceTrace v1 (JSON bytes)", "route|request_model", False, raw_ms,
                  "what serving publishes; unredacted, short retention, read only by the govern agent"),
        TopicSpec("traces.redacted.v1", "RedactedTrace v1", "route|request_model", False, 7 * 24 * HOUR_MS,
                  "traces after redaction, with redaction findings and policy version"),
        TopicSpec("findings.v1", "Finding v1", "finding_id", False, 30 * 24 * HOUR_MS,
                  "every detector finding, before grouping into alerts"),
        TopicSpec("overrides.v1", "Finding v1 (breaker.override / breaker.release), signed", "route", False,
                  30 * 24 * HOUR_MS, "operators' commands (`warden breaker open|close|release`); the "
                  "only topic operators may write; relayed to findings for decide"),
        TopicSpec("usage.v1", "CostSample v1", "usage", False, 24 * HOUR_MS,
                  "one compact cost record per trace, for budgets, agent runs and cost regressions"),
        TopicSpec("alerts.v1", "Alert v1", "dedup_key", False, 30 * 24 * HOUR_MS,
                  "what SREs subscribe to"),
        TopicSpec("breaker.v1", "BreakerSignal v1", "target", True, -1,
                  "current breaker state per target, compacted; serving's BreakerClient reads it"),
        TopicSpec("changes.v1", "ChangeEvent v1", "component_kind:component_id", False, -1,
                  "the change ledger: deployments, prompt and policy versions, config loads"),
        # No longer than the raw topic: a dead letter's content is redacted only on a
        # best-effort basis (the record it stands for is unreadable by definition).
        TopicSpec("deadletter.v1", "DeadLetter v1", "source key", False, raw_ms,
                  "input that could not be processed: reason, position, size, SHA-256 and "
                  "the content redacted (never the original bytes)"),
    ]


def topic_name(settings: WardenSettings, short: str) -> str:
    return settings.topic(short)


def new_topics(settings: WardenSettings, existing: set[str] | frozenset[str] = frozenset()) -> list[NewTopic]:
    """The topics to create that ``existing`` lacks: partitions, retention, compaction and
    the replication settings (``WARDEN_KAFKA_REPLICATION_FACTOR``, min.insync.replicas)."""
    wanted = []
    for spec in topic_specs(settings):
        name = settings.topic(spec.name)
        if name in existing:
            continue
        config = {"retention.ms": str(spec.retention_ms), **settings.replicated_topic_config()}
        if spec.compacted:
            config.update({"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                           "segment.ms": str(HOUR_MS)})
        partitions = 1 if spec.name in SINGLE_PARTITION else settings.partitions
        wanted.append(NewTopic(name, num_partitions=partitions,
                               replication_factor=settings.kafka_replication_factor, config=config))
    return wanted


def ensure_topics(settings: WardenSettings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics with their partition counts and retention; returns created names."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, **settings.security.confluent()})
    wanted = new_topics(settings, set(admin.list_topics(timeout=timeout_s).topics))
    if not wanted:
        return []
    futures = admin.create_topics(wanted, operation_timeout=timeout_s)
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout_s)
            created.append(name)
        except Exception as exc:  # a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created
