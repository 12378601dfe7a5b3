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
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from detectors.findings import Finding

from .catalog_pii import PII_SPECS
from .catalog_secrets import SECRET_SPECS
from .encoded import encoded_spans
from .engine import PatternRecognizer, Recognizer, Span, resolve_overlaps
from .keys import is_plain_flag, key_entity, quoted_pairs, value_fits
from .policy import Action, RedactionPolicy, RedactionPolicyError
from .textview import TextView, detection_view
from .tracewalk import redact_mapping
from .validators import is_template_value

DETECTOR = "Redactor/1"
FAILED = "REDACTION_FAILED"  # the entity of a field masked whole because redacting it raised
_MAX_ENCODED_DEPTH = 2  # base64 inside base64 is still looked into, once
# A value under a sensitive key is that entity whole, whatever pattern found a part of it.
KEYED_PRIORITY = 6


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
_CATEGORY[FAILED] = "secret"  # unknown content: treated like the most sensitive kind


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
        # Echo fingerprints (detectors.redaction.echo) are compared in memory within one
        # trace and never leave this process: a random key of their own, never stored.
        self._echo_key = secrets.token_bytes(32)
        disabled = set(policy.disabled)
        specs = [s for s in (*PII_SPECS, *SECRET_SPECS) if s.entity not in disabled]
        self._patterns = PatternRecognizer("builtin", specs)
        self._recognizers: list[Recognizer] = [self._patterns, *recognizers]
        self._disabled = disabled
        self._actions: dict[str, Action] = {}

    def __repr__(self) -> str:  # the key must never show up in logs
        return f"Redactor(policy={self.policy.version!r}, recognizers={len(self._recognizers)})"

    def find(self, text: str) -> list[Span]:
        """Non-overlapping spans of every enabled entity in ``text``, in order.

        Patterns run on the normalised view of the text (Unicode digits and spaces,
        invisible characters, escaped quotes, percent-encoding; offsets mapped back) and
        inside its base64 segments; plug-in recognizers on the text itself.
        """
        return self._find(text, 0)

    def _find(self, text: str, depth: int) -> list[Span]:
        if not text:
            return []
        spans: list[Span] = []
        view = detection_view(text)
        if view is None or view.decoded:
            spans.extend(self._patterns.find(text))
        if view is not None:
            # Unicode folding only removes disguises (every pattern is ASCII); decoded
            # escapes can also split a value, so then the original was scanned as well.
            # Spans found in the view are mapped back to the original characters.
            for s in self._patterns.find(view.text):
                start, end = view.original_span(s.start, s.end)
                spans.append(Span(s.entity, start, end, s.score, s.priority, s.source))
        spans.extend(self._quoted_pair_spans(text, view, spans))
        if depth == 0:
            for recognizer in self._recognizers[1:]:
                spans.extend(recognizer.find(text))
        if depth < _MAX_ENCODED_DEPTH:
            spans.extend(encoded_spans(text, lambda decoded: self._find(decoded, depth + 1), spans))
        spans = [s for s in spans if s.entity not in self._disabled]
        return resolve_overlaps(spans) if spans else spans

    def _quoted_pair_spans(self, text: str, view: TextView | None, found: Sequence[Span]) -> list[Span]:
        """Quoted ``"key": "value"`` pairs in free text, judged by their key like JSON is.

        Run on the view, so that escaped JSON (``{\\"password\\": \\"x\\"}``) is read too.
        """
        source = text if view is None else view.text
        out: list[Span] = []
        for entity, start, end in quoted_pairs(source, self.policy.keys):
            value = source[start:end]
            if entity in self._disabled or not self._keyed_applies(entity, value):
                continue
            if view is not None:
                start, end = view.original_span(start, end)
            if _covered(found, start, end) < end - start:  # patterns did not cover all of it
                out.append(Span(entity, start, end, priority=KEYED_PRIORITY, source="key"))
        return out

    @staticmethod
    def _keyed_applies(entity: str, value: str) -> bool:
        """A value that is the key's entity whole: not empty, a flag, a template or misfit."""
        return bool(value.strip()) and not is_plain_flag(value) and not is_template_value(value) \
            and value_fits(entity, value)

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

    def fingerprint(self, group: str, canonical: str) -> str:
        """Keyed digest of a canonical value, to tell echoes from leaks
        (:func:`detectors.redaction.echo.split_echoes`). Its key is random per redactor:
        a digest means nothing outside this process and is never stored or logged."""
        message = f"echo\x00{group}\x00{canonical}".encode("utf-8", "surrogatepass")
        return hmac.new(self._echo_key, message, hashlib.sha256).hexdigest()

    def redact(self, text: str, field: str = "text") -> RedactionResult:
        """Redact one string; findings carry ``field`` and offsets into ``text``.

        Fails closed: if finding or replacing raises, the whole string is replaced by
        ``[REDACTION_FAILED:<error type>]`` and reported as a ``REDACTION_FAILED``
        finding, so the trace goes on (stored, costed, scored) without the content.
        """
        try:
            return self._apply(text, field, self.find(text))
        except Exception as exc:  # noqa: BLE001 - any failure must drop the content, not pass it
            return failed_result(text, field, exc)

    def redact_keyed(self, value: str, key: str, field: str) -> RedactionResult | None:
        """Redact a value that sits under ``key``; ``None`` when the key is not sensitive.

        Under a sensitive key the whole value is the key's entity (a password needs no
        pattern to be a password), unless patterns already cover all of it (an e-mail
        under ``contact_password`` stays an e-mail). Templates, flags and values that
        cannot be the entity (``<your-key>``, ``null``, ``"phone": "unknown"``) are
        redacted as ordinary text.
        """
        entity = key_entity(key, self.policy.keys)
        if entity is None or entity in self._disabled:
            return None
        try:
            if not self._keyed_applies(entity, value):
                return self.redact(value, field)
            spans = self.find(value)
            covered = sum(s.end - s.start for s in spans)
            if covered >= len(value.strip()):
                return self._apply(value, field, spans)
            return self._apply(value, field, [Span(entity, 0, len(value), priority=KEYED_PRIORITY, source="key")])
        except Exception as exc:  # noqa: BLE001 - fail closed, as redact() does
            return failed_result(value, field, exc)

    def _apply(self, text: str, field: str, spans: Sequence[Span]) -> RedactionResult:
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

    def redact_document(self, document: Any) -> Any:
        """Every string of a JSON-like document redacted, keys and JSON inside strings too.

        For records that are not valid traces (dead letters): no field selector applies,
        so the whole document is walked, with the same fail-closed rule per field.
        """
        findings: list[EntityFinding] = []
        return redact_mapping({"doc": document}, ["doc"], self.redact, findings,
                              keyed=self.redact_keyed, failed=failed_result)["doc"]

    def redact_trace(self, trace: Mapping[str, Any]) -> tuple[dict[str, Any], TraceRedaction]:
        """Redact the policy's fields of a JSON-like trace mapping.

        Pass ``trace.model_dump(mode="json")``. Returns a new mapping (the input is not
        modified) and the audit record. Field paths look like
        ``input_messages[0].content`` or ``tool_calls[2].arguments.query``; for JSON
        held inside a string the path continues into the parsed document and offsets
        refer to the string at that path.
        """
        findings: list[EntityFinding] = []
        out = redact_mapping(trace, self.policy.trace.scan, self.redact, findings,
                             keyed=self.redact_keyed, failed=failed_result)
        for name in self.policy.trace.pseudonymise:
            value = out.get(name)
            if isinstance(value, str) and value:
                out[name] = self.pseudonym(name.upper(), value)
                findings.append(EntityFinding(name.upper(), name, 0, len(value)))
        return out, TraceRedaction(self.policy.version, self._policy_hash, tuple(findings))


def _covered(spans: Sequence[Span], start: int, end: int) -> int:
    """How many characters of ``[start, end)`` the (possibly overlapping) spans cover."""
    total, reach = 0, start
    for a, b in sorted((max(s.start, start), min(s.end, end)) for s in spans if s.start < end and start < s.end):
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def failed_result(text: str, field: str, exc: BaseException) -> RedactionResult:
    """The fail-closed result: the whole field replaced, one ``REDACTION_FAILED`` finding.

    Only the exception's type is kept; its message could quote the content.
    """
    return RedactionResult(f"[{FAILED}:{type(exc).__name__}]",
                           (EntityFinding(FAILED, field, 0, len(text)),), dropped=True)
