"""The worker's redactor: the policy file from the config directory, the key from settings."""

from __future__ import annotations

from detectors.redaction.policy import RedactionPolicy
from detectors.redaction.redactor import Redactor
from streams.config import WardenSettings

POLICY_FILE = "redaction-policy.yaml"


def load_redactor(settings: WardenSettings) -> Redactor:
    policy = RedactionPolicy.load(settings.config_dir / POLICY_FILE)
    key = (settings.pseudonym_key.get_secret_value().encode() if settings.pseudonym_key
           else policy.resolve_key())
    return Redactor(policy, key)
