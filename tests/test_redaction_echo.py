"""Echoes and leaks in completions (issue 19): PII the user (or a tool) gave in the same
request and the answer repeats is an echo: redacted, counted, no finding. PII only the
answer holds is a leak, and a secret in the answer is a finding even when echoed."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from detectors.breaker import BreakerPolicyEngine, load_policy
from detectors.findings import Finding
from detectors.redaction.echo import canonical_value, echo_sources, field_text, split_echoes
from detectors.redaction.policy import RedactionPolicy
from detectors.redaction.redactor import EntityFinding, Redactor
from streams.config import CONFIG_DIR, WardenSettings
from streams.governor import Governor
from streams.metrics import METRICS
from streams.records import InferenceTrace
from streams.redaction import load_redactor
from tests.pipeline_helpers import TEST_KEY, fast_config, trace_for

AWS_KEY = "AKIA" + "Q7ZP4M2XW8RT3KVN"  # split so secret scanners do not flag the test itself
START = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(RedactionPolicy.load(CONFIG_DIR / "redaction-policy.yaml"), key=TEST_KEY.encode())


@pytest.fixture
def settings(tmp_path: Path) -> WardenSettings:
    return WardenSettings(config_dir=fast_config(tmp_path), pseudonym_key=TEST_KEY)


@pytest.fixture
def governor(settings: WardenSettings) -> Governor:
    return Governor.from_settings(settings, load_redactor(settings))


def doc(user: str, answer: str, *, system: str = "You help customers.", **extra: Any) -> dict[str, Any]:
    return {"input_messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "output_messages": [{"role": "assistant", "content": answer}], **extra}


def split(redactor: Redactor, trace: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(echoed entities, leaked entities) of the trace's answer."""
    _, record = redactor.redact_trace(trace)
    result = split_echoes(trace, record.findings, redactor.fingerprint)
    return [f.entity for f in result.echoed], [f.entity for f in result.leaked]


# -- classification ----------------------------------------------------------------------

def test_an_email_echoed_in_another_case_is_an_echo(redactor: Redactor) -> None:
    assert split(redactor, doc("I'm Ann.Lee@Example.ORG", "We'll write to ann.lee@example.org.")) == \
        (["EMAIL_ADDRESS"], [])


def test_a_phone_echoed_in_another_format_is_an_echo(redactor: Redactor) -> None:
    assert split(redactor, doc("call +1 (415) 555-0132", "We will call 415.555.0132 today.")) == \
        (["PHONE_NUMBER"], [])
    # full-width digits and percent-encoding are read as the detectors read them
    assert split(redactor, doc("my number: ４１５-５５５-０１３２", "Calling (415) 555-0132.")) == \
        (["PHONE_NUMBER"], [])
    assert split(redactor, doc('{"contact": "ann%40example.org"}', "Noted: ann@example.org")) == \
        (["EMAIL_ADDRESS"], [])


def test_an_email_not_in_the_input_is_a_leak_beside_an_echo(redactor: Redactor) -> None:
    echoed, leaked = split(redactor, doc("my mail is ann.lee@example.org",
                                         "I wrote to ann.lee@example.org and to bob.ray@example.net."))
    assert echoed == ["EMAIL_ADDRESS"] and leaked == ["EMAIL_ADDRESS"]
    assert split(redactor, doc("what is my card?", "Your card is 4111 1111 1111 1111.")) == \
        ([], ["CREDIT_CARD"])


def test_only_user_and_tool_input_can_be_echoed(redactor: Redactor) -> None:
    # the system prompt (operator context) and the model's own earlier turns are not sources
    assert split(redactor, doc("who is on call?", "Mail oncall.lead@example.org.",
                               system="On-call: oncall.lead@example.org")) == ([], ["EMAIL_ADDRESS"])
    history = {"input_messages": [{"role": "assistant", "content": "Try dana@example.org"},
                                  {"role": "user", "content": "again?"}],
               "output_messages": [{"role": "assistant", "content": "dana@example.org"}]}
    assert split(redactor, history) == ([], ["EMAIL_ADDRESS"])
    # a tool message and a tool call's result are the request's input, tagged as such
    tool = doc("book it", "Booked for kim@example.org.",
               tool_calls=[{"name": "crm", "arguments": {"id": 7}, "result": '{"email": "KIM@example.org"}'}])
    _, record = redactor.redact_trace(tool)
    result = split_echoes(tool, record.findings, redactor.fingerprint)
    assert [f.entity for f in result.echoed] == ["EMAIL_ADDRESS"] and result.echo_sources == ("tool",)


def test_a_secret_echoed_is_classified_as_an_echo_by_the_pure_split(redactor: Redactor) -> None:
    """The split only classifies; the governor still reports echoed secrets (below)."""
    assert split(redactor, doc(f"is this valid? {AWS_KEY}", f"{AWS_KEY} looks like an AWS key.")) == \
        (["AWS_ACCESS_KEY_ID"], [])
    assert split(redactor, doc("give me a key", f"Sure: {AWS_KEY}")) == ([], ["AWS_ACCESS_KEY_ID"])


def test_values_are_compared_only_through_the_keyed_fingerprint(redactor: Redactor) -> None:
    trace = doc("card 4111 1111 1111 1111", "Your card 4111-1111-1111-1111 is on file.")
    _, record = redactor.redact_trace(trace)
    seen: list[tuple[str, str]] = []

    def fingerprint(group: str, value: str) -> str:
        seen.append((group, value))
        return redactor.fingerprint(group, value)

    result = split_echoes(trace, record.findings, fingerprint)
    assert [f.entity for f in result.echoed] == ["CREDIT_CARD"] and not result.leaked
    assert seen == [("digits", "4111111111111111")] * 2
    # digests are keyed per redactor: useless outside the process, never stored
    other = Redactor(redactor.policy, key=TEST_KEY.encode())
    assert other.fingerprint("digits", "1") != redactor.fingerprint("digits", "1")
    assert "4111" not in redactor.fingerprint("digits", "4111111111111111")


def test_paths_resolve_as_the_walk_writes_them_and_unresolvable_ones_stay_leaks() -> None:
    assert field_text({"t": [{"args": '{"to": ["x@y.org"]}'}]}, "t[0].args.to[0]") == "x@y.org"
    assert field_text({"m": {"a.b@c.org": {"k": "v"}}}, "m.a.b@c.org#key") == "a.b@c.org"
    assert field_text({"m": {"a.b": {"c": "z"}}}, "m.a.b.c") == "z"
    assert field_text({"t": json.dumps(json.dumps("mail x@y.org"))}, "t") == "mail x@y.org"
    assert field_text({"t": "not json {"}, "t.x") is None
    found = [EntityFinding("EMAIL_ADDRESS", "input_messages[0].content", 0, 7),
             EntityFinding("EMAIL_ADDRESS", "output_messages[3].content", 0, 7)]
    trace = {"input_messages": [{"role": "user", "content": "a@b.org"}],
             "output_messages": [{"role": "assistant", "content": "a@b.org"}]}
    result = split_echoes(trace, found, lambda g, v: v)
    assert len(result.leaked) == 1 and not result.echoed


def test_canonical_forms() -> None:
    assert canonical_value("PHONE_NUMBER", "+44 20 7946 0958") == canonical_value("PHONE_NUMBER", "020 7946 0958")
    assert canonical_value("PHONE_NUMBER", "415 555 0132") == canonical_value("US_SSN", "4155550132")
    assert canonical_value("IBAN_CODE", "de89 3704 0044") == ("IBAN_CODE", "DE8937040044")
    assert canonical_value("PHONE_NUMBER", "12-34") is None  # too short to identify: a leak
    assert canonical_value("AWS_ACCESS_KEY_ID", AWS_KEY) != canonical_value("AWS_ACCESS_KEY_ID", AWS_KEY.lower())
    assert echo_sources({"input_messages": [{"role": "User"}, {"role": "system"}, "junk"]}) == \
        {"input_messages[0]": "user"}


# -- the governor ------------------------------------------------------------------------

def chat(user: str, answer: str, at: int = 0, **extra: Any) -> InferenceTrace:
    trace = trace_for("support-chat", "gpt-4o-mini", error=False, rng=random.Random(5))
    trace.update(doc(user, answer), trace_id=uuid.uuid4().hex,
                 timestamp=(START + timedelta(seconds=at)).isoformat(), **extra)
    return InferenceTrace.model_validate(trace)


def redaction_findings(governor: Governor, trace: InferenceTrace) -> dict[str, Finding]:
    found = governor.govern(trace, {}).findings
    return {f.kind: f for f in found if f.kind.startswith("redaction.")}


def echo_count(category: str, source: str) -> float:
    return METRICS.redaction_echoes.labels(category, source)._value.get()


def test_an_echo_raises_no_finding_but_stays_redacted_and_counted(governor: Governor) -> None:
    before = echo_count("pii", "user")
    out = governor.govern(chat("I'm ann.lee@example.org, call +1 (415) 555-0132 please",
                               "Done: we will write to Ann.Lee@example.org and call 415-555-0132."), {})
    assert [f for f in out.findings if f.kind.startswith("redaction.")] == []
    stored = json.dumps(out.redacted)
    assert "example.org" not in stored.lower() and "555-0132" not in stored  # redaction never changes
    assert out.redacted["redaction"]["echoed"] == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert out.redacted["redaction"]["counts"]["EMAIL_ADDRESS"] == 2
    assert echo_count("pii", "user") == before + 2


def test_a_leak_is_a_warning_with_the_echoes_beside_it_counted(governor: Governor) -> None:
    found = redaction_findings(governor, chat("my mail is ann.lee@example.org",
                                              "I wrote to ann.lee@example.org; also bob.ray@example.net."))
    leak = found.pop("redaction.pii_in_completion")
    assert found == {} and leak.severity == "warning"
    assert leak.evidence["count"] == 1 and leak.evidence["echoed"] == 1
    assert leak.evidence["entities"] == ["EMAIL_ADDRESS"]
    assert "example" not in json.dumps(leak.to_dict())  # names and counts, never values


def test_echo_only_within_the_same_trace(governor: Governor) -> None:
    """A value the user gave in an earlier request is not an echo in a later one."""
    assert redaction_findings(governor, chat("I'm ann.lee@example.org", "Hi!", at=0)) == {}
    later = redaction_findings(governor, chat("what is my mail?", "It is ann.lee@example.org.", at=1))
    assert later["redaction.pii_in_completion"].evidence["echoed"] == 0


def test_a_secret_in_the_answer_is_critical_echoed_or_not(governor: Governor) -> None:
    echoed = redaction_findings(governor, chat(f"is this key valid? {AWS_KEY}", f"The key {AWS_KEY} is AWS."))
    assert list(echoed) == ["redaction.secret_in_completion"]
    assert echoed["redaction.secret_in_completion"].severity == "critical"
    assert echoed["redaction.secret_in_completion"].evidence["echoed"] == 1
    leaked = redaction_findings(governor, chat("give me an example key", f"Sure: {AWS_KEY}", at=1))
    assert leaked["redaction.secret_in_completion"].severity == "critical"
    assert leaked["redaction.secret_in_completion"].evidence["echoed"] == 0


def engine_for(settings: WardenSettings) -> BreakerPolicyEngine:
    engine = BreakerPolicyEngine(load_policy(settings.config_dir / "breaker-policy.yaml"))
    for model in ("gpt-4o-mini", "gpt-4o"):  # the route's capacity: a second model serves
        engine.on_trace({"route": "support-chat", "model": model}, True, now=0.0)
    return engine


def feed(governor: Governor, engine: BreakerPolicyEngine, traces: list[InferenceTrace]) -> list[str]:
    states: list[str] = []
    for trace in traces:
        for finding in governor.govern(trace, {}).findings:
            states += [t.to_state for t in engine.on_finding(finding, now=finding.at - START.timestamp())]
    return states


def test_echoes_never_trip_the_breaker_and_leaks_do_per_policy(
        governor: Governor, settings: WardenSettings) -> None:
    engine = engine_for(settings)
    echoes = [chat(f"reach me at user{i}@example.org or +1 415 555 01{i:02d}",
                   f"We will reach you at USER{i}@example.org, (415) 555-01{i:02d}.", at=i) for i in range(20)]
    assert feed(governor, engine, echoes) == []
    # PII leaks: 3 within 600 s open the breaker (two are not enough)
    leaks = [chat("who else asked?", f"Also other{i}@example.net asked that.", at=100 + i) for i in range(3)]
    assert feed(governor, engine, leaks[:2]) == []
    assert feed(governor, engine, leaks[2:]) == ["open"]


def test_an_echoed_secret_trips_the_breaker_at_once(governor: Governor, settings: WardenSettings) -> None:
    engine = engine_for(settings)
    assert feed(governor, engine, [chat(f"why does {AWS_KEY} fail?", f"{AWS_KEY} is disabled.")]) == ["open"]
