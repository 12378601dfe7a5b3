"""State that moves with its partition: co-partitioned table keys, the rebalance fence, and
idempotence of what a replayed batch sends again (no broker needed)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner

from detectors.breaker import BreakerPolicyEngine, load_policy
from detectors.findings import Finding
from streams.app import consumer_group
from streams.config import WardenSettings
from streams.economics import Economics
from streams.governor import Governor
from streams.records import InferenceTrace
from streams.state import UNCONFIRMED_CHANGELOG, OwnedKeys, RebalanceFence, StateTable, partition_of
from tests.pipeline_helpers import CONFIG_DIR, trace_for

KEYS = [f"{route}|{model}" for route in ("support-chat", "checkout-assistant", "code-review", "search-summarize")
        for model in ("gpt-4o-mini", "claude-3-5-haiku")]


def test_state_keys_land_in_the_partition_of_their_source_records() -> None:
    # The regression: Faust's default table key serializer is JSON, and murmur2 of
    # '"route|model"' is another partition than murmur2 of 'route|model'.
    app = faust.App("t-state", broker="memory://")
    raw_keyed = app.Table("raw-keyed", default=None, key_type=bytes, partitions=4, use_partitioner=True)
    json_keyed = app.Table("json-keyed", default=None, partitions=4, use_partitioner=True)
    assert raw_keyed.key_serializer == "raw" and json_keyed.key_serializer == "json"
    partitioner = DefaultPartitioner()
    moved = 0
    for key in KEYS:
        source = partition_of(key, 4)
        assert partitioner(key.encode(), [0, 1, 2, 3], [0, 1, 2, 3]) == source
        moved += partitioner(json.dumps(key).encode(), [0, 1, 2, 3], [0, 1, 2, 3]) != source
    assert moved  # JSON keys would have put some scopes' state on another partition


def test_state_table_speaks_str_and_stores_bytes() -> None:
    backing: dict[bytes, Any] = {}
    table = StateTable(backing)
    table["code-review|gpt-4o-mini"] = {"seq": 1}
    assert backing == {b"code-review|gpt-4o-mini": {"seq": 1}}
    assert table.get("code-review|gpt-4o-mini") == {"seq": 1} and table.get("missing") is None
    assert "code-review|gpt-4o-mini" in table and list(table) == ["code-review|gpt-4o-mini"]


def test_owned_keys_only_yields_keys_of_owned_partitions() -> None:
    table = StateTable({route.encode(): {} for route in ("a", "b", "c", "d", "e", "f")})
    owned = {partition_of("a", 4)}
    view = OwnedKeys(table, owned, 4)
    assert list(view) == [k for k in ("a", "b", "c", "d", "e", "f") if partition_of(k, 4) in owned]
    assert "a" in list(view)


class _App:
    def __init__(self) -> None:
        self.assigned = {"tp0", "tp1"}
        self.flushed = 0
        app = self

        class Consumer:
            @staticmethod
            def assignment() -> set[str]:
                return app.assigned

        class Producer:
            @staticmethod
            async def flush() -> None:
                app.flushed += 1

        self.consumer, self.producer = Consumer, Producer


class _Event:
    def __init__(self, tp: str):
        self.message = type("M", (), {"tp": tp})()


class _Stream:
    def __init__(self) -> None:
        self.acked: list[Any] = []

    async def ack(self, event: Any) -> None:
        self.acked.append(event)


def test_fence_flushes_before_acknowledging_and_refuses_batches_begun_before_a_revocation() -> None:
    app, stream = _App(), _Stream()
    fence = RebalanceFence(app)
    events = [_Event("tp0"), _Event("tp1")]

    async def scenario() -> list[bool]:
        results = []
        async with fence.commit(fence.generation, stream, events) as commit:
            assert app.flushed == 0 and not stream.acked  # nothing acknowledged before the flush
            results.append(commit.ok)
        assert app.flushed == 1 and stream.acked == events
        started = fence.generation
        await fence.revoked()
        async with fence.commit(started, stream, events) as commit:
            results.append(commit.ok)
        app.assigned = {"tp0"}  # tp1 moved away
        async with fence.commit(fence.generation, stream, events) as commit:
            results.append(commit.ok)
        return results

    assert asyncio.run(scenario()) == [True, False, False]
    assert len(stream.acked) == 2  # only the first batch was acknowledged


def test_revocation_waits_for_a_committing_batch() -> None:
    app, stream = _App(), _Stream()
    fence = RebalanceFence(app)
    order: list[str] = []

    async def batch() -> None:
        async with fence.commit(fence.generation, stream, [_Event("tp0")]) as commit:
            assert commit.ok
            await asyncio.sleep(0.05)  # sending outputs
            order.append("batch sent")

    async def scenario() -> None:
        task = asyncio.ensure_future(batch())
        await asyncio.sleep(0.01)
        await fence.revoked()
        order.append("revoked")
        await task

    asyncio.run(scenario())
    assert order == ["batch sent", "revoked"]


def _governor() -> Governor:
    from streams.redaction import load_redactor
    settings = WardenSettings(config_dir=CONFIG_DIR, pseudonym_key="replay-key-0123456789abcdef")
    return Governor.from_settings(settings, load_redactor(settings))


def test_a_replay_spanning_several_batches_re_emits_every_finding_of_the_lost_batch() -> None:
    rng = random.Random(3)
    traces = [InferenceTrace.model_validate(trace_for("r", "m", error=i >= 60, rng=rng)) for i in range(120)]
    states: dict[str, Any] = {}
    first = _governor()
    produced = []
    for offset, trace in enumerate(traces):  # one batch: applied, checkpointed, outputs lost
        produced += first.govern(trace, states, (0, offset)).findings
    saved, _ = first.checkpoint({traces[0].partition_key})
    assert produced
    states = dict(saved)
    # The next owner replays the batch from an older committed offset, in two batches.
    second = _governor()
    again = []
    for chunk in (range(0, 70), range(70, 120)):
        for offset in chunk:
            again += second.govern(traces[offset], states, (0, offset)).findings
        states.update(second.checkpoint({traces[0].partition_key})[0])
    assert [f.finding_id for f in again] == [f.finding_id for f in produced]


def test_the_breaker_acts_once_on_a_finding_delivered_twice() -> None:
    engine = BreakerPolicyEngine(load_policy(CONFIG_DIR / "breaker-policy.yaml"))
    subject = {"route": "checkout", "model": "gpt-4o"}
    engine.on_traffic(subject, 500, 0, 0.0)
    engine.on_traffic({"route": "checkout", "model": "other"}, 500, 0, 0.0)
    trip = Finding("error_rate.high", subject, 0.6, 0.25, 1.0, "critical")
    assert [t.to_state for t in engine.on_finding(trip, 1.0)] == ["open"]
    engine.tick(100.0)  # cooldown over: half-open
    assert engine.state("route=checkout,model=gpt-4o") == "half_open"
    assert engine.on_finding(trip, 100.0) == []  # the redelivered copy does not re-open it


def test_economics_counts_a_usage_record_once_across_a_replay() -> None:
    economics = Economics.from_settings(WardenSettings(config_dir=CONFIG_DIR))
    states: dict[str, Any] = {}
    rng = random.Random(5)
    records = []
    from streams.wiring import Wiring
    for offset in range(20):
        trace = InferenceTrace.model_validate(trace_for("r", "m", error=False, rng=rng))
        records.append(Wiring.usage_record(None, trace, (3, offset)))  # type: ignore[arg-type]
    def stored() -> tuple[str, dict[str, int]]:  # what a restarted worker would load
        fresh = Economics.from_settings(WardenSettings(config_dir=CONFIG_DIR))
        return json.dumps(fresh.governor(states).to_state(), sort_keys=True), fresh._applied

    economics.update(records[:15], states)
    spent, _ = stored()
    economics.update(records[10:15], states)  # a replayed raw batch sends these again
    assert stored() == (spent, {"3": 14})
    economics.update(records[10:20], states)
    assert stored()[1] == {"3": 19}


def test_storing_and_drift_workers_have_their_own_consumer_groups() -> None:
    groups = {role: consumer_group(WardenSettings(role=role)) for role in ("all", "govern", "sink", "drift")}
    assert groups["all"] == groups["govern"]
    assert len({groups["govern"], groups["sink"], groups["drift"]}) == 3


def test_each_role_runs_its_agents() -> None:
    from streams.app import create_app
    from streams.worker import build_wiring

    def agents(**overrides: Any) -> set[str]:
        settings = WardenSettings(config_dir=CONFIG_DIR, pseudonym_key="k" * 32, **overrides)
        app = create_app(settings, build_wiring(settings))
        return {name.rsplit(".", 1)[-1] for name in app.agents}

    # relay_overrides copies operators' commands from their own topic to decide's input.
    governing = {"govern", "decide", "economics", "relay_overrides"}
    assert agents(role="govern") == governing | {"drift"}
    assert agents(role="govern", govern_drift=False) == governing  # --role drift workers run it
    assert agents(role="drift") == {"drift"}


def test_worker_consumers_use_a_short_fetch_wait() -> None:
    import asyncio

    from streams.kafka_transport import LowLatencyConsumerThread, Transport, broker_url

    async def consumer_settings() -> tuple[type, type, int, list[str]]:
        app = faust.App("t-fetch", broker=broker_url("127.0.0.1:1,127.0.0.1:2"))
        app.fetch_max_wait_ms = 7  # type: ignore[attr-defined]
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return (type(app.transport), type(app.consumer._thread), consumer._fetch_max_wait_ms,
                    consumer._client._bootstrap_servers)
        finally:
            await consumer.stop()

    transport, thread, wait_ms, servers = asyncio.run(consumer_settings())
    # faust-streaming fixes 1500 ms; a record on a quiet partition waited for it.
    assert transport is Transport and thread is LowLatencyConsumerThread
    assert wait_ms == 7 and servers == ["127.0.0.1:1", "127.0.0.1:2"]


def test_seeking_to_committed_offsets_rewinds_partitions_the_group_never_committed() -> None:
    """Issue 21: after a rebalance Faust fetches from the stream partitions, then seeks them
    to their committed offsets and clears the agents' buffers. aiokafka seeks only offsets
    above 0, so a partition not yet committed kept the advanced position and the records
    cleared from the buffers were never read (120-180 lost per partition, and the next commit
    went past them). Such a partition starts over where a new consumer would; changelog
    partitions are left to table recovery."""
    from streams.kafka_transport import broker_url

    class FakeConsumer:
        def __init__(self, committed: dict[Any, int | None]):
            self.committed, self.calls = committed, []  # type: ignore[var-annotated]

        async def seek_to_committed(self) -> dict[Any, int | None]:
            return self.committed

        def seek(self, tp: Any, offset: int) -> None:
            self.calls.append(("seek", tp.topic, tp.partition, offset))

        async def seek_to_beginning(self, *tps: Any) -> None:
            self.calls.extend(("beginning", tp.topic, tp.partition) for tp in tps)

        async def seek_to_end(self, *tps: Any) -> None:
            self.calls.extend(("end", tp.topic, tp.partition) for tp in tps)

    async def seeks(reset: str) -> list[tuple[Any, ...]]:
        from aiokafka import TopicPartition

        app = faust.App("t-seek", broker=broker_url("127.0.0.1:1"), consumer_auto_offset_reset=reset)
        app.Table("state", default=None)
        changelog = app.tables["state"].changelog_topic.get_topic_name()
        fake = FakeConsumer({TopicPartition("raw", 0): None, TopicPartition("raw", 1): 0,
                             TopicPartition("raw", 2): 17, TopicPartition(changelog, 0): None})
        thread = app.consumer._thread
        thread._ensure_consumer = lambda: fake
        committed = await thread._seek_to_committed_or_reset()
        assert committed is fake.committed  # what Faust records as committed: unchanged
        return fake.calls

    assert asyncio.run(seeks("earliest")) == [("seek", "raw", 1, 0), ("beginning", "raw", 0)]
    assert asyncio.run(seeks("latest")) == [("seek", "raw", 1, 0), ("end", "raw", 0)]


def test_the_fetch_loop_hands_out_nothing_while_the_stream_partitions_are_seeked() -> None:
    """Issue 21: records fetched before the seek, handed out while it ran, moved the read
    offset past the committed one and were cleared with the agents' buffers. The seek stops
    the consumer's flow; Faust resumes it after clearing the buffers (tables/recovery.py)."""
    from streams.kafka_transport import broker_url

    async def flow_after_seek(active: bool) -> bool:
        app = faust.App("t-seek-flow", broker=broker_url("127.0.0.1:1"))
        consumer = app.consumer

        async def seek_to_committed() -> dict[Any, int]:
            assert not consumer.flow_active  # stopped before the seek, not after
            return {}

        consumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
        consumer.resume_flow() if active else consumer.stop_flow()
        await consumer.perform_seek()
        return bool(consumer.flow_active)

    assert asyncio.run(flow_after_seek(True)) is False
    assert asyncio.run(flow_after_seek(False)) is False  # Faust's own seek: left stopped


def test_a_failed_send_leaves_the_batch_unacknowledged() -> None:
    import pytest

    app, stream = _App(), _Stream()

    async def failing_send(topic: str, key: bytes, value: bytes, *_: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(RuntimeError(f"{topic}: message too large"))
        return future

    app.producer.send = staticmethod(failing_send)  # type: ignore[attr-defined]
    fence = RebalanceFence(app)

    async def scenario() -> None:
        async with fence.commit(fence.generation, stream, [_Event("tp0")]) as commit:
            await commit.send("findings", b"r", {"kind": "x"})

    with pytest.raises(RuntimeError, match="message too large"):
        asyncio.run(scenario())
    assert stream.acked == [] and fence._committing == 0


def test_a_batch_is_acknowledged_only_once_its_state_is_in_the_changelog() -> None:
    """Faust's producer buffer flush gives up after 0.1 s without progress; the commit waits
    for the changelog records themselves (StateTable tracks their futures)."""
    app, stream = _App(), _Stream()
    fence = RebalanceFence(app)

    async def scenario() -> list[Any]:
        changelog = asyncio.get_running_loop().create_future()
        UNCONFIRMED_CHANGELOG.track(changelog)  # what a StateTable write does
        asyncio.get_running_loop().call_later(0.3, changelog.set_result, "offset 7")
        async with fence.commit(fence.generation, stream, [_Event("tp0")]):
            pass
        assert changelog.done() and len(UNCONFIRMED_CHANGELOG) == 0
        return stream.acked

    assert len(asyncio.run(scenario())) == 1


def test_state_and_records_are_standard_json_whatever_json_library_faust_picks() -> None:
    """simplejson, which Faust's own ``json`` codec prefers when installed, refuses NaN: on
    such a machine the scalar drift state (NaN until a first drift) crashed the drift agent
    at every checkpoint, and the stalled agent held the breaker's p99 at seconds."""
    from faust.serializers import codecs

    from detectors.drift import DriftConfig
    from streams.drift_stage import DriftStage, TraceDrift
    from streams.state import CODEC, dumps

    stage = DriftStage(TraceDrift(DriftConfig(), "v1", embeddings=False))
    rng = random.Random(4)
    traces = [InferenceTrace.model_validate(trace_for("r", "m", error=False, rng=rng)) for _ in range(30)]
    _, due = stage.process(traces, {}, 1_000.0)
    assert due
    for state in due.values():
        json.dumps(state, allow_nan=False)  # raises on NaN or infinity, as simplejson does
    table = StateTable.create(faust.App("t-codec"), "scope-state", 4)
    assert table.table.changelog_topic.value_serializer == CODEC
    assert table.table.data.value_serializer == CODEC
    assert codecs.dumps(CODEC, {"x": float("nan"), "y": [float("inf"), 1.5]}) == b'{"x":null,"y":[null,1.5]}'
    assert codecs.loads(CODEC, b'{"a":1}') == {"a": 1}
    assert dumps({"a": 1}) == b'{"a":1}'


def test_the_worker_keeps_the_root_logger_at_its_level() -> None:
    """Faust's terminal spinner set the root logger to DEBUG at WARNING: aiokafka then built
    a record for every debug call (7% of the govern worker's event loop)."""
    import logging

    from streams.worker import faust_worker

    root = logging.getLogger()
    before = root.level, list(root.handlers)
    try:
        worker = faust_worker(faust.App("t-logging"), WardenSettings(log_level="WARNING"))
        worker._setup_logging()
        assert root.level == logging.WARNING
        assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(before[0])
        root.handlers[:] = before[1]
