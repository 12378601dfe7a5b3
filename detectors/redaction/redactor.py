"""The redactor: find entities with every recognizer, then mask, pseudonymise or drop.

Built-in recognizers are one :class:`PatternRecognizer` over the PII and secret
catalogues (one RE2-set pass per text). Extra recognizers (an NER model for names, a
customer-specific id format) plug in through the :class:`Recognizer` protocol.

Pseudonyms are ``HMAC-SHA256(key, entity || normalised value)`` truncated
(RFC 2104): the same e-mail address always maps to the same ``[EMAIL_ADDRESS:...]``
under one key, so analysts can count and join without seeing it, and nobody without
the key can test a guess.

>>> from detectors.redaction.policy import RedactionPolicy
>>> policy = RedactionPolicy(version="doc", entities={"EMAIL_ADDRESS": "pseudonym"})
>>> r = Redactor(policy, key=b"0123456789abcdef-doc-key")
>>> out = r.redact("mail ann@example.org, card 4111 1111 1111 1111")
>>> out.text
'mail [EMAIL_ADDRESS:399c44d1a0], card [CREDIT_CARD]'
>>> [(f.entity, f.start, f.end) for f in out.findings]
[('EMAIL_ADDRESS', 5, 20), ('CREDIT_CARD', 27, 46)]
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from detectors.findings import Finding

from .catalog_pii import PII_SPECS
from .catalog_secrets import SECRET_SPECS
from .engine import PatternRecognizer, Recognizer, Span, resolve_overlaps
from .policy import Action, RedactionPolicy, RedactionPolicyError
from .tracewalk import redact_mapping

DETECTOR = "Redactor/1"


@dataclass(frozen=True, slots=True)
class EntityFinding:
    """Where an entity was found: ``field`` path and offsets into the ORIGINAL field text.

    Never holds the value itself.
    """

    entity: str
    field: str
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "field": self.field, "start": self.start, "end": self.end}


@dataclass(frozen=True, slots=True)
class RedactionResult:
    """A redacted text and what was found in it (offsets into the original text)."""

    text: str
    findings: tuple[EntityFinding, ...] = ()
    dropped: bool = False


@dataclass(frozen=True)
class TraceRedaction:
    """The audit record of one redacted trace: policy, counts and locations, no values."""

    policy_version: str
    policy_hash: str
    findings: tuple[EntityFinding, ...] = field(default_factory=tuple)

    @property
    def counts(self) -> dict[str, int]:
        """``{entity: how many}`` over the whole trace."""
        return dict(sorted(Counter(f.entity for f in self.findings).items()))

    def to_dict(self) -> dict[str, Any]:
        """Compact, JSON-serialisable form for storage (findings as 4-item lists)."""
        return {
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
            "counts": self.counts,
            "findings": [[f.entity, f.field, f.start, f.end] for f in self.findings],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceRedaction:
        return cls(
            data["policy_version"],
            data["policy_hash"],
            tuple(EntityFinding(e, f, int(s), int(t)) for e, f, s, t in data.get("findings", ())),
        )

    def to_finding(self, subject: Mapping[str, str], at: float) -> Finding:
        """A ``redaction.applied`` finding (counts only) for alerting and dashboards."""
        secret = any(_CATEGORY.get(f.entity) == "secret" for f in self.findings)
        return Finding(
            kind="redaction.applied",
            subject=dict(subject),
            score=float(len(self.findings)),
            threshold=0.0,
            at=at,
            severity="warning" if secret else "info",
            evidence={"policy_version": self.policy_version, "policy_hash": self.policy_hash,
                      "counts": self.counts, "unit": "entities"},
            detector=DETECTOR,
        )


_CATEGORY: dict[str, str] = {s.entity: s.category for s in (*PII_SPECS, *SECRET_SPECS)}


def entity_category(entity: str) -> str:
    """``"pii"``, ``"secret"`` or ``"other"`` (entities of plug-in recognizers)."""
    return _CATEGORY.get(entity, "other")


def builtin_entities() -> tuple[str, ...]:
    """Every entity name the built-in catalogues can report."""
    return tuple(dict.fromkeys(s.entity for s in (*PII_SPECS, *SECRET_SPECS)))


def _normalise(entity: str, value: str) -> str:
    """Format-independent form so that one person gets one pseudonym."""
    if entity == "EMAIL_ADDRESS":
        return value.strip().lower()
    if entity in ("PHONE_NUMBER", "CREDIT_CARD", "US_SSN"):
        return "".join(ch for ch in value if ch.isdigit())
    if entity == "IBAN_CODE":
        return "".join(value.split()).upper()
    return value


class Redactor:
    """Finds and replaces PII and secrets according to a :class:`RedactionPolicy`.

    Parameters
    ----------
    policy
        The loaded policy (its version and hash go into every trace record).
    key
        Pseudonym key bytes (at least 16). Required when the policy pseudonymises
        anything; get it with ``policy.resolve_key()``. Never logged or stored.
    recognizers
        Extra recognizers, e.g. an NER model for ``PERSON``.
    """

    def __init__(
        self,
        policy: RedactionPolicy,
        key: bytes | None = None,
        recognizers: Sequence[Recognizer] = (),
    ) -> None:
        if policy.needs_key and not key:
            raise RedactionPolicyError(
                f"redaction policy {policy.version!r} pseudonymises values but no key was given; "
                f"set {policy.pseudonym_key.describe()} to at least 16 random bytes, or change "
                "the pseudonym actions to mask"
            )
        if key is not None and len(key) < 16:
            raise RedactionPolicyError(f"pseudonym key is {len(key)} bytes; use at least 16")
        self.policy = policy
        self._policy_hash = policy.content_hash  # a JSON dump + SHA-256: once, not per trace
        self._key = key or b""
        disabled = set(policy.disabled)
        specs = [s for s in (*PII_SPECS, *SECRET_SPECS) if s.entity not in disabled]
        self._recognizers: list[Recognizer] = [PatternRecognizer("builtin", specs), *recognizers]
        self._disabled = disabled
        self._actions: dict[str, Action] = {}

    def __repr__(self) -> str:  # the key must never show up in logs
        return f"Redactor(policy={self.policy.version!r}, recognizers={len(self._recognizers)})"

    def find(self, text: str) -> list[Span]:
        """Non-overlapping spans of every enabled entity in ``text``, in order."""
        if not text:
            return []
        spans: list[Span] = []
        for recognizer in self._recognizers:
            spans.extend(s for s in recognizer.find(text) if s.entity not in self._disabled)
        return resolve_overlaps(spans) if spans else spans

    def action(self, entity: str) -> Action:
        cached = self._actions.get(entity)
        if cached is None:
            cached = self._actions[entity] = self.policy.action_for(entity, entity_category(entity))
        return cached

    def pseudonym(self, entity: str, value: str) -> str:
        """The keyed pseudonym of ``value`` rendered with the policy's template."""
        message = f"{entity}\x00{_normalise(entity, value)}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()[: self.policy.pseudonym_chars]
        return self.policy.pseudonym_template.format(entity=entity, digest=digest)

    def redact(self, text: str, field: str = "text") -> RedactionResult:
        """Redact one string; findings carry ``field`` and offsets into ``text``."""
        spans = self.find(text)
        if not spans:
            return RedactionResult(text)
        findings = tuple(EntityFinding(s.entity, field, s.start, s.end) for s in spans)
        drops = [s.entity for s in spans if self.action(s.entity) is Action.drop_field]
        if drops:
            marker = self.policy.drop_marker.format(entity="+".join(dict.fromkeys(drops)), digest="")
            return RedactionResult(marker, findings, dropped=True)
        parts: list[str] = []
        cursor = 0
        for s in spans:
            parts.append(text[cursor : s.start])
            if self.action(s.entity) is Action.pseudonym:
                parts.append(self.pseudonym(s.entity, text[s.start : s.end]))
            else:
                parts.append(self.policy.mask_template.format(entity=s.entity, digest=""))
            cursor = s.end
        parts.append(text[cursor:])
        return RedactionResult("".join(parts), findings)

    def redact_trace(self, trace: Mapping[str, Any]) -> tuple[dict[str, Any], TraceRedaction]:
        """Redact the policy's fields of a JSON-like trace mapping.

        Pass ``trace.model_dump(mode="json")``. Returns a new mapping (the input is not
        modified) and the audit record. Field paths look like
        ``input_messages[0].content`` or ``tool_calls[2].arguments.query``; for JSON
        held inside a string the path continues into the parsed document and offsets
        refer to the string at that path.
        """
        findings: list[EntityFinding] = []
        out = redact_mapping(trace, self.policy.trace.scan, self.redact, findings)
        for name in self.policy.trace.pseudonymise:
            value = out.get(name)
            if isinstance(value, str) and value:
                out[name] = self.pseudonym(name.upper(), value)
                findings.append(EntityFinding(name.upper(), name, 0, len(value)))
        return out, TraceRedaction(self.policy.version, self._policy_hash, tuple(findings))
