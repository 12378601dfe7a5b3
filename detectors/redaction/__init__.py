"""Redaction engine: PII and secrets found in one pass and replaced by a versioned policy.

Public API::

    policy = RedactionPolicy.load("deploy/config/redaction-policy.yaml")
    redactor = Redactor(policy, key=policy.resolve_key())
    result = redactor.redact("mail ann@example.org")          # RedactionResult(text, findings)
    clean, record = redactor.redact_trace(trace.model_dump(mode="json"))
    record.to_dict()      # {"policy_version", "policy_hash", "counts", "findings": [[entity, field, start, end]]}

See ``docs/REDACTION.md`` for entity names, actions and the policy format.
"""

from .echo import EchoSplit, split_echoes
from .engine import PatternRecognizer, PatternSpec, Recognizer, Span, resolve_overlaps
from .policy import Action, KeySource, RedactionPolicy, RedactionPolicyError, TraceScope
from .redactor import (
    EntityFinding,
    RedactionResult,
    Redactor,
    TraceRedaction,
    builtin_entities,
    entity_category,
)

__all__ = [
    "Action",
    "EchoSplit",
    "EntityFinding",
    "KeySource",
    "PatternRecognizer",
    "PatternSpec",
    "Recognizer",
    "RedactionPolicy",
    "RedactionPolicyError",
    "RedactionResult",
    "Redactor",
    "Span",
    "TraceRedaction",
    "TraceScope",
    "builtin_entities",
    "entity_category",
    "resolve_overlaps",
    "split_echoes",
]
