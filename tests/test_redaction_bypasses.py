"""Every bypass of issue 17 as a regression case through ``Redactor.redact_trace``.

Structured data (values under sensitive keys, JSON in strings, escaped JSON, keys that
are e-mail addresses), Unicode tricks, encodings, inline images, hostile nesting,
placeholders by shape, and the fail-closed path. A hypothesis property plants a value
under a sensitive key anywhere in a random JSON structure: it never survives.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from detectors.redaction.keys import EXACT_KEYS, SUFFIX_KEYS, key_entity, value_fits
from detectors.redaction.policy import RedactionPolicy
from detectors.redaction.redactor import FAILED, Redactor
from detectors.redaction.validators import is_template_value

POLICY = RedactionPolicy.load("deploy/config/redaction-policy.yaml")
REDACTOR = Redactor(POLICY, key=b"bypass-test-key-0123456789")


def _redacted(trace: dict[str, Any]) -> tuple[str, dict[str, int]]:
    out, record = REDACTOR.redact_trace(trace)
    return json.dumps(out, ensure_ascii=False), record.counts


def _user(content: str) -> dict[str, Any]:
    return {"input_messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize(("trace", "secret", "entity"), [
    ({"tool_calls": [{"name": "x", "arguments": {"password": "Tr0ub4dor&3x!"}}]}, "Tr0ub4dor", "PASSWORD"),
    ({"tool_calls": [{"name": "x", "arguments": json.dumps({"db": {"password": "Tr0ub4dor&3x!"}})}]},
     "Tr0ub4dor", "PASSWORD"),
    ({"tool_calls": [{"name": "x", "result": {"client_secret": "plainwordsecretvalue"}}]},
     "plainwordsecretvalue", "GENERIC_SECRET"),
    ({"metadata": {"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}},
     "wJalrXUtnFEMI", "AWS_SECRET_ACCESS_KEY"),
    ({"metadata": {"customer": {"ssn": "123456789", "dob": "02/03/1981", "passport": "X1234567"}}},
     "123456789", "US_SSN"),
    ({"metadata": {"customer": {"dob": "02/03/1981"}}}, "1981", "DATE_OF_BIRTH"),
    ({"metadata": {"customer": {"passport_number": "X1234567"}}}, "X1234567", "PASSPORT"),
    ({"metadata": {"contact": {"phone": 5551234567}}}, "5551234567", "PHONE_NUMBER"),
    ({"metadata": {"ann.lee@example.org": "vip"}}, "ann.lee@example.org", "EMAIL_ADDRESS"),
    (_user('config {\\"password\\": \\"Tr0ub4dor&3x!\\"} here'), "Tr0ub4dor", "PASSWORD"),
    (_user(json.dumps({"messages": [{"content": {"api_key": "k3y-of-no-known-format"}}]})),
     "k3y-of-no-known-format", "GENERIC_SECRET"),
], ids=["tool-args", "tool-args-json-string", "tool-result", "metadata-aws", "nested-ssn", "dob",
        "passport", "phone-number-type", "key-is-email", "escaped-json", "json-content"])
def test_structured_values_are_redacted_by_their_key(trace: dict[str, Any], secret: str, entity: str) -> None:
    text, counts = _redacted(trace)
    assert secret not in text
    assert counts.get(entity, 0) >= 1


@pytest.mark.parametrize(("content", "secret"), [
    ("card ４１１１ １１１１ １１１１ １１１１", "１１１１ １１１１"),
    ("card 4111\u200b1111\u200b1111\u200b1111", "1111\u200b1111"),
    ("card 4111\u00a01111\u00a01111\u00a01111", "1111\u00a01111"),
    ("card 4111\u20131111\u20131111\u20131111", "1111\u20131111"),
    ("ssn \u202e536-22-1234\u202c please", "22-1234"),
    ("call +1 (٢٠٢) 555-0143", "555-0143"),
], ids=["full-width", "zero-width", "nbsp", "en-dash", "bidi", "arabic-indic"])
def test_unicode_disguises_are_normalised_and_the_original_masked(content: str, secret: str) -> None:
    text, counts = _redacted(_user(content))
    assert secret not in text
    assert counts


def test_offsets_refer_to_the_original_characters() -> None:
    content = "x ４１１１ １１１１ １１１１ １１１１ y"
    result = REDACTOR.redact(content)
    (finding,) = result.findings
    assert content[finding.start:finding.end] == "４１１１ １１１１ １１１１ １１１１"
    assert result.text == "x [CREDIT_CARD] y"


@pytest.mark.parametrize(("content", "secret"), [
    ("login?user=ann%40example.org&next=%2F", "ann%40example.org"),
    ("blob " + base64.b64encode(b"aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzK9q2LmX8vR1").decode(),
     base64.b64encode(b"aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzK9q2LmX8vR1").decode()),
    ("token " + base64.urlsafe_b64encode(b"contact me at ann.lee@example.org please").decode(),
     base64.urlsafe_b64encode(b"contact me at ann.lee@example.org please").decode()),
], ids=["percent-encoded", "base64", "base64url"])
def test_encoded_values_are_decoded_and_the_encoded_span_masked(content: str, secret: str) -> None:
    text, counts = _redacted(_user(content))
    assert secret not in text
    assert counts


def test_an_inline_image_is_skipped_exactly_not_what_follows() -> None:
    image = "data:image/png;base64," + base64.b64encode(bytes(range(256)) * 4).decode()
    text, counts = _redacted(_user(f"{image} card 4111 1111 1111 1111"))
    assert "4111 1111" not in text and counts == {"CREDIT_CARD": 1}
    assert image in text  # the image itself is not mangled


def test_hostile_nesting_does_not_take_the_trace_out_of_governance() -> None:
    content = "[" * 5000 + " card 4111 1111 1111 1111 ssn 536-22-1234"
    text, counts = _redacted(_user(content))
    assert "4111 1111" not in text and "536-22-1234" not in text
    deep = json.dumps(json.loads("[" * 900 + '"4111 1111 1111 1111"' + "]" * 900))
    text, _ = _redacted({"tool_calls": [{"name": "x", "arguments": deep}]})
    assert "4111 1111" not in text


@pytest.mark.parametrize("value", ["Somewhere42!", "Therefore-9x", "yourself2024!", "Todo4ever#"])
def test_words_inside_real_passwords_do_not_make_them_placeholders(value: str) -> None:
    text, counts = _redacted(_user(f"the password is {value}"))
    assert value not in text and counts == {"PASSWORD": 1}


@pytest.mark.parametrize("value", ["<your-key>", "sk-...", "xxxxxxxxxxxx", "YOUR_API_KEY", "your-api-key-here",
                                   "${API_KEY}", "********", "{{ secret }}"])
def test_placeholders_are_recognised_by_their_shape(value: str) -> None:
    assert is_template_value(value)
    text, counts = _redacted({"metadata": {"api_key": value}})
    assert value.replace('"', '\\"') in text or json.dumps(value)[1:-1] in text
    assert counts == {}


def test_a_failing_field_is_dropped_with_a_marker_and_the_trace_goes_on() -> None:
    class Broken:
        name, entities = "broken", ("PERSON",)

        def find(self, text: str) -> list[Any]:
            if "boom" in text:
                raise RuntimeError("model crashed")
            return []

    redactor = Redactor(POLICY, key=b"bypass-test-key-0123456789", recognizers=[Broken()])
    out, record = redactor.redact_trace({"input_messages": [
        {"role": "user", "content": "boom: my card is 4111 1111 1111 1111"},
        {"role": "user", "content": "fine"}]})
    assert out["input_messages"][0]["content"] == f"[{FAILED}:RuntimeError]"
    assert out["input_messages"][1]["content"] == "fine"
    assert record.counts == {FAILED: 1}


# --- property: a planted value under a sensitive key never survives ------------------------

SENSITIVE_KEYS = sorted({*EXACT_KEYS, *(suffix for suffix, _ in SUFFIX_KEYS), "db_password", "x-api-key",
                         "clientSecret", "AWS_SECRET_ACCESS_KEY", "customer_ssn"})
_ALPHABET = string.ascii_letters + string.digits + "!#%&*+-./:=?@^_~ "
planted_values = st.text(_ALPHABET, min_size=8, max_size=40).filter(
    lambda v: not is_template_value(v) and v.strip() == v and len(set(v)) > 3
    # a character the surrounding keys and strings never hold, so only the plant can match
    and any(c not in string.ascii_lowercase + " " for c in v))
scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(string.ascii_lowercase + " ", max_size=12)
keys = st.text(string.ascii_lowercase, min_size=1, max_size=8)


@st.composite
def planted_document(draw: st.DrawFn) -> tuple[Any, str]:
    value = draw(planted_values)
    key = draw(st.sampled_from(SENSITIVE_KEYS))
    entity = key_entity(key)
    # "email": "00000123" cannot be an e-mail address: scanned as text, not masked whole
    assume(entity is not None and value_fits(entity, value))
    node: Any = {key: value}
    for _ in range(draw(st.integers(0, 6))):
        wrap = draw(st.sampled_from(["dict", "list", "string"]))
        if wrap == "dict":
            siblings = draw(st.dictionaries(keys, scalars, max_size=3))
            siblings.pop(name := draw(keys), None)
            node = {**siblings, name: node}
        elif wrap == "list":
            node = [*draw(st.lists(scalars, max_size=2)), node]
        else:
            node = json.dumps(node)  # JSON held in a string, possibly inside another
    return node, value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted_document(), st.sampled_from(["arguments", "result", "metadata", "content"]))
def test_a_value_under_a_sensitive_key_never_survives(planted: tuple[Any, str], where: str) -> None:
    document, value = planted
    if where == "metadata":
        trace: dict[str, Any] = {"metadata": {"extra": document}}
    elif where == "content":
        trace = _user(document if isinstance(document, str) else json.dumps(document))
    else:
        trace = {"tool_calls": [{"name": "tool", where: document}]}
    text, _ = _redacted(trace)
    assert value not in text and json.dumps(value)[1:-1] not in text


@given(st.text(string.ascii_letters, min_size=12, max_size=40))
@settings(max_examples=300, deadline=None)
def test_random_letter_tokens_are_never_templates(token: str) -> None:
    # The canary found sk_live_TkaxoIvVPVElMyUdElALxItP taken for a template ("My").
    if len(set(token.lower())) > 6:
        assert not is_template_value(f"sk_live_{token}")


@pytest.mark.parametrize("value", ["TmQMRV%27fBiT61", "ab%22cd%20ef9!", "x%2Fy%3Dz7#q"])
def test_percent_escapes_inside_a_value_do_not_split_it(value: str) -> None:
    # The canary found a password holding "%27": decoded, the quote ended the value early.
    text, counts = _redacted(_user(f"connect with postgres://svc:{value}@db.internal.example:5432/app "
                                   f"and the password is {value} ok"))
    assert value not in text and counts == {"PASSWORD": 2}


def test_escaped_json_with_a_percent_escape_in_the_value() -> None:
    text, counts = _redacted(_user('use {\\"password\\": \\"TmQMRV%27fBiT61\\"} for it'))
    assert "TmQMRV" not in text and counts == {"PASSWORD": 1}


# --- slice additions on the t16 base ---------------------------------------------------------

@pytest.mark.parametrize(("content", "secret"), [
    ("password%3DTr0ub4dor%263x", "Tr0ub4dor"),
    ("GET /login?user=bob&password=Tr0ub4dor%263x HTTP/1.1", "Tr0ub4dor"),
    ("blob " + base64.b64encode(json.dumps({"access_token": "plainwordsecretvalue"}).encode()).decode(),
     base64.b64encode(json.dumps({"access_token": "plainwordsecretvalue"}).encode()).decode()),
    ("key " + base64.b64encode(b"AKIAZ3MHLQ7RXK2PVW4T").decode(), base64.b64encode(b"AKIAZ3MHLQ7RXK2PVW4T").decode()),
    ('config {"client_secret": "plainwordsecretvalue"} here', "plainwordsecretvalue"),
    ('config {\\"client_secret\\": \\"plainwordsecretvalue\\"} here', "plainwordsecretvalue"),
    ("settings = {'db_password': 'correct horse battery'}", "correct horse"),
], ids=["percent-key-value", "percent-in-query", "base64-json-token", "base64-akia", "json-in-prose",
        "escaped-json-in-prose", "python-dict-in-prose"])
def test_more_encoded_and_embedded_values(content: str, secret: str) -> None:
    text, counts = _redacted(_user(content))
    assert secret not in text and counts


def test_look_alikes_under_keys_are_not_masked() -> None:
    trace = {"metadata": {"phone": "unknown", "email": "n/a", "max_tokens": 512, "token_type": "bearer",
                          "next_page_token": "abc123", "api_key": "<your-key>", "password_policy": "strong"}}
    out, record = REDACTOR.redact_trace(trace)
    assert out == trace and record.counts == {}
    prose = '{"model": "gpt-4o", "max_tokens": "1000", "phone": "none given", "secret_name": "prod-db"}'
    text, counts = _redacted(_user("here is my request " + prose))
    assert counts == {} and json.dumps(prose)[1:-1] in text


def test_each_item_of_a_list_under_a_sensitive_key_is_masked() -> None:
    out, record = REDACTOR.redact_trace({"metadata": {"password": ["Tr0ub4dor&3x!", "Xy9#kLm2pQ", None]}})
    assert out["metadata"]["password"] == ["[PASSWORD]", "[PASSWORD]", None]
    assert record.counts == {"PASSWORD": 2}
    out, record = REDACTOR.redact_trace({"metadata": {"rows": ["mail ann.lee@example.org", "ok"]}})
    assert "ann.lee" not in json.dumps(out) and out["metadata"]["rows"][1] == "ok"


def test_a_structure_too_deep_to_walk_masks_only_its_field_and_is_recorded() -> None:
    deep: Any = "4111 1111 1111 1111"
    for _ in range(5000):  # built in Python: deeper than json.dumps can serialise
        deep = [deep]
    out, record = REDACTOR.redact_trace({"metadata": {"x": deep, "y": "mail ann.lee@example.org"},
                                         "tool_calls": [{"name": "t", "arguments": {"a": deep}}]})
    assert out["metadata"]["x"] == f"[{FAILED}:RecursionError]"
    assert out["tool_calls"][0]["arguments"] == f"[{FAILED}:RecursionError]"
    assert "ann.lee" not in out["metadata"]["y"]
    assert record.counts[FAILED] == 2 and record.counts["EMAIL_ADDRESS"] == 1
    assert {f.field for f in record.findings if f.entity == FAILED} == {"metadata.x", "tool_calls[0].arguments"}


@pytest.mark.parametrize("content", ["[" * 100_000, "{" * 50_000 + '"a": 1', '{"a": ' * 3000 + "1", "\\" * 10_000])
def test_hostile_text_never_raises(content: str) -> None:
    out, _ = REDACTOR.redact_trace(_user(content))
    assert isinstance(out["input_messages"][0]["content"], str)


def test_a_secret_does_not_hide_behind_many_harmless_encoded_runs() -> None:
    filler = " ".join(base64.b64encode(f"harmless note number {i:04d}".encode()).decode() for i in range(200))
    blob = base64.b64encode(b"aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzK9q2LmX8vR1").decode()
    text, counts = _redacted(_user(f"{filler} {blob}"))
    assert blob not in text and counts
    assert base64.b64encode(b"harmless note number 0007").decode() in text


def test_policy_keys_extend_the_lists_and_keep_old_hashes() -> None:
    plain = RedactionPolicy(version="k")
    assert plain.change_event()["keys"] == {}
    extended = RedactionPolicy(version="k", keys={"Employee-ID": "EMPLOYEE_ID"})
    assert extended.keys == {"employeeid": "EMPLOYEE_ID"} and extended.content_hash != plain.content_hash
    out, record = Redactor(extended).redact_trace({"metadata": {"employee_id": "E-12345"}})
    assert out["metadata"]["employee_id"] == "[EMPLOYEE_ID]" and record.counts == {"EMPLOYEE_ID": 1}
