"""One record must not stop a stage for good (issue 16): an oversized governed trace, a
sink batch over many days, an override a century long, a trace dated 2100. Each becomes
a dead letter with its reason (never its content) or is bounded, and the stage goes on."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer

from sinks.clickhouse import ClickHouseStore
from streams.breaking import OVERRIDE, BreakerDecider, control_finding, traffic_finding
from streams.cli_breaker import override_expiry
from streams.config import WardenSettings
from streams.govern_step import govern_one
from streams.governor import Governor
from streams.guard.clock import REPORTED, EventTimeBounds
from streams.guard.poison import undecidable
from streams.ingest import SourcePosition
from streams.redaction import load_redactor
from streams.wiring import Wiring
from tests.pipeline_helpers import TEST_KEY, fast_config, trace_for

SECRET = "sk-live-POISON0123456789abcdefNEVERSTORED"
YEAR_2100 = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> WardenSettings:
    return WardenSettings(config_dir=fast_config(tmp_path, max_open_share=1.0), pseudonym_key=TEST_KEY,
                          max_output_bytes=64 * 1024)


@pytest.fixture
def wiring(settings: WardenSettings) -> Wiring:
    governor = Governor.from_settings(settings, load_redactor(settings))
    return Wiring(settings, governor, BreakerDecider.from_settings(settings), None)


def _raw(trace: dict[str, Any]) -> bytes:
    return json.dumps(trace, ensure_ascii=False).encode()  # as a producer sends UTF-8


def _where(offset: int) -> SourcePosition:
    return SourcePosition("warden.traces.raw.v1", 0, offset, "k")


# -- govern: a governed record over the output limit -------------------------------------
def test_an_oversized_governed_trace_is_a_content_free_dead_letter_and_govern_goes_on(wiring: Wiring) -> None:
    rng = random.Random(1)
    big = trace_for("poison", "m", error=False, rng=rng)
    # Non-ASCII text doubles as JSON escapes: the governed record outgrows the raw one.
    big["input_messages"] = [{"role": "user", "content": f"{SECRET} " + "é" * 30_000}]
    assert len(_raw(big)) < 64 * 1024 < 2 * 6 * 30_000
    states: dict[str, Any] = {}
    kwargs = {"received": time.time(), "bounds": wiring.bounds, "max_output_bytes": 64 * 1024}
    step = govern_one(wiring.governor, _raw(big), _where(7), states, **kwargs)
    assert step.dead is not None and step.body == b""
    letter = step.dead
    assert letter["error_kind"] == "oversized_output"
    assert big["trace_id"] in letter["reason"] and "WARDEN_MAX_OUTPUT_BYTES" in letter["reason"]
    assert letter["original_b64"] == "" and letter["offset"] == 7 and len(letter["original_sha256"]) == 64
    assert SECRET not in json.dumps(letter) and "é" not in json.dumps(letter)
    # The next record of the batch is governed as usual.
    good = govern_one(wiring.governor, _raw(trace_for("poison", "m", error=False, rng=rng)), _where(8),
                      states, **kwargs)
    assert good.dead is None and good.body and good.trace is not None


def test_an_undecodable_record_still_dead_letters_as_before(wiring: Wiring) -> None:
    step = govern_one(wiring.governor, b"{not json", _where(1), {}, received=time.time(),
                      bounds=wiring.bounds, max_output_bytes=1 << 20)
    assert step.dead is not None and step.trace is None and step.dead["error_kind"] != "oversized_output"


# -- decide: an override beyond the policy ------------------------------------------------
def test_an_override_a_century_long_is_refused_and_decide_goes_on(wiring: Wiring) -> None:
    states: dict[str, Any] = {}
    now = time.time()
    century = control_finding(OVERRIDE, "route=poison", now, state="open", reason="forever", operator="ops",
                              until=now + 100 * 365 * 86400).to_dict()
    with pytest.raises(ValueError, match="override_max_s"):
        wiring.decide(century, states)
    letter = undecidable(century, ValueError("override lasts 3.1e9s, above override_max_s"),
                         SourcePosition("warden.findings.v1", 2, 40, "poison"))
    assert letter["error_kind"] == "bad_override" and "override_max_s" in letter["reason"]
    assert "target=route=poison" in letter["reason"] and letter["original_b64"] == ""
    # Neither NaN (which never compares) nor a malformed record opens anything.
    nan = {**century, "evidence": {**century["evidence"], "until": float("nan")}}
    with pytest.raises(ValueError, match="not a time"):
        wiring.decide(nan, states)
    with pytest.raises(KeyError):
        wiring.decide({"kind": OVERRIDE}, states)
    # The same decider then applies a valid override.
    hour = control_finding(OVERRIDE, "route=poison", now, state="open", reason="incident", operator="ops",
                           until=now + 3600).to_dict()
    [signal] = wiring.decide(hour, states)
    assert signal.state.value == "open" and signal.target == "route=poison"


def test_the_cli_refuses_an_override_beyond_the_policy_at_once(settings: WardenSettings) -> None:
    now = time.time()
    with pytest.raises(typer.BadParameter, match="override_max_s"):
        override_expiry(settings, "route=r", "2999-01-01T00:00:00+00:00", now)
    with pytest.raises(typer.BadParameter, match="not an ISO time"):
        override_expiry(settings, "route=r", "someday", now)
    soon = datetime.fromtimestamp(now + 600, UTC).isoformat()
    assert override_expiry(settings, "route=r", soon, now) == pytest.approx(now + 600)


# -- event time: a trace from 2100 --------------------------------------------------------
def test_a_trace_from_2100_is_clamped_to_receive_time_and_keeps_what_it_reported(wiring: Wiring) -> None:
    trace = trace_for("future", "m", error=False, rng=random.Random(3))
    trace["timestamp"] = YEAR_2100.isoformat()
    received = time.time()
    step = govern_one(wiring.governor, _raw(trace), _where(1), {}, received=received, bounds=wiring.bounds,
                      max_output_bytes=1 << 20)
    assert step.trace is not None
    assert step.trace.timestamp.timestamp() == pytest.approx(received + wiring.bounds.skew_s)
    assert step.trace.metadata[REPORTED].startswith("2100-01-01")
    assert json.loads(step.body)["timestamp"].startswith(str(datetime.now(UTC).year))


def test_far_past_times_are_clamped_to_the_max_age() -> None:
    bounds = EventTimeBounds(skew_s=300, max_age_s=86400)
    assert bounds.clamp(0.0, received=1e9) == (1e9 - 86400, "past")
    assert bounds.clamp(float("inf"), received=1e9) == (1e9 + 300, "future")
    assert bounds.clamp(1e9 - 10, received=1e9) == (1e9 - 10, None)


def test_a_leak_dated_2100_holds_the_breaker_open_for_the_normal_cooldown_only(wiring: Wiring) -> None:
    states: dict[str, Any] = {}
    now = 1_800_000_000.0
    wiring.clock = lambda: now
    for record in (traffic_finding("leaky", "m", 100, 0, now).to_dict(),):
        wiring.decide(record, states)
    leak = {"kind": "redaction.secret_in_completion", "subject": {"route": "leaky", "model": "m"},
            "score": 1.0, "threshold": 1.0, "at": YEAR_2100.timestamp(), "severity": "critical",
            "evidence": {"entities": ["api_key"]}, "detector": "Redactor"}
    [opened] = wiring.decide(leak, states)
    assert opened.state.value == "open"
    cooldown = wiring.decider.policy.settings_for({"route": "leaky"})[1].cooldown(1)
    assert opened.at.timestamp() == now
    assert opened.evidence["cooldown_until"] == pytest.approx(now + cooldown)
    wiring.clock = lambda: now + cooldown + 0.1
    assert [s.state.value for s in wiring.tick(states)] == ["half_open"]


# -- sinks: a batch spanning more days than one insert may touch ---------------------------
@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("poison-sink")
    store = ClickHouseStore(f"chdb://{path}/ch")
    store.migrate()
    settings = WardenSettings(clickhouse_dsn=f"chdb://{path}/ch", data_dir=Path(path) / "w")
    yield Wiring(settings, Governor.__new__(Governor), BreakerDecider.__new__(BreakerDecider), store)
    store.close()


def _redacted(trace: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**trace, "redaction": {}, "refused": False, "_partition": 0, "_offset": 0, **changes}


def test_a_batch_over_150_days_is_split_and_stored(sink: Wiring) -> None:
    rng = random.Random(1)
    # Ahead of now: the table's 30-day TTL would drop older rows. (govern bounds event time;
    # this is what anyone able to write the redacted topic could still send.)
    start = datetime.now(UTC) + timedelta(days=1)
    batch = [_redacted(trace_for("days", "m", error=False, rng=rng),
                       timestamp=(start + timedelta(days=i)).isoformat()) for i in range(150)]
    assert sink.write_batch("traces", batch, [0] * len(batch), list(range(len(batch))))
    stored = sink.store.query_rows("SELECT count(), uniqExact(toDate(timestamp)) FROM traces WHERE route = 'days'")
    assert stored[0] == (150, 150)


def test_refused_rows_become_dead_letters_without_content(sink: Wiring) -> None:
    rng = random.Random(2)
    good = [_redacted(trace_for("rows", "m", error=False, rng=rng)) for _ in range(40)]
    bad = [_redacted(trace_for("rows", "m", error=False, rng=rng), input_tokens=-5,
                     output_messages=[{"role": "assistant", "content": SECRET}]),
           {"not": "a trace", "secret": SECRET}]
    batch = good[:17] + bad[:1] + good[17:] + bad[1:]
    dead_before = sink.dead_letters_stored
    assert sink.write_batch("traces", batch, [1] * len(batch), list(range(1000, 1000 + len(batch))))
    assert sink.store.query_rows("SELECT count() FROM traces WHERE route = 'rows'")[0][0] == 40
    assert sink.dead_letters_stored == dead_before + 2
    rows = sink.store.query_rows("SELECT error_kind, reason, offset FROM dead_letters "
                                 "WHERE error_kind IN ('sink_rejected', 'sink_unconvertible') ORDER BY offset")
    assert [(r[0], r[2]) for r in rows] == [("sink_rejected", 1017), ("sink_unconvertible", 1041)]
    assert all("sha256=" in r[1] and SECRET not in r[1] for r in rows)
