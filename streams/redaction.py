"""The worker's redactor: the policy file from the config directory, the key from settings,
and the plug-in recognizers (street addresses; names, places and organisations by NER)."""

from __future__ import annotations

from functools import cache

from detectors.redaction.addresses import StreetAddressRecognizer
from detectors.redaction.engine import Recognizer
from detectors.redaction.name_cues import NameCueRecognizer
from detectors.redaction.ner import NER_ENTITIES, SpacyNerRecognizer
from detectors.redaction.policy import RedactionPolicy
from detectors.redaction.redactor import Redactor
from streams.config import WardenSettings

POLICY_FILE = "redaction-policy.yaml"


def load_redactor(settings: WardenSettings) -> Redactor:
    policy = RedactionPolicy.load(settings.config_dir / POLICY_FILE)
    key = (settings.pseudonym_key.get_secret_value().encode() if settings.pseudonym_key
           else policy.resolve_key())
    return Redactor(policy, key, recognizers=plugin_recognizers(policy, ner=settings.ner))


def plugin_recognizers(policy: RedactionPolicy, ner: bool = True) -> list[Recognizer]:
    """Street addresses and announced names (``Dear Mr. ...``, ``on behalf of ...``) unless
    disabled; the NER model unless turned off or all its entities are.

    The model is verified and loaded here, at start, so that a missing or altered model
    stops the worker with a clear error instead of failing every field it redacts.
    """
    disabled = set(policy.disabled)
    recognizers: list[Recognizer] = []
    if "STREET_ADDRESS" not in disabled:
        recognizers.append(StreetAddressRecognizer())
    if "PERSON" not in disabled:
        recognizers.append(NameCueRecognizer())
    wanted = tuple(e for e in NER_ENTITIES if e not in disabled)
    if ner and wanted:
        recognizers.append(_ner_model(wanted))
    return recognizers


@cache
def _ner_model(entities: tuple[str, ...]) -> SpacyNerRecognizer:
    # One model per process: tests and the CLI build many redactors.
    model = SpacyNerRecognizer(entities=entities)
    model.load()
    return model
