"""Names and street addresses through the running pipeline: a worker with NER on (the
shipped default; the rest of the suite turns it off for speed) stores, and publishes on the
redacted topic, traces whose prompts and answers named people and places with none of them
left in clear, and counts what it found in the trace's redaction record."""

from __future__ import annotations

import json

import pytest

from tests.pipeline_helpers import publisher, read_topic, traces, wait_for
from tests.worker_proc import Pipeline

pytestmark = pytest.mark.integration

PEOPLE = ["Steven Copeland", "Margaret Thompson", "Anna Müller", "Rajesh Kumar"]
ADDRESSES = ["1317 Kimberly Way", "90 Whitchurch Road", "Loorenstrasse 149", "6185 Pfarrgasse 91"]


def named_trace(base: dict[str, object], i: int) -> dict[str, object]:
    person, address = PEOPLE[i % len(PEOPLE)], ADDRESSES[i % len(ADDRESSES)]
    base["input_messages"] = [
        {"role": "system", "content": "You draft letters for tenants."},
        {"role": "user", "content": f"Hi, I'm {person}. Please draft a letter to my landlord at "
                                    f"{address} about the broken heater."},
    ]
    base["output_messages"] = [
        {"role": "assistant", "content": f"Dear landlord, I am writing on behalf of {person}, "
                                         f"tenant at {address}, about the heater."},
    ]
    return base


def test_names_and_addresses_are_not_stored_or_published_in_clear(pipeline: Pipeline) -> None:
    worker = pipeline.worker(extra={"WARDEN_NER": "on"}).start()
    sent = [named_trace(t, i) for i, t in enumerate(traces(40, seed=17, trace_kb=0.5))]
    with publisher(pipeline) as pub:
        for trace in sent:
            pub.publish(trace)
    wait_for(lambda: int(worker.scalar("SELECT count() FROM traces FINAL")) >= len(sent), 120,
             f"{len(sent)} traces with names stored", worker)

    rows = worker.sql("SELECT trace_id, input_messages, output_messages FROM traces FINAL")
    assert len(rows) == len(sent)
    for row in rows:
        blob = json.dumps(row, ensure_ascii=False)
        leaked = [v for v in PEOPLE + ADDRESSES if v in blob]
        assert not leaked, f"trace {row['trace_id']} stored {leaked}"
        assert "[PERSON]" in blob and "[STREET_ADDRESS]" in blob

    redacted = read_topic(pipeline.bootstrap, pipeline.topic("traces.redacted.v1"), timeout_s=60)
    assert len(redacted) >= len(sent)
    for _, value in redacted:
        text = value.decode()
        assert not [v for v in PEOPLE + ADDRESSES if v in text or json.dumps(v)[1:-1] in text]
        counts = json.loads(value)["redaction"]["counts"]
        assert counts.get("PERSON", 0) >= 2 and counts.get("STREET_ADDRESS", 0) >= 2, counts
