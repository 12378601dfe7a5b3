"""Shared steps for the integration tests: traffic, waiting on ClickHouse, reading topics."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.config import CONFIG_DIR
from streams.loadgen import LoadPlan, make_trace
from streams.publisher import TracePublisher
from tests.worker_proc import Pipeline, WorkerProcess

TEST_KEY = "test-pseudonym-key-0123456789abcdef"


def traces(count: int, *, seed: int = 1, routes: int = 4, trace_kb: float = 1.0,
           incidents: list[str] | None = None) -> Iterator[dict[str, Any]]:
    plan = LoadPlan.build(count=count, rate=1e9, routes=routes, trace_kb=trace_kb,
                          incidents=incidents or [], seed=seed)
    rng = random.Random(seed)
    for i in range(count):
        yield make_trace(plan, i, rng, datetime.now(UTC))


def trace_for(route: str, model: str, *, error: bool, rng: random.Random) -> dict[str, Any]:
    plan = LoadPlan.build(count=1, rate=1e9, routes=1, trace_kb=0.5, incidents=[])
    trace = make_trace(plan, 0, rng, datetime.now(UTC))
    trace.update(route=route, request_model=model, response_model=model, application=f"app-{route}")
    if error:
        trace.update(status="error", error_type="upstream_5xx", output_messages=[], finish_reasons=["error"])
    return trace


def publisher(pipeline: Pipeline) -> TracePublisher:
    return TracePublisher(pipeline.bootstrap, pipeline.topic("traces.raw.v1"))


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, worker: WorkerProcess | None = None,
             poll_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    tail = f"\nworker log:\n{worker.log_tail()}" if worker else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{tail}")


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> list[tuple[bytes | None, bytes]]:
    """Every record of a topic from the beginning to its current end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        pending = set(meta.partitions)
        out: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                continue
            out.append((msg.key(), msg.value()))
        return out
    finally:
        consumer.close()


def fast_config(tmp: Path, **breaker_defaults: Any) -> Path:
    """A copy of deploy/config with short windows, so breaker tests take seconds."""
    target = tmp / "config"
    shutil.copytree(CONFIG_DIR, target, dirs_exist_ok=True)
    policy_path = target / "breaker-policy.yaml"
    policy = yaml.safe_load(policy_path.read_text())
    policy["version"] = "test-fast"
    policy["error_rate"].update({"window_s": 10, "bucket_s": 1, "min_requests": 20, "renotify_s": 5})
    policy["defaults"].update({"cooldown_s": 3, "probe_requests": 10, "trip_decay_s": 60, **breaker_defaults})
    policy_path.write_text(yaml.safe_dump(policy))
    return target


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def stored_ids(worker: WorkerProcess, table: str = "traces") -> set[tuple[str, str]]:
    """Every (trace_id, span_id) in ClickHouse, paged (the /sql endpoint caps a result)."""
    ids: set[tuple[str, str]] = set()
    page = 10_000
    while True:
        rows = worker.sql(f"SELECT trace_id, span_id FROM {table} FINAL ORDER BY trace_id, span_id "
                          f"LIMIT {page} OFFSET {len(ids)}")
        ids.update((r["trace_id"], r["span_id"]) for r in rows)
        if len(rows) < page:
            return ids
