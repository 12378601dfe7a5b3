"""Names, places, organisations and street addresses: the NER and address plug-ins."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from detectors.redaction import RedactionPolicy, Redactor
from detectors.redaction.addresses import StreetAddressRecognizer
from detectors.redaction.name_cues import NameCueRecognizer
from detectors.redaction.ner import NerModelError, SpacyNerRecognizer, model_dir, verify_model
from detectors.redaction.ner_pins import EN_CORE_WEB_SM
from streams.redaction import plugin_recognizers


@pytest.fixture(scope="module")
def ner() -> SpacyNerRecognizer:
    model = SpacyNerRecognizer()
    model.load()  # once per module: loading is the slow part
    return model


@pytest.fixture(scope="module")
def redactor(ner: SpacyNerRecognizer) -> Redactor:
    return Redactor(RedactionPolicy(version="test"), recognizers=[StreetAddressRecognizer(), NameCueRecognizer(), ner])


def _trace(prompt: str, completion: str) -> dict[str, object]:
    return {
        "trace_id": "t-1",
        "input_messages": [{"role": "user", "content": prompt}],
        "output_messages": [{"role": "assistant", "content": completion}],
    }


def test_names_addresses_and_orgs_are_redacted_in_prompts_and_completions(redactor: Redactor) -> None:
    prompt = ("Hi, I'm Steven Copeland. Please draft a letter to my landlord at "
              "1317 Kimberly Way, Grand Rapids about the broken heater.")
    completion = "Dear Mr. Harrison, I am writing on behalf of Steven Copeland, who works at Microsoft."
    clean, record = redactor.redact_trace(_trace(prompt, completion))
    text = clean["input_messages"][0]["content"] + clean["output_messages"][0]["content"]
    for secret in ("Steven Copeland", "1317 Kimberly Way", "Harrison", "Microsoft"):
        assert secret not in text
    assert "[PERSON]" in text and "[STREET_ADDRESS]" in text and "[ORGANIZATION]" in text
    fields = {f.field for f in record.findings}
    assert fields == {"input_messages[0].content", "output_messages[0].content"}


@pytest.mark.parametrize("text, value", [
    ("I'll meet you at 6185 Pfarrgasse 91\n Suite 170\n MITTERLOBMING\n Austria 26759\nBring snacks.",
     "6185 Pfarrgasse 91\n Suite 170\n MITTERLOBMING\n Austria 26759"),
    ("Ciset lives on Rua Mina 50 street.", "Rua Mina 50"),
    ("Ship to 90 Whitchurch Road, Cardiff", "90 Whitchurch Road"),
    ("send it to 36 rue de pologne tomorrow", "36 rue de pologne tomorrow"),
    ("Office: Loorenstrasse 149, Zürich", "Loorenstrasse 149"),
    ("PSC 2581, Box 0041\nAPO AP 32376", "PSC 2581, Box 0041\nAPO AP 32376"),
])
def test_street_address_forms(text: str, value: str) -> None:
    found = [text[s.start : s.end] for s in StreetAddressRecognizer().find(text)]
    assert value in found or any(value in f for f in found)


LOOK_ALIKES = [
    "Order 44549894 was shipped on 2024-05-01.",
    "Tracking number 1731534558877631 shows delivered, but nothing arrived at my door.",
    "The p99 latency was 182 ms on route /v1/chat after version 2.4.1 rolled out.",
    "Extract the fields from this form as JSON. SSN and IBAN are optional.",
    "refund of $1031.55 approved for invoice 2291, 3 items, 12 days late",
    "the model returned 404 for 17 requests between 10:02 and 10:05",
    "all lowercase text with no names at all, just words and 42 numbers",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_not_flagged(redactor: Redactor, text: str) -> None:
    found = [(s.entity, text[s.start : s.end]) for s in redactor.find(text)
             if s.entity in ("PERSON", "LOCATION", "ORGANIZATION", "STREET_ADDRESS")]
    assert found == []


def test_any_unicode_is_tolerated_and_offsets_hold(ner: SpacyNerRecognizer) -> None:
    text = "x\ud800y \U0001f600 Anna Müller lives in Berlin \u200b and 東京 " * 3
    spans = ner.find(text)
    assert any(text[s.start : s.end] == "Anna Müller" for s in spans)
    assert ner.find("") == [] and ner.find("\ud800\udfff") == []


def test_long_text_is_chunked_with_right_offsets(ner: SpacyNerRecognizer) -> None:
    filler = "lorem ipsum dolor sit amet " * 1500  # ~40k chars: several chunks
    text = filler + "Please call Margaret Thompson tomorrow." + filler
    spans = [text[s.start : s.end] for s in ner.find(text)]
    assert "Margaret Thompson" in spans


def test_batch_equals_single(ner: SpacyNerRecognizer) -> None:
    texts = ["John Smith met Mary Jones in Paris.", "", "nothing here", "Contact Acme Corp today."]
    assert ner.find_batch(texts) == [ner.find(t) for t in texts]


def test_ner_off_by_policy_loads_no_model() -> None:
    policy = RedactionPolicy(version="t", disabled=["PERSON", "LOCATION", "ORGANIZATION"])
    recognizers = plugin_recognizers(policy)
    assert [r.name for r in recognizers] == ["addresses"]
    redactor = Redactor(policy, recognizers=recognizers)
    assert redactor.redact("Please email John Smith about it.").text == "Please email John Smith about it."


def test_ner_off_by_setting_and_single_entity_off() -> None:
    policy = RedactionPolicy(version="t")
    assert [r.name for r in plugin_recognizers(policy, ner=False)] == ["addresses", "name_cues"]
    only_people = plugin_recognizers(RedactionPolicy(version="t", disabled=["ORGANIZATION"]))
    assert only_people[-1].entities == ("PERSON", "LOCATION")


def test_altered_model_is_a_clear_error(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir(EN_CORE_WEB_SM), copy)
    verify_model(copy, EN_CORE_WEB_SM)  # the pristine copy passes
    weights = copy / "ner" / "model"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    model = SpacyNerRecognizer(directory=copy)
    with pytest.raises(NerModelError, match=r"ner/model has sha256 .* expected"):
        model.find("John Smith")
    (copy / "extra.py").write_text("print('hi')")
    with pytest.raises(NerModelError, match="unexpected file"):
        verify_model(copy, EN_CORE_WEB_SM)


def test_missing_model_package_is_a_clear_error() -> None:
    from dataclasses import replace

    with pytest.raises(NerModelError, match="not installed"):
        model_dir(replace(EN_CORE_WEB_SM, package="warden_no_such_model_pkg"))


@pytest.mark.parametrize("text, names", [
    ("I am writing on behalf of Rajesh Kumar, tenant since 2019.", ["Rajesh Kumar"]),
    ("My name is Anna Müller and I live in Graz.", ["Anna Müller"]),
    ("Dear Mr. Harrison, thanks for your letter.", ["Harrison"]),
    ("Please forward this to Dr. O'Neill today.", ["O'Neill"]),
    ("Kind regards,\nMargaret Thompson", ["Margaret Thompson"]),
    ("Customer: Wei Zhang, order 4471", ["Wei Zhang"]),
    ("Dear John Thanks for the update", ["John"]),
])
def test_announced_names_are_found_without_the_model(text: str, names: list[str]) -> None:
    assert [text[s.start : s.end] for s in NameCueRecognizer().find(text)] == names


@pytest.mark.parametrize("text", [
    "Hi, I am Happy to help you today.",
    "I am writing on behalf of Acme Corp about the invoice.",
    "Dear Customer, your order shipped.",
    "Best regards,\nThe Support Team",
    "Sincerely, Customer Support",
    "I am Not Sure this works",
    "this is all lowercase: my name is john smith",
])
def test_cues_without_a_name_are_not_flagged(text: str) -> None:
    assert NameCueRecognizer().find(text) == []


def test_names_the_model_misses_after_a_cue_are_redacted(redactor: Redactor) -> None:
    text = "Dear landlord, I am writing on behalf of Rajesh Kumar, tenant at 90 Whitchurch Road."
    out = redactor.redact(text).text
    assert "Rajesh Kumar" not in out and "Whitchurch" not in out


def test_text_dense_with_street_words_costs_a_bounded_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    # "1 2 3 Street " repeated made Python's engine scan every trigger's window (~0.1 ms a
    # character): one hostile message held the worker for minutes. The scan is bounded.
    import detectors.redaction.addresses as addresses

    scanned: list[int] = []
    real = addresses._ADDRESS

    class Counting:
        def finditer(self, text: str, lo: int, hi: int):  # type: ignore[no-untyped-def]
            scanned.append(hi - lo)
            return real.finditer(text, lo, hi)

    monkeypatch.setattr(addresses, "_ADDRESS", Counting())
    text = "Ship to 90 Whitchurch Road, Cardiff. " + "1 2 3 Street " * 50_000
    found = [text[s.start : s.end] for s in StreetAddressRecognizer().find(text)]
    assert found == ["90 Whitchurch Road"]
    assert sum(scanned) <= addresses.MAX_WINDOW_CHARS
