"""Policy loading and actions, trace redaction, the audit record and plug-in recognizers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detectors.findings import Finding
from detectors.redaction import (
    Recognizer,
    RedactionPolicy,
    RedactionPolicyError,
    Redactor,
    Span,
    TraceRedaction,
)
from streams.records import InferenceTrace
from tests.redaction_canaries import Canaries, assert_no_canary

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "deploy" / "config" / "redaction-policy.yaml"
KEY = b"test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def shipped() -> RedactionPolicy:
    return RedactionPolicy.load(POLICY)


@pytest.fixture(scope="module")
def redactor(shipped: RedactionPolicy) -> Redactor:
    return Redactor(shipped, KEY)


def _trace(**extra: object) -> dict:
    trace = InferenceTrace(
        trace_id="t-1", span_id="s-1", timestamp=datetime(2025, 1, 1, tzinfo=UTC), tenant="acme",
        application="support", route="chat", provider="openai", request_model="gpt-4o",
        principal="ann@example.org", **extra,
    )
    return trace.model_dump(mode="json")


def test_shipped_policy_loads_with_version_and_stable_hash(shipped: RedactionPolicy) -> None:
    assert shipped.version
    again = RedactionPolicy.load(POLICY)
    assert again.content_hash == shipped.content_hash
    event = shipped.change_event()
    assert event["version"] == shipped.version and event["content_hash"] == shipped.content_hash
    assert KEY.decode() not in json.dumps(event)


def test_hash_changes_with_meaning(tmp_path: Path) -> None:
    a = RedactionPolicy(version="1", entities={"EMAIL_ADDRESS": "mask"})
    b = RedactionPolicy(version="1", entities={"EMAIL_ADDRESS": "drop_field"})
    assert a.content_hash != b.content_hash


def test_bad_policy_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: '1'\nentities:\n  EMAIL_ADDRESS: shred\n")
    with pytest.raises(RedactionPolicyError, match="EMAIL_ADDRESS"):
        RedactionPolicy.load(path)
    path.write_text("version: '1'\npseudonym_template: '[{entity}]'\n")
    with pytest.raises(RedactionPolicyError, match="digest"):
        RedactionPolicy.load(path)


def test_pseudonym_policy_without_key_is_a_clear_error(shipped: RedactionPolicy) -> None:
    with pytest.raises(RedactionPolicyError, match="WARDEN_REDACTION_KEY"):
        Redactor(shipped, None)
    assert shipped.resolve_key({}) is None or Path("/run/secrets/warden_redaction_key").is_file()
    assert shipped.resolve_key({"WARDEN_REDACTION_KEY": KEY.decode()}) == KEY
    with pytest.raises(RedactionPolicyError, match="at least 16"):
        shipped.resolve_key({"WARDEN_REDACTION_KEY": "short"})


def test_key_never_in_repr(redactor: Redactor) -> None:
    assert KEY.decode() not in repr(redactor)


def test_actions_mask_pseudonym_drop() -> None:
    policy = RedactionPolicy(
        version="a", entities={"EMAIL_ADDRESS": "pseudonym", "CREDIT_CARD": "drop_field"}
    )
    r = Redactor(policy, KEY)
    text = "Ann <ann@example.org> and ANN@EXAMPLE.ORG, ip 10.1.2.3"
    out = r.redact(text)
    tokens = re.findall(r"\[EMAIL_ADDRESS:[0-9a-f]{10}\]", out.text)
    assert len(tokens) == 2 and tokens[0] == tokens[1]  # case-normalised: analysts can join
    assert "[IP_ADDRESS]" in out.text and "ann@" not in out.text.lower()
    dropped = r.redact("card 4111 1111 1111 1111 for ann@example.org")
    assert dropped.dropped and dropped.text == "[DROPPED:CREDIT_CARD]"
    assert {f.entity for f in dropped.findings} == {"CREDIT_CARD", "EMAIL_ADDRESS"}
    other_key = Redactor(policy, b"another-key-0123456789").redact(text)
    assert other_key.text != out.text


def test_disabled_entities_are_not_looked_for() -> None:
    r = Redactor(RedactionPolicy(version="d", disabled=["IP_ADDRESS"]))
    assert r.redact("ip 10.1.2.3").findings == ()


def test_redact_trace_paths_offsets_and_untouched_ids(redactor: Redactor) -> None:
    trace = _trace(
        input_messages=[{"role": "user", "content": "hi"}, {"role": "user", "content": "mail bob@example.com"}],
        tool_calls=[
            {"name": "crm", "arguments": {"query": "ssn 536-22-1234", "page": 2}, "result": None},
            {"name": "crm", "arguments": '{"q": {"card": "4111 1111 1111 1111"}}', "result": "ok"},
        ],
        error_message="failed for 10.1.2.3",
        metadata={"customer_email": "carol@example.com", "ticket": "T-1"},
    )
    original = json.dumps(trace)
    out, record = redactor.redact_trace(trace)
    assert json.dumps(trace) == original  # input not modified
    where = {(f.entity, f.field) for f in record.findings}
    assert where == {
        ("EMAIL_ADDRESS", "input_messages[1].content"),
        ("US_SSN", "tool_calls[0].arguments.query"),
        ("CREDIT_CARD", "tool_calls[1].arguments.q.card"),
        ("IP_ADDRESS", "error_message"),
        ("EMAIL_ADDRESS", "metadata.customer_email"),
        ("PRINCIPAL", "principal"),
    }
    ssn = next(f for f in record.findings if f.entity == "US_SSN")
    assert "ssn 536-22-1234"[ssn.start : ssn.end] == "536-22-1234"
    assert json.loads(out["tool_calls"][1]["arguments"]) == {"q": {"card": "[CREDIT_CARD]"}}
    for field in ("trace_id", "span_id", "route", "tenant", "request_model", "timestamp"):
        assert out[field] == trace[field]
    assert out["principal"].startswith("[PRINCIPAL:")
    assert record.counts == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 2, "IP_ADDRESS": 1, "PRINCIPAL": 1, "US_SSN": 1}
    InferenceTrace.model_validate(out)  # still a valid trace


def test_record_is_compact_and_free_of_values(redactor: Redactor, shipped: RedactionPolicy) -> None:
    trace, planted = Canaries(seed=3).plant_trace(_trace())
    out, record = redactor.redact_trace(trace)
    assert_no_canary(out, planted)
    stored = record.to_dict()
    assert stored["policy_version"] == shipped.version and stored["policy_hash"] == shipped.content_hash
    assert_no_canary(stored, planted)
    assert TraceRedaction.from_dict(json.loads(json.dumps(stored))) == record
    finding = record.to_finding({"route": "chat", "model": "gpt-4o"}, at=1.0)
    assert isinstance(finding, Finding) and finding.kind == "redaction.applied"
    assert finding.severity == "warning" and finding.evidence["counts"] == record.counts
    assert_no_canary(finding.to_dict(), planted)


def test_long_integer_in_tool_arguments_is_scanned(redactor: Redactor) -> None:
    trace = _trace(tool_calls=[{"name": "pay", "arguments": {"card": 4111111111111111, "qty": 3}}])
    out, record = redactor.redact_trace(trace)
    assert out["tool_calls"][0]["arguments"] == {"card": "[CREDIT_CARD]", "qty": 3}


class _Names:
    """A toy NER stand-in: a plug-in recognizer for PERSON."""

    name = "toy-ner"
    entities = ("PERSON",)

    def find(self, text: str) -> list[Span]:
        i = text.find("Ann Lee")
        return [Span("PERSON", i, i + 7, source=self.name)] if i >= 0 else []


def test_plugin_recognizer_for_names() -> None:
    assert isinstance(_Names(), Recognizer)
    r = Redactor(RedactionPolicy(version="n"), recognizers=[_Names()])
    out = r.redact("Ann Lee wrote from ann@example.org")
    assert out.text == "[PERSON] wrote from [EMAIL_ADDRESS]"
