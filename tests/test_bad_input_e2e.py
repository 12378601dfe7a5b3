"""Issue 10, bad input through the real pipeline: a corpus of broken records (malformed
JSON, wrong types, missing fields, huge strings, deep nesting, invalid UTF-8, 10 MB
payloads) mixed with good traces. Every bad record lands in the dead-letter topic with
its reason and original bytes, every good one in ClickHouse, the worker keeps running and
its memory stays bounded."""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import pytest

from tests.infra import FAULT_FIGURES
from tests.pipeline_helpers import publisher, read_topic, trace_for, wait_for
from tests.worker_proc import Pipeline

pytestmark = pytest.mark.integration


def corpus(rng: random.Random) -> list[bytes]:
    good = trace_for("support-chat", "gpt-4o-mini", error=False, rng=rng)
    without = {k: v for k, v in good.items() if k != "timestamp"}
    return [
        b"{not json", b"", b"null", b"[1, 2, 3]", b'"just a string"', b"\xff\xfe\xfd invalid utf-8",
        b'{"trace_id": "a", "span_id": "b"}', json.dumps(without).encode(),
        json.dumps({**good, "input_tokens": "many"}).encode(),
        json.dumps({**good, "status": "maybe"}).encode(),
        json.dumps({**good, "schema_version": 7}).encode(),
        json.dumps({**good, "metadata": {"blob": "x" * 100_000}}).encode(),
        json.dumps({**good, "tool_calls": [{"name": "t", "arguments": json.loads("[" * 60 + "]" * 60)}]}).encode(),
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps({**good, "input_messages": [{"role": "user", "content": "y" * 400_000}] * 25}).encode(),  # 10 MB
        b"\x00" * (10 * 1024 * 1024),  # 10 MB of zero bytes
    ]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_every_bad_record_is_dead_lettered_and_the_worker_survives(pipeline: Pipeline) -> None:
    rng = random.Random(4)
    bad = corpus(rng)
    worker = pipeline.worker().start()
    assert worker.proc is not None
    try:
        good = [trace_for("support-chat", "gpt-4o-mini", error=False, rng=rng) for _ in range(300)]
        warmup = [trace_for("search-summarize", "gpt-4o-mini", error=False, rng=rng) for _ in range(50)]
        with publisher(pipeline) as pub:
            for trace in warmup:
                pub.publish(trace)
        wait_for(lambda: int(worker.scalar("SELECT count() FROM traces FINAL")) >= len(warmup), 120,
                 "warm-up traces", worker)
        time.sleep(3)  # the drift agent has loaded its encoder by now
        rss_base = _rss_mb(worker.proc.pid)
        with publisher(pipeline) as pub:
            for round_ in range(3):  # the corpus three times, between good traffic
                for i, trace in enumerate(good[round_ * 100:(round_ + 1) * 100]):
                    pub.publish(trace)
                    if i < len(bad):
                        pub.publish_raw(bad[i], b"bad")
            rss_mid = _rss_mb(worker.proc.pid)
        assert pub.stats.failed == 0
        total_bad = 3 * len(bad)
        wait_for(lambda: int(worker.scalar("SELECT count() FROM dead_letters FINAL")) >= total_bad
                 and int(worker.scalar("SELECT count() FROM traces FINAL")) >= len(good) + len(warmup), 240,
                 "all dead letters and good traces", worker, 2)
        assert worker.proc.poll() is None
        letters = [json.loads(v) for _, v in read_topic(pipeline.bootstrap, pipeline.topic("deadletter.v1"),
                                                           timeout_s=120)]
        assert len(letters) == total_bad
        assert all(d["original_b64"] == "" for d in letters)  # never the unredacted bytes
        originals = sorted(d["original_sha256"] for d in letters)
        assert originals == sorted(hashlib.sha256(b).hexdigest() for b in bad * 3)
        assert all(d["reason"] and d["error_kind"] for d in letters)
        kinds = {d["error_kind"] for d in letters}
        assert {"malformed_json", "empty", "wrong_type", "invalid_utf8", "schema_violation",
                "unsupported_schema_version", "too_deep", "oversized"} <= kinds
        stored = worker.sql("SELECT error_kind, original_bytes, original_sha256 FROM dead_letters FINAL "
                            "WHERE original_bytes > 5000000")
        assert len(stored) == 6 and all(len(r["original_sha256"]) == 64 for r in stored)
        rss_end = _rss_mb(worker.proc.pid)
        FAULT_FIGURES["bad-input"] = {
            "bad_inputs": total_bad, "good": len(good), "dead_lettered": len(letters), "crashes": 0,
            "rss_mb_before": round(rss_base), "rss_mb_mid": round(rss_mid), "rss_mb_end": round(rss_end)}
        # Six 10 MB payloads are each decoded, rejected and hashed once (too large to redact); what stays
        # must be bounded, not proportional to what went through.
        assert rss_end - rss_base < 800, f"worker RSS grew {rss_end - rss_base:.0f} MB over the corpus"
    finally:
        worker.stop()
