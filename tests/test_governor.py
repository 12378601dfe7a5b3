"""The governor without a broker: batches, checkpoints and restarts keep detector state
exact (a cache bug once reloaded the last checkpoint on every trace of a batch)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

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
