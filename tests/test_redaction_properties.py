"""Property tests: redaction never raises, never leaves a found value, offsets map back."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.redaction import RedactionPolicy, Redactor
from tests.redaction_canaries import Canaries

_CANARIES = Canaries(seed=11)
PLANTED = [_CANARIES.sentence(e, v) for e, v in _CANARIES.values().items()]
KEY = b"property-test-key-0123456789"


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    policy = RedactionPolicy(version="prop", entities={"EMAIL_ADDRESS": "pseudonym", "PHONE_NUMBER": "pseudonym"})
    return Redactor(policy, KEY)


def _rebuild(redactor: Redactor, text: str) -> str:
    """The redacted text recomputed from the findings' offsets alone."""
    out, cursor = [], 0
    for f in redactor.redact(text).findings:
        value = text[f.start : f.end]
        action = redactor.action(f.entity).value
        out.append(text[cursor : f.start])
        out.append(redactor.pseudonym(f.entity, value) if action == "pseudonym" else f"[{f.entity}]")
        cursor = f.end
    return "".join(out) + text[cursor:]


unicode_text = st.text(st.characters(codec="utf-8"), max_size=400)
mixed = st.lists(st.one_of(unicode_text, st.sampled_from(PLANTED)), max_size=8).map(" \n ".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=unicode_text)
def test_never_raises_on_arbitrary_unicode(redactor: Redactor, text: str) -> None:
    result = redactor.redact(text)
    assert isinstance(result.text, str)


def test_lone_surrogates_and_odd_input(redactor: Redactor) -> None:
    for text in ["\ud800 ann@example.org \udfff", "\x00" * 10, "é" * 5000, "\u202e4111 1111 1111 1111"]:
        result = redactor.redact(text)
        assert "ann@example.org" not in result.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mixed)
def test_found_values_never_survive_and_offsets_map_back(redactor: Redactor, text: str) -> None:
    result = redactor.redact(text)
    previous_end = 0
    for f in result.findings:
        assert previous_end <= f.start < f.end <= len(text)  # ordered, disjoint, inside the text
        previous_end = f.end
        value = text[f.start : f.end]
        if len(value) >= 8:
            assert value not in result.text
    assert result.text == _rebuild(redactor, text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.lists(unicode_text, min_size=1, max_size=4))
def test_planted_values_are_always_removed(redactor: Redactor, noise: list[str]) -> None:
    text, planted = _CANARIES.plant_text()
    merged = " \n ".join([noise[0], text, *noise[1:]])
    out = redactor.redact(merged).text
    assert not [v for v in planted if v in out]
