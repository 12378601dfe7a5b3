"""The economics agent's incremental checkpoints (streams/economics.py): a restart from any
checkpoint continues exactly as if nothing had happened, a checkpoint writes what changed
rather than every open agent run, and no record exceeds Kafka's default message limit."""

from __future__ import annotations

import json
import random
from typing import Any

from detectors.cost.values import CostSample
from streams.config import WardenSettings
from streams.economics import BASE_EVERY, BASE_KEY, DELTA_PREFIX, LEGACY_KEY, Economics
from streams.state import dumps
from streams.values import cost_sample_record


def usage(n: int, seed: int, open_runs: int = 300) -> list[dict[str, Any]]:
    """Agent steps over many concurrent runs: each run takes tool-call steps, some fail and
    retry, most end with a final answer, some are abandoned (closed by idle timeout)."""
    rng = random.Random(seed)
    records, live, next_run, at = [], [], 0, 1.75e9
    for i in range(n):
        at += rng.expovariate(20.0)
        if len(live) < open_runs or rng.random() < 0.05:
            live.append([f"run-{seed}-{next_run}", 0])
            next_run += 1
        run = live[rng.randrange(len(live))]
        run[1] += 1
        final = run[1] > 2 and rng.random() < 0.3
        sample = CostSample(
            at=at, tenant=rng.choice(["acme", "globex"]), application="agent", route=rng.choice(["chat", "search"]),
            provider="openai", request_model="gpt-4o-mini", input_tokens=rng.randint(100, 4000),
            output_tokens=rng.randint(10, 800), ok=rng.random() > 0.05, trace_id=run[0],
            span_id=f"s{run[1]}", parent_span_id=None if run[1] == 1 else "s1",
            tool_calls=0 if final else 1)
        record = cost_sample_record(sample)
        record["_source"] = [0, i]
        records.append(record)
        if final and sample.ok:
            live.remove(run)
    return records


def economics() -> Economics:
    return Economics.from_settings(WardenSettings())


def full_state(eco: Economics, states: dict[str, Any]) -> str:
    return json.dumps(eco.governor(states).to_state(), sort_keys=True)


def test_a_restart_from_any_checkpoint_continues_identically() -> None:
    records = usage(6000, seed=1)
    whole, whole_states = economics(), {}
    expected = []
    for i in range(0, len(records), 50):
        expected += [f.finding_id for f in whole.update(records[i:i + 50], whole_states)]

    states: dict[str, Any] = {}
    eco, got = economics(), []
    rng = random.Random(2)
    for n, i in enumerate(range(0, len(records), 50)):
        got += [f.finding_id for f in eco.update(records[i:i + 50], states)]
        if rng.random() < 0.3:  # a restart: a fresh instance loads the table
            before = full_state(eco, states)
            eco = economics()
            assert full_state(eco, states) == before, f"state differs after a restart at checkpoint {n}"
    assert got == expected
    assert full_state(eco, states) == full_state(whole, whole_states)
    assert n > BASE_EVERY  # bases rolled over, deltas were pruned
    assert len([k for k in states if k.startswith(DELTA_PREFIX)]) < BASE_EVERY


def test_a_checkpoint_writes_what_changed_and_no_record_exceeds_kafkas_default_limit() -> None:
    eco, states = economics(), {}
    records = usage(30_000, seed=3, open_runs=9000)
    for i in range(0, len(records) - 100, 1000):  # 30 checkpoints: one base, then deltas
        eco.update(records[i:i + 1000], states)
    assert eco.governor(states).runs.n_open > 4000  # several base chunks
    sizes = {key: len(dumps(value)) for key, value in states.items()}
    assert max(sizes.values()) < 1_000_000, max(sizes.items(), key=lambda kv: kv[1])
    full = len(dumps(eco.governor(states).to_state()))
    eco.update(records[-100:], states)  # one more checkpoint: a delta of ~100 touched runs
    newest = max(k for k in states if k.startswith(DELTA_PREFIX))
    assert len(dumps(states[newest])) < full / 5


def test_the_single_record_state_of_earlier_versions_still_loads() -> None:
    records = usage(2000, seed=4)
    eco, states = economics(), {}
    eco.update(records[:1000], states)
    governor = eco.governor(states)
    legacy = {LEGACY_KEY: json.loads(dumps({"seq": 7, "governor": governor.to_state(), "applied": {"0": 999}}))}
    restored = economics()
    assert full_state(restored, legacy) == full_state(eco, states)
    restored.update(records[1000:], legacy)
    assert LEGACY_KEY not in legacy and BASE_KEY in legacy  # replaced by a base at once
    eco.update(records[1000:], states)
    assert full_state(restored, legacy) == full_state(eco, states)


def test_records_replayed_onto_a_checkpoint_count_once() -> None:
    records = usage(1000, seed=5)
    eco, states = economics(), {}
    eco.update(records[:600], states)
    eco.update(records[600:800], states, checkpoint=False)  # applied, then a crash
    restarted = economics()
    restarted.update(records[600:], states)  # the replay from the last checkpoint
    once, once_states = economics(), {}
    once.update(records, once_states)
    assert full_state(restarted, states) == full_state(once, once_states)


def deliver(eco: Economics, states: dict[str, Any], records: list[dict[str, Any]], offsets: list[int],
            now: float = 0.0, checkpoint: bool = True) -> tuple[int, int | None]:
    """What the agent does with one batch from the usage topic: admit, then count the prefix."""
    admission = eco.admit(offsets, states, now)
    take = admission.take
    eco.update([records[o] for o in offsets[:take]], states, checkpoint=checkpoint, offsets=offsets[:take])
    return take, admission.seek_to


def test_a_consumer_position_past_the_checkpoint_is_sought_back_and_counted_once() -> None:
    """Kafka's committed offset got ahead of the last checkpoint (an offset committed before
    the checkpoint holding it was durable, or a consumer that skipped a record): the state,
    not the position, decides; the agent seeks back and the records are counted once."""
    records = usage(1000, seed=6)
    eco, states = economics(), {}
    assert deliver(eco, states, records, list(range(0, 400))) == (400, None)
    eco.update([records[o] for o in range(400, 450)], states, checkpoint=False, offsets=list(range(400, 450)))
    restarted = economics()  # the crash lost 400..449; Kafka's position says 450
    assert deliver(restarted, states, records, list(range(450, 500))) == (0, 400)
    assert deliver(restarted, states, records, list(range(500, 520)), now=1.0) == (0, None)  # drains
    assert deliver(restarted, states, records, list(range(520, 540)), now=2.5) == (0, 400)  # seeks again
    assert deliver(restarted, states, records, list(range(380, 1000)), now=3.0) == (620, None)
    once, once_states = economics(), {}
    once.update(records, once_states)
    assert full_state(restarted, states) == full_state(once, once_states)


def test_records_deleted_before_they_were_counted_are_given_up_on_loudly() -> None:
    records = usage(300, seed=7)
    eco, states = economics(), {}
    deliver(eco, states, records, list(range(0, 100)))
    restarted = economics()
    assert restarted.admit(list(range(150, 200)), states, now=0.0).seek_to == 100
    assert restarted.admit(list(range(150, 200)), states, now=30.0).take == 0
    admission = restarted.admit(list(range(150, 200)), states, now=61.0)
    assert (admission.take, admission.lost) == (50, 50)
    restarted.update([records[o] for o in range(150, 200)], states, offsets=list(range(150, 200)))
    assert deliver(restarted, states, records, list(range(200, 300)), now=62.0) == (100, None)
