"""The Faust app: one way through.

    otlp_spans ──ingest_otlp──▶ traces.raw (OpenTelemetry GenAI spans → InferenceTrace v1)
    traces.raw ──govern──▶ traces.redacted ──store_traces──▶ ClickHouse traces
                    │  └──▶ deadletter ─────store_dead_letters──▶ dead_letters
                    └─────▶ findings (keyed by route) ──decide──▶ alerts, breaker
    overrides (operators' commands) ──relay_overrides──▶ findings
    findings / alerts / breaker / changes ──store_*──▶ ClickHouse

``govern`` is the only reader of the raw topic. Sink agents take batches and return
only after ClickHouse holds them, so Faust commits their offsets after the write.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import structlog

from streams.config import WardenSettings
from streams.govern_step import govern_one
from streams.guard.control import OPERATOR_KINDS
from streams.guard.poison import undecidable
from streams.ingest import SourcePosition
from streams.kafka_transport import broker_url
from streams.metrics import METRICS
from streams.query_endpoint import faust_web_options, register_sql_page
from streams.state import CODEC, Commit, OwnedKeys, RebalanceFence, StateTable, ack_all
from streams.wiring import Wiring

log = structlog.get_logger("warden.worker")

GOVERN_BATCH = 500
DECIDE_BATCH = 200
# A batch closes when full or after this wait once its first event is in. Under load the queue
# refills while a batch is handled, so batches stay large; the wait only matters when the
# queue runs dry, and there it is added to the breaker's reaction time (p99 target 100 ms).
GOVERN_WAIT_S = 0.01
DECIDE_WAIT_S = 0.002
DRIFT_BATCH = 256
# Events Faust buffers per agent ahead of it (stream_buffer_maxsize), and the share of that
# buffer past which the drift agent sheds load rather than let the buffer fill.
STREAM_BUFFER = 4096  # Faust's default; every agent buffers up to this (memory during a sink outage)
DRIFT_SHED_AT = 0.5


def create_app(settings: WardenSettings, wiring: Wiring) -> faust.App:
    app = faust.App(
        consumer_group(settings),
        broker=broker_url(settings.kafka_bootstrap),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
        datadir=str(settings.data_dir),
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
        producer_max_request_size=20 * 1024 * 1024,
        consumer_max_fetch_size=20 * 1024 * 1024,
        stream_wait_empty=False,
        stream_buffer_maxsize=STREAM_BUFFER,
        producer_acks=-1,
        producer_compression_type="lz4",
        broker_credentials=wiring.faust_credentials(),
        **faust_web_options(settings),
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms  # type: ignore[attr-defined]
    topic = settings.topic
    raw = app.topic(topic("traces.raw.v1"), key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    redacted = app.topic(topic("traces.redacted.v1"), value_serializer=CODEC, key_serializer="raw")
    findings = app.topic(topic("findings.v1"), value_serializer=CODEC, key_serializer="raw")
    overrides = app.topic(topic("overrides.v1"), value_serializer=CODEC, key_serializer="raw")
    alerts = app.topic(topic("alerts.v1"), value_serializer=CODEC, key_serializer="raw")
    breaker = app.topic(topic("breaker.v1"), value_serializer=CODEC, key_serializer="raw")
    changes = app.topic(topic("changes.v1"), value_serializer=CODEC, key_serializer="raw")
    usage = app.topic(topic("usage.v1"), value_serializer=CODEC, key_serializer="raw", partitions=1)
    dead = app.topic(topic("deadletter.v1"), value_serializer=CODEC, key_serializer="raw")

    governs = settings.role in ("all", "govern")
    drifts = settings.role in ("all", "drift") or (settings.role == "govern" and settings.govern_drift)
    sinks = settings.role in ("all", "sink")
    ingests = settings.role in ("all", "ingest")
    # Commits hand records to the producer by topic name (streams.state.Commit).
    to_redacted, to_findings, to_alerts, to_breaker, to_usage, to_dead = (
        t.get_topic_name() for t in (redacted, findings, alerts, breaker, usage, dead))

    async def send_findings(commit: Commit, found: list[Any]) -> None:
        for finding in found:
            METRICS.findings.labels(finding.kind).inc()
            await commit.send(to_findings, finding.subject.get("route", "").encode(),
                              wiring.finding_record(finding))

    fence = RebalanceFence(app)
    if governs or drifts:
        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _on_revoked(app_: object, revoked: object, **_: object) -> None:
            await fence.revoked()
            wiring.drift.forget()

    if governs:
        # Per-key state, co-partitioned with its source topic (raw UTF-8 keys, murmur2): it
        # survives restarts and follows its partition in a rebalance (streams.state).
        scope_state = StateTable.create(app, "scope-state", settings.partitions, settings.replicated_topic_config())
        route_state = StateTable.create(app, "breaker-state", settings.partitions, settings.replicated_topic_config())
        economics_state = StateTable.create(app, "economics-state", 1, settings.replicated_topic_config())

        @app.agent(raw, concurrency=1)
        async def govern(stream: Any) -> None:
            async for events in event_batches(stream, GOVERN_BATCH, GOVERN_WAIT_S, fence):
                generation, started = fence.generation, time.perf_counter()
                wiring.poll_changes()
                touched: set[str] = set()
                outputs: list[tuple[str, bytes, Any]] = []
                found = []
                newest, received = 0.0, wiring.clock()
                for event in events:
                    msg = event.message
                    key = msg.key.decode("utf-8", "replace") if msg.key else None
                    where = SourcePosition(msg.topic, msg.partition, msg.offset, key)
                    # Never raises: a record it cannot handle comes back as a dead letter.
                    step = govern_one(wiring.governor, event.value, where, scope_state, received=received,
                                      bounds=wiring.bounds, max_output_bytes=settings.max_output_bytes)
                    if step.dead is not None:
                        outputs.append((to_dead, (key or "").encode(), step.dead))
                    trace = step.trace
                    if trace is None:
                        continue
                    if step.overflow is None:  # an overflowed scope has no detector state to save
                        touched.add(trace.partition_key)
                    if step.body:
                        outputs.append((to_redacted, trace.partition_key.encode(), step.body))
                    outputs.append((to_usage, b"usage", wiring.usage_record(trace, (msg.partition, msg.offset),
                                                                            overflow=step.overflow is not None)))
                    found.extend(step.findings)
                    newest = max(newest, trace.timestamp.timestamp())
                found.extend(wiring.governor.advance(newest, touched))
                async with fence.commit(generation, stream, events) as commit:
                    if not commit.ok:
                        # A rebalance began during the batch: the next owner replays it from the
                        # committed offset with the table's state, so this worker's view of
                        # these scopes must neither reach the table nor decide anything.
                        wiring.governor.forget(touched)
                        wiring.governor.drop_removed()  # not deleted: the replay decides again
                        METRICS.batches_fenced.labels("govern").inc()
                        continue
                    states, traffic = wiring.governor.checkpoint(touched)
                    scope_cap = wiring.governor.scope_cap_finding()  # while scopes overflow
                    found.extend([scope_cap] if scope_cap is not None else [])
                    # Findings before the bulk of the outputs: they are what the breaker is
                    # waiting for. Traffic first: a finding is judged against its route's traffic.
                    await send_findings(commit, traffic + found)
                    for key, state in states.items():
                        scope_state[key] = state
                    for key in wiring.governor.take_removed():  # a tombstone: a restart leaves it out
                        if key in scope_state:
                            del scope_state[key]
                    for topic_name, key_, value in outputs:
                        await commit.send(topic_name, key_, value)
                METRICS.traces.inc(len(events))
                METRICS.stage_seconds.labels("govern").observe(time.perf_counter() - started)

        @app.agent(findings, concurrency=1)
        async def decide(stream: Any) -> None:
            async for events in event_batches(stream, DECIDE_BATCH, DECIDE_WAIT_S, fence):
                generation = fence.generation
                async with fence.commit(generation, stream, events) as commit:
                    if not commit.ok:  # nothing was computed yet: the next owner decides these
                        METRICS.batches_fenced.labels("decide").inc()
                        continue
                    for event in events:
                        try:
                            # Only signed findings and operator commands (streams/guard/control.py).
                            record = wiring.admit(event.value)
                            alerts = wiring.alerts_for(record, route_state)
                            signals = wiring.decide(record, route_state)
                        except Exception as exc:  # a bad override (or a bug) must not stop decide
                            msg = event.message
                            where = SourcePosition(msg.topic, msg.partition, msg.offset,
                                                   msg.key.decode("utf-8", "replace") if msg.key else None)
                            letter = undecidable(event.value, exc, where)
                            METRICS.dead_letters.labels(letter["error_kind"]).inc()
                            log.warning("dead_letter", kind=letter["error_kind"], reason=letter["reason"][:300],
                                        partition=msg.partition, offset=msg.offset)
                            await commit.send(to_dead, msg.key or b"", letter)
                            continue
                        for alert in alerts:
                            await commit.send(to_alerts, alert.dedup_key.encode(), alert.model_dump(mode="json"))
                        for signal in signals:
                            await commit.send(to_breaker, signal.target.encode(), wiring.signal_record(signal))
                    for alert in wiring.alert_only_alerts():
                        await commit.send(to_alerts, alert.dedup_key.encode(), alert.model_dump(mode="json"))

        @app.agent(overrides, concurrency=1)
        async def relay_overrides(stream: Any) -> None:
            # Operators may write only this topic (Kafka ACLs, streams/kafka_acls.py); their
            # commands reach decide through the findings topic, keyed by route, unchanged
            # (decide checks the operator's signature). Anything else here is dead-lettered.
            async for events in event_batches(stream, DECIDE_BATCH, DECIDE_WAIT_S, fence):
                async with fence.commit(fence.generation, stream, events) as commit:
                    if not commit.ok:
                        continue
                    for event in events:
                        msg, record = event.message, event.value
                        kind = record.get("kind") if isinstance(record, dict) else None
                        if kind in OPERATOR_KINDS:
                            await commit.send(to_findings, msg.key or b"", record)
                            continue
                        where = SourcePosition(msg.topic, msg.partition, msg.offset,
                                               msg.key.decode("utf-8", "replace") if msg.key else None)
                        letter = undecidable(record, ValueError(f"{kind!r} is not an operator command: "
                                                                "the overrides topic carries only "
                                                                f"{sorted(OPERATOR_KINDS)}"), where)
                        METRICS.dead_letters.labels(letter["error_kind"]).inc()
                        await commit.send(to_dead, msg.key or b"", letter)

        usage_tp: list[Any] = []  # the usage partition last read (one partition)

        async def reseek_usage() -> None:
            # A wait ended with no usage record while rewinding: seek again (a seek whose
            # records were dropped as already read brings no batch, Economics.reseek_due).
            target = wiring.economics.reseek_due(time.monotonic())
            if target is None or not usage_tp:
                return
            await seek_usage(usage_tp[0], target, "economics_reseek")

        async def seek_usage(tp: Any, target: int, event: str, **context: Any) -> bool:
            METRICS.economics_rewinds.inc()
            log.warning(event, partition=tp.partition, seek_to=target, **context)
            try:
                await app.consumer.seek(tp, target)
                return True
            except Exception:  # revoked meanwhile: its next owner loads the state and checks
                log.warning("economics_rewind_failed", partition=tp.partition, exc_info=True)
                return False

        async def admit_usage(events: list[Any]) -> list[Any]:
            # The economics state, not the committed offset, says what is counted: a hole
            # before this batch is read again (streams.economics.Economics.admit).
            admission = wiring.economics.admit([e.message.offset for e in events], economics_state,
                                               time.monotonic())
            tp = events[0].message.tp
            usage_tp[:] = [tp]
            if admission.seek_to is not None and not await seek_usage(
                    tp, admission.seek_to, "economics_rewind", first_offset=events[admission.take].message.offset):
                return []
            if admission.lost:
                METRICS.economics_lost.inc(admission.lost)
                log.error("economics_records_lost", partition=tp.partition, records=admission.lost,
                          reason="no longer in the usage topic (retention)")
            return events[:admission.take]

        @app.agent(usage, concurrency=1)
        async def economics(stream: Any) -> None:
            # Its state (every open agent run) is checkpointed every economics_checkpoint_s,
            # not per batch: written per batch it took 43% of the govern worker's event loop
            # at 300 traces/s and was the breaker's latency tail. Records applied since the
            # last checkpoint are acknowledged with the next one; findings go out per batch
            # (a replay after a crash sends them again, with the same ids).
            pending: list[Any] = []
            pending_generation, saved_at = fence.generation, time.monotonic()
            async for events in event_batches(stream, GOVERN_BATCH, 0.5, fence, tick_s=settings.economics_checkpoint_s):
                generation = fence.generation
                if generation != pending_generation:  # revoked since: the table is the truth
                    pending.clear()
                    wiring.economics.forget()
                    pending_generation = generation
                if events:
                    events = await admit_usage(events)
                else:
                    await reseek_usage()
                due = time.monotonic() - saved_at >= settings.economics_checkpoint_s or len(pending) >= GOVERN_BATCH * 20
                if not events and not (due and pending):
                    continue
                async with fence.commit(generation, stream, events, acks=pending + events if due else []) as commit:
                    if not commit.ok:
                        METRICS.batches_fenced.labels("economics").inc()
                        continue
                    await send_findings(commit, wiring.economics.update(
                        [e.value for e in events], economics_state, checkpoint=due,
                        offsets=[e.message.offset for e in events]))
                if due:
                    pending.clear()
                    saved_at = time.monotonic()
                    if wiring.economics.next_offset is not None:
                        METRICS.economics_checkpoint.set(wiring.economics.next_offset)
                else:
                    pending.extend(events)

        @app.timer(interval=1.0)
        async def breaker_clock() -> None:
            # Cooldowns and override expiries advance with wall time, not with traffic; only
            # for the routes whose findings partition this worker owns (the memory store
            # keeps keys of revoked partitions).
            async with fence.commit(fence.generation, None, []) as commit:
                if not commit.ok:
                    return
                owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == to_findings}
                routes = OwnedKeys(route_state, owned, settings.partitions)
                for signal in wiring.tick(routes):
                    await commit.send(to_breaker, signal.target.encode(), wiring.signal_record(signal))
                for alert in wiring.alert_only_alerts():
                    await commit.send(to_alerts, alert.dedup_key.encode(), alert.model_dump(mode="json"))

    if drifts:
        # Drift runs in governing workers, or in --role drift workers of their own (with
        # WARDEN_GOVERN_DRIFT=false on the governing ones): the encoder then has its own
        # process, cores or GPU, and cannot slow the breaker's latency path.
        drift_state = StateTable.create(app, "drift-state", settings.partitions, settings.replicated_topic_config())

        @app.agent(redacted, concurrency=1)
        async def drift(stream: Any) -> None:
            # Its own agent over the redacted topic: the encoder's cost shows as drift lag,
            # never as redaction or storage lag.
            loop = asyncio.get_running_loop()
            encoder_thread = background_executor("drift", settings.drift_threads, settings.drift_nice)
            async for events in event_batches(stream, DRIFT_BATCH, 1.0, fence):
                generation, started = fence.generation, time.perf_counter()
                buffered = stream.channel.queue.qsize()
                if buffered > STREAM_BUFFER * DRIFT_SHED_AT:
                    # Load shedding: Faust delivers to every agent of a worker from one
                    # loop, so an agent whose buffer is full stalls govern and decide with it
                    # (the breaker's p99 reached 5.8 s). Drift is a statistical sample: skip
                    # this batch unscored, count it, and keep the buffer from filling.
                    async with fence.commit(generation, stream, events) as commit:
                        if commit.ok:
                            METRICS.drift_shed.inc(len(events))
                            log.warning("drift_shedding", traces=len(events), buffered=buffered)
                    continue
                try:
                    found, due = await loop.run_in_executor(encoder_thread, wiring.drift_batch,
                                                            [e.value for e in events], drift_state)
                except Exception:  # a detector bug costs drift evidence, never the pipeline
                    log.exception("drift_batch_failed", traces=len(events))
                    METRICS.findings.labels("drift.error").inc()
                    found, due = [], {}
                async with fence.commit(generation, stream, events) as commit:
                    if not commit.ok:
                        wiring.drift.forget()
                        METRICS.batches_fenced.labels("drift").inc()
                        continue
                    for key, state in due.items():
                        drift_state[key] = state
                    for key in wiring.drift.take_removed():  # a tombstone: a restart leaves it out
                        if key in drift_state:
                            del drift_state[key]
                    await send_findings(commit, found)
                METRICS.stage_seconds.labels("drift").observe(time.perf_counter() - started)

    if ingests:
        from streams.otlp.agent import add_ingest_agent  # OTLP spans → the raw topic (streams/otlp)

        add_ingest_agent(app, settings, fence, raw.get_topic_name(), to_dead)

    if sinks:
        for name, source in (("traces", redacted), ("findings", findings), ("alerts", alerts),
                             ("breaker_events", breaker), ("change_events", changes),
                             ("dead_letters", dead)):
            _sink_agent(app, source, name, settings, wiring)

        if wiring.audit is not None:
            audit = wiring.audit

            @app.timer(interval=max(1.0, settings.audit_checkpoint_interval_s / 2))
            async def audit_checkpoints() -> None:
                # Every chain's tail gets a signed checkpoint within the interval, however
                # quiet (issue 16): a rolled-back or deleted tail is then covered by a
                # signature and linked from the next checkpoint (docs/AUDIT.md).
                try:
                    await asyncio.get_running_loop().run_in_executor(None, audit.checkpoint_due)
                except Exception as exc:  # ClickHouse away: the next tick tries again
                    log.warning("audit_checkpoint_failed", error=str(exc)[:300])

    @app.timer(interval=5.0)
    async def measure_lag() -> None:
        # A metric must never take the worker down: during a rebalance positions are unknown.
        try:
            consumer = app.consumer
            lag: dict[str, int] = {}
            for tp in consumer.assignment():
                committed = getattr(consumer, "_committed_offset", {}).get(tp)  # no public accessor
                highwater = consumer.highwater(tp)
                if committed is None or highwater is None:
                    continue
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - committed)
            for name, value in lag.items():
                METRICS.consumer_lag.labels(name).set(value)
        except Exception:
            log.debug("lag_unavailable", exc_info=True)

    # Analyst SQL: token, vetting, limits and cancellation live in streams.query_endpoint.
    register_sql_page(app, settings, lambda: wiring.store)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"ok": True, "role": settings.role, "dead_letters_stored": wiring.dead_letters_stored})

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(METRICS.render(), content_type="text/plain; version=0.0.4")

    return app


def background_executor(name: str, torch_threads: int, nice: int) -> ThreadPoolExecutor:
    """One low-priority thread for CPU-heavy work that may lag (the drift encoder): on a
    2-core machine an encoder using every core at normal priority pushed the breaker's p99
    from 0.3 s to 5.8 s. Linux schedules threads as tasks, so the thread's own nice value
    applies to it alone; torch's intra-op pool is capped at ``torch_threads``."""

    def lower_priority() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
            log.info("background_priority_unavailable", executor=name)
        # Only when torch is loaded already: importing it here would cost a worker that never
        # encodes ~450 MB. The encoder sets the same limit when it is built (TraceDrift).
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(torch_threads)

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=lower_priority)


def consumer_group(settings: WardenSettings) -> str:
    """Kafka assigns partitions per worker, not per agent, so every worker of a consumer
    group must run the same agents: governing workers (``all``, ``govern``) share
    ``WARDEN_APP_ID``, storing-only workers (``sink``) use ``WARDEN_APP_ID-sink`` and
    drift-only workers (``drift``) ``WARDEN_APP_ID-drift``, OTLP-ingest-only workers (``ingest``)
    ``WARDEN_APP_ID-ingest``. (In one group a ``govern`` worker
    would consume, and commit, findings that only a ``sink`` worker stores.) Do not mix
    ``all`` and ``govern`` workers: scale out with more ``all`` workers, or with ``govern``
    workers plus ``sink`` (and ``drift``) workers."""
    return f"{settings.app_id}-{settings.role}" if settings.role in ("sink", "drift", "ingest") else settings.app_id


def _sink_agent(app: faust.App, source: faust.TopicT, table: str, settings: WardenSettings,
                wiring: Wiring) -> None:
    async def store(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in event_batches(stream, settings.sink_batch_size, settings.sink_batch_seconds):
            started = time.perf_counter()
            batch = [e.value for e in events]
            partitions = [e.message.partition for e in events]
            offsets = [e.message.offset for e in events]
            if not await loop.run_in_executor(None, wiring.write_batch, table, batch, partitions, offsets):
                # Stopping mid-retry: the batch stays unacknowledged and Kafka replays it.
                return
            await ack_all(stream, events)
            METRICS.stage_seconds.labels(f"sink_{table}").observe(time.perf_counter() - started)

    store.__name__ = f"store_{table}"
    store.__qualname__ = store.__name__
    app.agent(source, name=f"store_{table}", concurrency=1)(store)


async def event_batches(stream: Any, max_: int, within_s: float, fence: RebalanceFence | None = None,
                        tick_s: float | None = None) -> AsyncIterator[list[Any]]:
    """Batches of events, each acknowledged by the caller only after it was handled.

    Not Faust's ``take``/``take_events``: they acknowledge a batch in a ``finally`` block
    (so an interrupted batch is committed and lost), and ``take_events`` reads
    ``current_event`` after an await, so an event that arrives while a batch is being
    handled can be replaced by its successor (the fault suite lost offset 207 of every
    partition that way). Here one task iterates a no-ack stream into a bounded queue (its
    backpressure is the consumer's) and batches close when full or ``within_s`` after
    their first event. With a ``fence``, events received before the last revocation are
    dropped: Faust seeks every partition it still owns back to the committed offset after
    a rebalance, so they come again. With ``tick_s``, an empty batch comes after that long
    without events (for work due on time, such as a checkpoint).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=max_)

    def generation() -> int:
        return fence.generation if fence is not None else 0

    async def pump() -> None:
        async for event in stream.noack().events():
            await queue.put((generation(), event))

    task = asyncio.ensure_future(pump())
    try:
        while True:
            try:
                batch = [await asyncio.wait_for(queue.get(), tick_s) if tick_s else await queue.get()]
            except TimeoutError:
                yield []
                continue
            deadline = loop.time() + within_s
            while len(batch) < max_:
                if queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), remaining))
                    except TimeoutError:
                        break
                else:
                    batch.append(queue.get_nowait())
            # After a rebalance, events of partitions this worker no longer owns are dropped
            # unacknowledged: their new owner replays them from the committed offset, and
            # handling them here too would apply them to state twice.
            owned = stream.app.consumer.assignment()
            current = generation()
            events = [event for seen, event in batch if seen == current and event.message.tp in owned]
            if events:
                yield events
    finally:
        task.cancel()
