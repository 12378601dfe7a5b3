"""Issue 16 against the real worker, broker and chDB: each poison pill, then good traces.
The pills land in dead letters with their reasons (without content) or are bounded, every
good trace is stored and the worker keeps running."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from streams.breaking import OVERRIDE
from streams.cli_breaker import send_control
from streams.config import WardenSettings
from tests.pipeline_helpers import publisher, read_topic, trace_for, wait_for
from tests.worker_proc import Pipeline

pytestmark = pytest.mark.integration

SECRET = "sk-live-POISON-never-in-a-dead-letter"
GOOD = 200


def test_poison_pills_then_good_traces(pipeline: Pipeline) -> None:
    rng = random.Random(16)
    # Low enough that this trace's governed record is over it: the same path as a redaction
    # that grows a trace past the producer's 20 MiB.
    worker = pipeline.worker(extra={"WARDEN_MAX_OUTPUT_BYTES": "200000"}).start()
    assert worker.proc is not None
    try:
        oversized = trace_for("poison", "m", error=False, rng=rng)
        oversized["input_messages"] = [{"role": "user", "content": f"{SECRET} " + "lorem ipsum " * 13_000}] * 2
        future = trace_for("future", "m", error=False, rng=rng)
        future["timestamp"] = "2100-01-01T00:00:00+00:00"
        with publisher(pipeline) as pub:
            pub.publish(oversized)
            pub.publish(future)
        # An override a century long (the CLI refuses it; anyone can write the topic).
        now = datetime.now(UTC)
        send_control(WardenSettings(kafka_bootstrap=pipeline.bootstrap, topic_prefix=pipeline.prefix), OVERRIDE,
                     "route=poison", state="open", reason="forever", operator="ops",
                     until=(now + timedelta(days=36_500)).timestamp())
        # One sink batch spanning 150 event-days, straight onto the redacted topic (govern
        # bounds event time; ClickHouse takes 100 partitions per insert).
        producer = Producer({"bootstrap.servers": pipeline.bootstrap, "acks": "all"})
        for i in range(150):
            record = {**trace_for("days", "m", error=False, rng=rng), "redaction": {}, "refused": False,
                      "timestamp": (now + timedelta(days=1 + i)).isoformat()}
            producer.produce(pipeline.topic("traces.redacted.v1"), key=b"days", value=json.dumps(record).encode())
        assert producer.flush(30) == 0

        good = [trace_for(f"good-{i % 4}", "gpt-4o-mini", error=False, rng=rng) for i in range(GOOD)]
        with publisher(pipeline) as pub:
            for trace in good:
                pub.publish(trace)
        assert pub.stats.failed == 0

        wait_for(lambda: int(worker.scalar("SELECT count() FROM traces FINAL WHERE route LIKE 'good-%'")) >= GOOD,
                 300, "the good traces after the poison pills", worker, 2)
        wait_for(lambda: int(worker.scalar("SELECT count() FROM traces FINAL WHERE route = 'days'")) >= 150,
                 120, "the 150-day batch", worker)
        wait_for(lambda: int(worker.scalar("SELECT count() FROM dead_letters FINAL WHERE error_kind IN "
                                           "('oversized_output', 'bad_override')")) >= 2, 120, "dead letters", worker)
        assert worker.proc.poll() is None, "the worker died"

        letters = [json.loads(v) for _, v in read_topic(pipeline.bootstrap, pipeline.topic("deadletter.v1"))]
        kinds = {d["error_kind"]: d for d in letters}
        assert {"oversized_output", "bad_override"} <= set(kinds)
        assert oversized["trace_id"] in kinds["oversized_output"]["reason"]
        assert "override_max_s" in kinds["bad_override"]["reason"]
        for kind in ("oversized_output", "bad_override"):
            assert kinds[kind]["original_b64"] == "" and SECRET not in json.dumps(kinds[kind])

        # The trace dated 2100 is stored near its receive time, not in 2100.
        wait_for(lambda: worker.sql(f"SELECT 1 FROM traces FINAL WHERE trace_id = '{future['trace_id']}'"),
                 60, "the 2100 trace", worker)
        stored_at = worker.sql(f"SELECT toUnixTimestamp(timestamp) AS t FROM traces FINAL "
                               f"WHERE trace_id = '{future['trace_id']}'")
        assert float(str(stored_at[0]["t"])) < time.time() + 3600
        assert 'warden_event_time_clamped_total{direction="future",stage="govern"} 1.0' in worker.get("/metrics").decode()
    finally:
        worker.stop()
