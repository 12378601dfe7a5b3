"""Issue 21, item 1: a replicated Kafka cluster. Three KRaft nodes on loopback
(deploy/kafka/kafka.sh cluster-up), every topic with three replicas and
min.insync.replicas=2, producers with acks=all; while traffic flows, kill -9 the broker
leading the raw topic, bring it back, then kill -9 another: nothing lost, nothing stored
twice, breaker signals still reach serving, the worker's lag back to zero.

Three brokers and a worker are more than ``make test``'s budget: these run in ``make test-long``
(the issue 26 split). Replication settings themselves are checked in ``make test``
(tests/test_kafka_replication_settings.py)."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from detectors.breaker import target_key
from streams.breaker_client import BreakerClient
from tests.infra import FAULT_FIGURES, LocalKafkaCluster, free_port_block
from tests.pipeline_helpers import (
    fast_config,
    metric,
    publish_in_background,
    publisher,
    stored_ids,
    trace_for,
    traces,
    wait_for,
)
from tests.scale import volume
from tests.worker_proc import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]



def _partitions(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]]:
    """partition -> (leader broker, in-sync replicas)."""
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p.id: (p.leader, list(p.isrs)) for p in meta.topics[topic].partitions.values()}


def _replicas_in_sync(bootstrap: str, topics: list[str], replicas: int) -> bool:
    return all(len(isr) == replicas for topic in topics for _, isr in _partitions(bootstrap, topic).values())


def _group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` the group has not committed yet (a partition never committed
    counts whole)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in _partitions(bootstrap, topic)]
        lag = 0
        for committed in consumer.committed(parts, timeout=10):
            low, high = consumer.get_watermark_offsets(committed, timeout=10)
            lag += high - (committed.offset if committed.offset >= 0 else low)
        return lag
    finally:
        consumer.close()



def test_topics_are_created_with_three_replicas_and_two_in_sync(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(free_port_block(6)).start()
    try:
        from streams.config import WardenSettings
        from streams.topics import ensure_topics

        settings = WardenSettings(kafka_bootstrap=cluster.bootstrap, kafka_replication_factor=3,
                                  topic_prefix="repl")
        created = ensure_topics(settings)
        assert created
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        for name in created:
            assert all(len(isr) == 3 for _, isr in _partitions(cluster.bootstrap, name).values()), name
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in created]
        for resource, future in admin.describe_configs(resources).items():
            assert future.result(timeout=30)["min.insync.replicas"].value == "2", resource
    finally:
        cluster.stop()


def test_losing_the_leaders_broker_twice_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(free_port_block(6))
    pipeline = Pipeline(bootstrap=cluster.bootstrap, dsn=f"chdb://{tmp_path / 'clickhouse'}", workdir=tmp_path)
    extra = {"WARDEN_CONFIG_DIR": str(fast_config(tmp_path)), "WARDEN_KAFKA_REPLICATION_FACTOR": "3"}
    total = volume(ci=3_000, long=50_000)
    rate = volume(ci=300, long=1_000)
    items = list(traces(total, seed=61, trace_kb=0.3))
    start = datetime.now(UTC)
    for i, trace in enumerate(items):
        trace["timestamp"] = (start + timedelta(seconds=i / rate)).isoformat()
    raw, breaker = pipeline.topic("traces.raw.v1"), pipeline.topic("breaker.v1")
    target = target_key({"route": "support-chat", "model": "gpt-4o-mini"})
    client = BreakerClient(cluster.bootstrap, breaker, stale_after_s=5)
    rng = random.Random(7)
    killed: list[int] = []
    recovery_s: list[float] = []
    try:
        cluster.start()
        worker = pipeline.worker(extra=extra).start()
        client.start()
        feeder = publish_in_background(pipeline, items, rate=rate)
        for share in (0.25, 0.6):
            wait_for(lambda share=share: metric(worker, "warden_traces_governed_total") >= share * total, 180,
                     f"{share:.0%} of the traffic governed", worker, 0.5)
            leaders = {leader for leader, _ in _partitions(cluster.bootstrap, raw).values()}
            node = next(n for n in sorted(leaders) if n not in killed[-1:])  # another broker the second time
            governed = metric(worker, "warden_traces_governed_total")
            cluster.kill(node)
            killed.append(node)
            lost_at = time.monotonic()
            # The worker goes on with two brokers: min.insync.replicas=2 still takes writes.
            wait_for(lambda g=governed: metric(worker, "warden_traces_governed_total") >= g + 0.05 * total, 180,
                     f"governing again with broker {node} down", worker, 0.5)
            recovery_s.append(round(time.monotonic() - lost_at, 1))
            cluster.revive()
            wait_for(lambda: _replicas_in_sync(cluster.bootstrap, [raw, breaker], 3), 120,
                     f"broker {node} back in sync", worker, 1)
        feeder.join()
        wait_for(lambda: int(worker.scalar("SELECT count() FROM traces FINAL")) >= total, 180,
                 f"{total} traces stored after two broker losses", worker, 2)
        wait_for(lambda: _group_lag(cluster.bootstrap, f"warden-{pipeline.prefix}", raw) == 0, 120,
                 "the worker's lag on the raw topic back to zero", worker, 1)
        sent = {(t["trace_id"], t["span_id"]) for t in items}
        stored = stored_ids(worker)
        # FINAL collapses a replayed row with its first copy; without FINAL the copies a
        # replay wrote are still there until ClickHouse merges them (counted, not hidden).
        final = int(worker.scalar("SELECT count() FROM traces FINAL"))
        physical = int(worker.scalar("SELECT count() FROM traces"))
        assert stored == sent
        assert final == len(sent)
        # Breaker signals still reach serving: a burst of errors opens the route's breaker.
        with publisher(pipeline) as pub:
            for _ in range(40):
                pub.publish(trace_for("support-chat", "claude-3-5-haiku", error=False, rng=rng))
            for i in range(120):
                pub.publish(trace_for("support-chat", "gpt-4o-mini", error=i % 4 != 0, rng=rng))
        wait_for(lambda: not client.allow(target), 120, "breaker open after two broker losses", worker, 0.5)
    finally:
        client.close()
        pipeline.stop_all()
        cluster.stop()
    values = {"brokers": 3, "sent": len(sent), "stored": len(stored & sent), "lost": len(sent - stored),
              "duplicated": final - len(sent), "replayed_rows_before_merge": physical - final,
              "broker_kills": len(killed), "governing_again_s": recovery_s}
    FAULT_FIGURES["cluster-broker-loss"] = values
    print("\nFAULT FIGURES cluster-broker-loss: " + json.dumps(values))
