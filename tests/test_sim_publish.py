"""``streams.sim.publish`` against the real broker: a simulated day goes out whole, its
registered change first on the ledger, paced by ``speedup`` (event seconds per wall second).
The worker is not started: what it makes of a compressed day is the realistic-day tests'.
"""

from __future__ import annotations

import json
import time

import pytest

from streams.config import WardenSettings
from streams.sim.day import SimDay
from streams.sim.publish import aligned_start, publish_day
from streams.sim.scenarios import parse_incident
from streams.topics import ensure_topics
from tests.pipeline_helpers import read_topic
from tests.worker_proc import Pipeline

pytestmark = pytest.mark.integration

HOURS = 0.1  # 6 minutes of event time


def test_a_day_is_published_whole_paced_by_speedup_changes_first(pipeline: Pipeline) -> None:
    start = aligned_start(HOURS)
    control = parse_incident("registered_prompt_change@workspace-copilot:0.5", start, HOURS)
    day = SimDay(seed=3, start=start, hours=HOURS, scale=0.3, incidents=[control])
    settings = WardenSettings(kafka_bootstrap=pipeline.bootstrap, topic_prefix=pipeline.prefix,
                              partitions=pipeline.partitions)
    ensure_topics(settings)
    speedup = 180.0  # 360 s of event time in ~2 s
    began = time.monotonic()
    sent = publish_day(settings, day, speedup=speedup)
    took = time.monotonic() - began
    assert sent["valid"] == len(day.traces()) > 50 and sent["undelivered"] == 0 and sent["changes"] == 1
    assert took >= 0.8 * (HOURS * 3600 / speedup) * (day.traces()[-1]["timestamp"] > day.traces()[0]["timestamp"])
    published = read_topic(pipeline.bootstrap, pipeline.topic("traces.raw.v1"))
    ids = sorted(json.loads(value)["span_id"] for _key, value in published)
    assert ids == sorted(t["span_id"] for t in day.traces())
    changes = [json.loads(value) for _key, value in read_topic(pipeline.bootstrap, pipeline.topic("changes.v1"))]
    assert [c["component_id"] for c in changes] == ["workspace-copilot-system"]
    assert start + HOURS * 3600 <= time.time()  # a published day ends in the past
