"""Shared steps for the integration tests: traffic, waiting on ClickHouse, reading topics."""

from __future__ import annotations

import json
import random
import shutil
import threading
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


def publish_in_background(pipeline: Pipeline, items: list[dict[str, Any]], rate: float) -> threading.Thread:
    """Publish ``items`` at ``rate`` per second from a daemon thread (join it to wait)."""
    def run() -> None:
        with publisher(pipeline) as pub:
            started = time.monotonic()
            for i, trace in enumerate(items):
                pub.publish(trace)
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def metric(worker: WorkerProcess, name: str) -> float:
    """One unlabelled counter or gauge from the worker's /metrics (0 when absent)."""
    for line in worker.get("/metrics").decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


# Counters that only move when a worker does work (metrics it exports on /metrics); what a
# wait watches for progress. Crashes, rewinds and failed writes are not progress.
PROGRESS_METRICS = ("warden_traces_governed_total", "warden_sink_rows_total", "warden_findings_total",
                    "warden_dead_letters_total", "warden_drift_shed_total", "warden_stage_seconds_count",
                    "warden_economics_checkpoint_offset", "warden_batches_fenced_total")


def worker_progress(*workers: WorkerProcess) -> tuple[tuple[float, ...], ...]:
    """How much work each worker has done so far: its progress counters' values (a worker
    that does not answer counts as no progress)."""
    done = []
    for worker in workers:
        values: list[float] = []
        try:
            for line in worker.get("/metrics", timeout=30).decode().splitlines():
                if line.startswith(PROGRESS_METRICS):
                    values.append(float(line.rsplit(" ", 1)[1]))
        except (OSError, ValueError):
            pass
        done.append(tuple(values))
    return tuple(done)


def wait_for(predicate: Callable[[], object], stall_s: float, what: str, worker: WorkerProcess | None = None,
             poll_s: float = 1.0, *, workers: tuple[WorkerProcess, ...] = ()) -> None:
    """Wait until ``predicate()`` is true; fail when nothing has advanced for ``stall_s``
    seconds, never because a fixed total passed (a busy machine makes the pipeline slow,
    not wrong).

    Progress is the predicate's value changing or any watched worker's progress counters
    moving (``worker_progress``); a watched worker that exits fails at once. Without
    workers, ``stall_s`` bounds how long the value may stay the same. The message says
    what stalled: the last value, each worker's counters and its log's tail."""
    watched = tuple(w for w in (worker, *workers) if w is not None)
    last: object = None
    since = time.monotonic()
    while True:
        try:
            value = predicate()
        except OSError:  # the worker's web server is busy or restarting: not a verdict
            value = None
        if value:
            return
        exited = [w for w in watched if w.proc is not None and w.proc.poll() is not None]
        if exited:
            code = exited[0].proc.returncode if exited[0].proc else "?"
            raise AssertionError(f"worker exited ({code}) while waiting for {what}\n"
                                 f"worker log:\n{exited[0].log_tail()}")
        state = (value, worker_progress(*watched))
        if state != last:
            last, since = state, time.monotonic()
        elif time.monotonic() - since > stall_s:
            tail = f"\nworker log:\n{watched[0].log_tail()}" if watched else ""
            raise AssertionError(f"no progress for {stall_s}s waiting for {what} "
                                 f"(last value {value!r}, worker progress {state[1]}){tail}")
        time.sleep(poll_s)


def rss_mb(worker: WorkerProcess) -> float:
    """The worker process's resident memory in MB (from /proc)."""
    assert worker.proc is not None
    for line in Path(f"/proc/{worker.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> list[tuple[bytes | None, bytes]]:
    """Every record of a topic from the beginning to its current end.

    ``timeout_s`` is how long the read may go without a record, not its total (a big topic
    on a busy machine takes longer); a partition whose end was not reached fails the read.
    """
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
            deadline = time.monotonic() + timeout_s
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                continue
            out.append((msg.key(), msg.value()))
        assert not pending, f"{topic}: partitions {sorted(pending)} not read to their end ({len(out)} records read)"
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
