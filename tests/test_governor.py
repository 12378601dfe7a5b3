"""The governor without a broker: batches, checkpoints and restarts keep detector state
exact (a cache bug once reloaded the last checkpoint on every trace of a batch)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.breaking import BreakerDecider
from streams.config import WardenSettings
from streams.governor import Governor
from streams.records import InferenceTrace
from streams.redaction import load_redactor
from tests.pipeline_helpers import TEST_KEY, fast_config, trace_for


@pytest.fixture
def settings(tmp_path: Path) -> WardenSettings:
    return WardenSettings(config_dir=fast_config(tmp_path), pseudonym_key=TEST_KEY)


def _traces(n: int, error_every: int = 0) -> list[InferenceTrace]:
    rng = random.Random(3)
    return [InferenceTrace.model_validate(trace_for("support-chat", "gpt-4o-mini",
                                                    error=bool(error_every) and i % error_every != 0, rng=rng))
            for i in range(n)]


def _run(governor: Governor, traces: list[InferenceTrace], states: dict, batch: int) -> list[str]:
    kinds: list[str] = []
    for start in range(0, len(traces), batch):
        touched = set()
        for trace in traces[start:start + batch]:
            kinds += [f.kind for f in governor.govern(trace, states).findings]
            touched.add(trace.partition_key)
        saved, traffic = governor.checkpoint(touched)
        states.update(saved)
        kinds += [f.kind for f in traffic]
    return kinds


def test_every_trace_of_every_batch_reaches_the_detectors(settings: WardenSettings) -> None:
    governor = Governor.from_settings(settings, load_redactor(settings))
    states: dict = {}
    traces = _traces(40) + _traces(400, error_every=5)
    kinds = _run(governor, traces, states, batch=100)
    scope = governor._scopes["support-chat|gpt-4o-mini"]
    assert scope.seq == len(traces) == states["support-chat|gpt-4o-mini"]["seq"]
    assert "error_rate.high" in kinds


def test_a_restart_from_the_table_continues_where_it_stopped(settings: WardenSettings) -> None:
    traces = _traces(60) + _traces(300, error_every=3)
    whole: dict = {}
    expected = _run(Governor.from_settings(settings, load_redactor(settings)), traces, whole, batch=50)
    states: dict = {}
    first = _run(Governor.from_settings(settings, load_redactor(settings)), traces[:150], states, batch=50)
    second = _run(Governor.from_settings(settings, load_redactor(settings)), traces[150:], states, batch=50)
    assert [k for k in first + second if not k.startswith("ownership")] == \
        [k for k in expected if not k.startswith("ownership")]
    assert states["support-chat|gpt-4o-mini"]["error_rate"] == whole["support-chat|gpt-4o-mini"]["error_rate"]


def test_redaction_happens_before_anything_is_returned(settings: WardenSettings) -> None:
    governor = Governor.from_settings(settings, load_redactor(settings))
    raw = trace_for("support-chat", "gpt-4o-mini", error=False, rng=random.Random(1))
    raw["input_messages"][-1]["content"] = "mail me at jane.roe@example.org, card 4111 1111 1111 1111"
    out = governor.govern(InferenceTrace.model_validate(raw), {})
    text = str(out.redacted)
    assert "jane.roe@example.org" not in text and "4111 1111 1111 1111" not in text
    assert out.redacted["redaction"]["counts"] == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "PRINCIPAL": 1}
    assert out.redacted["cost_usd"] is None or out.redacted["cost_usd"] >= 0


def test_a_replayed_batch_is_not_applied_twice_and_re_emits_its_findings(settings: WardenSettings) -> None:
    traces = _traces(100) + _traces(50, error_every=10)  # the burst trips inside the last batch
    governor = Governor.from_settings(settings, load_redactor(settings))
    states: dict = {}
    emitted: list[str] = []
    for start in range(0, len(traces), 50):
        touched = set()
        for offset, trace in enumerate(traces[start:start + 50], start):
            emitted += [f.finding_id for f in governor.govern(trace, states, (0, offset)).findings]
            touched.add(trace.partition_key)
        saved, _ = governor.checkpoint(touched)
        states.update(saved)
    before = dict(states["support-chat|gpt-4o-mini"])
    # A crash after the last checkpoint was written but before offsets were committed:
    # a new worker replays the last batch from Kafka.
    again = Governor.from_settings(settings, load_redactor(settings))
    replayed = [f.finding_id for offset, trace in enumerate(traces[100:150], 100)
                for f in again.govern(trace, states, (0, offset)).findings]
    last_batch = [f.finding_id for offset, trace in enumerate(traces[100:150], 100)
                  for f in governor._scopes["support-chat|gpt-4o-mini"].replayed(0, offset)]
    assert last_batch and replayed == last_batch and set(replayed) <= set(emitted)
    assert again._scopes["support-chat|gpt-4o-mini"].seq == before["seq"]
    assert again._scopes["support-chat|gpt-4o-mini"].error_rate.to_state() == before["error_rate"]


def test_an_error_burst_on_a_quiet_ab_arm_opens_its_breaker(tmp_path: Path) -> None:
    """Issue 19: one arm of a quiet A/B route (a call every 30 s each, 0.5 % errors) fails
    15 of 31 calls. Neither window fills; the burst test's ``error_rate.high`` goes the
    error-rate path to the breaker policy and opens that arm (the other arm is half the
    route's capacity, so the cap allows it)."""
    settings = WardenSettings(config_dir=fast_config(tmp_path), pseudonym_key=TEST_KEY)
    governor = Governor.from_settings(settings, load_redactor(settings))
    decider = BreakerDecider.from_settings(settings)
    rng, states, breaker_states = random.Random(5), {}, {}
    start = datetime(2026, 12, 1, tzinfo=UTC)
    burst = {0, 2, 3, 5, 8, 9, 11, 14, 17, 18, 20, 23, 26, 28, 30}
    calls = [(arm, i, i == 150 and arm == "quiet") for i in range(300) for arm in ("quiet", "other")]
    calls += [("quiet", 300 + i, i in burst) for i in range(31)]
    signals, findings = [], []
    for n, (arm, i, failed) in enumerate(calls):
        raw = trace_for("assistant-ab", "claude-3-5-haiku" if arm == "quiet" else "gpt-4o-mini",
                        error=failed, rng=rng)
        raw["timestamp"] = (start + timedelta(seconds=30.0 * i + (15.0 if arm == "other" else 0.0))).isoformat()
        trace = InferenceTrace.model_validate(raw)
        for finding in governor.govern(trace, states).findings:
            findings.append(finding)
            signals += decider.on_finding(finding, breaker_states)
        if n % 20 == 19:  # a batch: traffic summaries feed the route's capacity inventory
            saved, traffic = governor.checkpoint({trace.partition_key})
            states.update(saved)
            for summary in traffic:
                signals += decider.on_finding(summary, breaker_states)
    high = [f for f in findings if f.kind == "error_rate.high"]
    assert high and high[0].evidence["window"] == "burst" and high[0].severity == "critical"
    assert high[0].subject == {"route": "assistant-ab", "model": "claude-3-5-haiku"}
    assert high[0].at - (start + timedelta(seconds=30.0 * 300)).timestamp() <= 300.0
    assert [(s.target, s.state.value) for s in signals][:1] == \
        [("model=claude-3-5-haiku,route=assistant-ab", "open")]
    assert decider.alert_only == []
