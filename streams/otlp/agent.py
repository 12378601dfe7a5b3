"""The ingest agent: OTLP exports from the Collector's topics → ``InferenceTrace`` records on
the raw topic, keyed ``route|request_model`` so ``govern`` keeps its per-(route, model)
partitioning. Its own consumer group under ``--role ingest`` (``WARDEN_APP_ID-ingest``).

A batch's traces and dead letters are in Kafka before its offsets are committed
(``RebalanceFence.commit``); spans are marked seen only then, so a redelivered export is
not counted twice while a batch that failed to commit is mapped again.
"""

from __future__ import annotations

import time
from typing import Any

import faust
import structlog
from prometheus_client import Counter

from streams.config import WardenSettings
from streams.guard.poison import content_free_dead_letter
from streams.ingest import SourcePosition
from streams.metrics import METRICS
from streams.otlp.decode import OtlpEncoding, UndecodableOtlp, decode_request
from streams.otlp.mapping import OtlpMapping
from streams.otlp.stage import BatchSeen, IngestResult, SeenSpans, map_request
from streams.records import DeadLetter
from streams.state import RebalanceFence

log = structlog.get_logger("warden.otlp")

INGEST_BATCH = 64  # exports, each of up to thousands of spans
INGEST_WAIT_S = 0.05

OTLP_SPANS = Counter("warden_otlp_spans_total",
                     "OTLP spans read, by outcome: mapped (a trace), skipped (no GenAI attributes, agent "
                     "totals, tool spans folded into their step), rejected (dead letter), duplicate",
                     ["outcome"], registry=METRICS.registry)


def otlp_sources(settings: WardenSettings) -> dict[str, OtlpEncoding]:
    """``{"topic": encoding}`` from ``WARDEN_OTLP_TOPICS`` entries ``name[=encoding]``.

    >>> otlp_sources(WardenSettings(otlp_topics=["otlp_spans", "spans_json=otlp_json"]))
    {'otlp_spans': <OtlpEncoding.auto: 'auto'>, 'spans_json': <OtlpEncoding.otlp_json: 'otlp_json'>}
    """
    sources = {}
    for entry in settings.otlp_topics:
        name, _, encoding = entry.partition("=")
        try:
            sources[name.strip()] = OtlpEncoding(encoding.strip() or "auto")
        except ValueError as exc:
            raise ValueError(f"WARDEN_OTLP_TOPICS entry {entry!r}: encoding must be otlp_proto, otlp_json "
                             "or left out (recognised from the bytes)") from exc
    return sources


def map_message(raw: bytes | None, encoding: OtlpEncoding, mapping: OtlpMapping, seen: SeenSpans | BatchSeen,
                where: SourcePosition) -> tuple[IngestResult, list[DeadLetter]]:
    """One Kafka message: its traces, plus dead letters for what could not be mapped."""
    try:
        result = map_request(decode_request(raw or b"", encoding), mapping, seen)
    except UndecodableOtlp as exc:
        # The bytes may hold prompts: the dead letter keeps the reason, size and SHA-256, not them.
        letter = content_free_dead_letter("otlp_undecodable", str(exc), raw or b"", source_topic=where.topic,
                                          partition=where.partition, offset=where.offset, key=where.key)
        return IngestResult(), [letter]
    return result, [r.dead_letter(where) for r in result.rejected]


def add_ingest_agent(app: faust.App, settings: WardenSettings, fence: RebalanceFence, to_raw: str,
                     to_dead: str) -> None:
    from streams.app import event_batches  # the one batching loop every agent uses

    sources = otlp_sources(settings)
    mapping = OtlpMapping.load(settings.otlp_mapping_path)
    seen = SeenSpans()
    topic = app.topic(*sources, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    if settings.role == "ingest":  # in governing workers, app.py's handler moves the fence
        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _on_revoked(app_: object, revoked: object, **_: object) -> None:
            await fence.revoked()

    @app.agent(topic, name="ingest_otlp", concurrency=1)
    async def ingest_otlp(stream: Any) -> None:
        async for events in event_batches(stream, INGEST_BATCH, INGEST_WAIT_S, fence):
            generation, started = fence.generation, time.perf_counter()
            results, letters = [], []
            batch_seen = BatchSeen(seen)
            for event in events:
                msg = event.message
                key = msg.key.decode("utf-8", "replace") if msg.key else None
                result, dead = map_message(event.value, sources.get(msg.topic, OtlpEncoding.auto), mapping,
                                           batch_seen, SourcePosition(msg.topic, msg.partition, msg.offset, key))
                batch_seen.pending.update(result.keys)
                results.append(result)
                letters.extend(dead)
            async with fence.commit(generation, stream, events) as commit:
                if not commit.ok:
                    METRICS.batches_fenced.labels("ingest_otlp").inc()
                    continue
                for result in results:
                    for trace in result.traces:
                        await commit.send(to_raw, trace.partition_key.encode(),
                                          trace.model_dump(mode="json", exclude_none=True))
                for letter in letters:
                    METRICS.dead_letters.labels(letter.error_kind).inc()
                    await commit.send(to_dead, (letter.key or "").encode(), letter.model_dump(mode="json"))
            for result in results:
                seen.add(result.keys)
                OTLP_SPANS.labels("mapped").inc(len(result.traces))
                OTLP_SPANS.labels("skipped").inc(len(result.skipped))
                OTLP_SPANS.labels("rejected").inc(len(result.rejected))
                OTLP_SPANS.labels("duplicate").inc(result.duplicates)
            if letters:
                log.warning("otlp_dead_letters", count=len(letters), first=letters[0].reason[:300])
            METRICS.stage_seconds.labels("ingest_otlp").observe(time.perf_counter() - started)


def ensure_otlp_topics(settings: WardenSettings, timeout_s: float = 30.0) -> list[str]:
    """Create the OTLP topics if the Collector has not (raw-trace retention, Warden's partitions)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, **settings.security.confluent()})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    retention = str(int(settings.raw_retention_hours * 3_600_000))
    wanted = [NewTopic(name, num_partitions=settings.partitions,
                       replication_factor=settings.kafka_replication_factor,
                       config={"retention.ms": retention, **settings.replicated_topic_config()}) for name in otlp_sources(settings) if name not in existing]
    created = []
    for name, future in (admin.create_topics(wanted, operation_timeout=timeout_s) if wanted else {}).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except Exception as exc:  # a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue
            if "AUTHORIZATION_FAILED" in str(exc):
                # Under Kafka ACLs the Collector's topic is the operator's to create: the
                # ingest agent reads it once it exists, and the worker still starts.
                log.warning("otlp_topic_not_created", topic=name, reason=str(exc)[:300])
                continue
            raise
    return created
