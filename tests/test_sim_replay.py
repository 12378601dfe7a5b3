"""Issue 19, item 6 offline: a short compressed simulated day with incidents through the
worker's detectors (``streams.replay.Replay``, what ``warden replay`` runs) and its breaker
on event time (``streams.sim.decide``, what ``warden sim replay`` runs), no Kafka.

Every injected incident is found by one of its expected findings within its bound (event
time), the breaker opens where the truth says it should (error burst, PII and secret leaks
on one A/B arm), the registered prompt change stays quiet, and stable routes raise nothing
at warning or critical. Embedding drift is left out at ci scale (the encoder on 2 cores is the cost);
the ``long`` tier runs the standard day of every scenario, topic shifts included.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from streams.replay import Replay
from streams.sim.day import DEFAULT_START, SimDay
from streams.sim.decide import DecidingReplay, breaker_action
from streams.sim.scenarios import parse_incident
from streams.sim.score import Score, score
from tests.scale import LONG

# The ci day: 4 h of event time at 0.4 of the realistic rates (~10,800 traces; ~45 s on 2 cores), with the
# incidents embedding drift is not needed for. The quiet A/B arm (~0.024 calls/s here) has
# its burst test decide only after 200 calls of its own (error_rate.burst.min_baseline_calls),
# ~0.55 of this day: its burst comes after that, as in a day at full scale.
CI_HOURS, CI_SCALE = 4.0, 0.4
CI_INCIDENTS = (
    "error_burst@assistant-ab:0.7:900,model=claude-3-5-haiku",
    "silent_model_swap@shop-orders:0.4",
    "unregistered_prompt_version@claims-assistant:0.5",
    "registered_prompt_change@workspace-copilot:0.48",
    "pii_leak@network-support:0.55:1200,model=gpt-4o-mini",
    "secret_leak@ops-agent:0.6:900,model=gpt-4o",
    "silent_model_update@kitchen-chat:0.45",
)


def replay_day(day: SimDay, tmp_path: Path, *, embeddings: bool) -> tuple[Score, list[dict[str, Any]], float]:
    """Write the day, replay it like ``warden sim replay``; the score, the breaker signals,
    the seconds the replay took."""
    from streams.cli_replay import read_changes

    paths = day.write(tmp_path / "day")
    began = time.monotonic()
    replay = DecidingReplay(Replay(paths["config"], embeddings=embeddings, changes=read_changes(paths["changes"])))
    findings: list[dict[str, Any]] = []
    with paths["traces"].open("rb") as source:
        for batch in replay.run(source):
            assert not batch.errors, batch.errors[:3]
            findings += batch.findings
    return score(day.truth(), findings), replay.signals, time.monotonic() - began


def problems(result: Score, signals: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in result.incidents:
        inc = r.incident
        if inc["breaker"] == "open":
            action = breaker_action(inc, signals)
            if action is None or not action.startswith("open"):
                out.append(f"{inc['id']} on {inc['route']}: expected the breaker to open, got {action}")
        if r.caught:
            continue
        if inc["expected_kinds"]:
            out.append(f"{inc['id']} on {inc['route']}: no {' / '.join(inc['expected_kinds'])} within "
                       f"{inc['max_delay_s']:.0f} s (delay {r.delay_s})")
        else:
            out.append(f"{inc['id']} on {inc['route']} (registered change) raised {[f['kind'] for f in r.forbidden]}")
    if result.false_alarms:
        out.append(f"{len(result.false_alarms)} warning/critical findings on stable traffic: "
                   f"{dict(result.false_alarms_by_kind())}")
    return out


@pytest.mark.skipif(LONG, reason="the long tier replays the standard day instead")
def test_a_compressed_day_replayed_finds_every_incident_and_stable_routes_stay_quiet(tmp_path: Path) -> None:
    incidents = [parse_incident(spec, DEFAULT_START, CI_HOURS) for spec in CI_INCIDENTS]
    day = SimDay(seed=1, hours=CI_HOURS, scale=CI_SCALE, incidents=incidents)
    result, signals, seconds = replay_day(day, tmp_path, embeddings=False)
    print(f"{len(day.traces())} traces replayed in {seconds:.0f} s; {result.summary()}")
    found = problems(result, signals)
    assert not found, "\n".join(found)


@pytest.mark.long
@pytest.mark.skipif(not LONG, reason="WARDEN_TEST_SCALE=long: the encoder over a 6 h day takes minutes")
def test_the_standard_compressed_day_replayed_finds_every_scenario(tmp_path: Path) -> None:
    day = SimDay(seed=1, hours=6.0, scale=0.5)
    result, signals, seconds = replay_day(day, tmp_path, embeddings=True)
    print(f"{len(day.traces())} traces replayed in {seconds:.0f} s; {result.summary()}")
    found = problems(result, signals)
    assert not found, "\n".join(found)
