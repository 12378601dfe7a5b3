"""Echoes: PII in an answer that the same request's user or tools already gave.

A user who pastes their own e-mail address or phone number and gets an answer that
confirms it back ("I sent the code to ann@example.org") has not seen a leak: the model
repeated what it was given in that request. A value that appears *only* in the answer
(another customer's e-mail, a card the user never sent) is a leak.

The two are told apart by value, without ever holding a value longer than the trace:
every entity found in the answer and in the echo sources is reduced to a canonical
form (:func:`canonical_value`: Unicode/percent-folded as the detectors read it, then
e-mail case-folded, phone by its last ten digits, cards and SSNs by their digits) and
passed through a *keyed* fingerprint (``Redactor.fingerprint``, an HMAC under the
redaction key). Only those fingerprints are compared, in memory, within one trace;
nothing of them is returned or stored.

What counts as the request's input (:func:`echo_sources`): the ``user`` and ``tool``
messages of ``input_messages`` and the ``result`` of each of the trace's tool calls.
The system prompt and earlier assistant turns are not: a value only the operator's
context or the model itself brought in is the model's to answer for.

This module only *classifies*; what an echo means (PII: no alert; a secret: still a
finding) is the caller's policy (``streams.governor.completion_leaks``).

>>> from detectors.redaction.redactor import EntityFinding
>>> trace = {"input_messages": [{"role": "user", "content": "mail me at Ann@Example.org"}],
...          "output_messages": [{"role": "assistant",
...                               "content": "sent to ann@example.org and bob@example.org"}]}
>>> found = [EntityFinding("EMAIL_ADDRESS", "input_messages[0].content", 11, 26),
...          EntityFinding("EMAIL_ADDRESS", "output_messages[0].content", 8, 23),
...          EntityFinding("EMAIL_ADDRESS", "output_messages[0].content", 28, 43)]
>>> split = split_echoes(trace, found, fingerprint=lambda group, value: value)
>>> [f.start for f in split.echoed], [f.start for f in split.leaked]
([8], [28])
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .redactor import EntityFinding
from .textview import detection_view

ANSWER_FIELDS: tuple[str, ...] = ("output_messages",)
ECHO_ROLES: frozenset[str] = frozenset({"user", "tool"})

_DIGIT_ENTITIES = frozenset({"PHONE_NUMBER", "CREDIT_CARD", "US_SSN"})
_ALNUM_ENTITIES = frozenset({"IBAN_CODE", "PASSPORT", "DRIVER_LICENSE", "POSTAL_CODE"})
_PHONE_DIGITS = 10  # national number: "+1 415 555 0100" and "(415) 555-0100" are one phone
_MIN_DIGITS = 6  # fewer digits than this identify nothing: never an echo
_INDEX = re.compile(r"\[(\d+)\]")
_NOT_ALNUM = re.compile(r"[\W_]+")
_SPACES = re.compile(r"\s+")
_MAX_STEPS = 256  # a path has at most this many segments (the walk's depth is 32)

Fingerprint = Callable[[str, str], str]  # (group, canonical value) -> keyed digest


def canonical_value(entity: str, value: str) -> tuple[str, str] | None:
    """``(group, canonical form)`` under which two spellings of one value compare equal,
    or ``None`` when the value is too short to say anything (it then stays a leak).

    The value is first read as the detectors read it (full-width digits, invisible
    characters, percent-encoding folded: :mod:`detectors.redaction.textview`). Digits
    compare across entity kinds (a number read as a phone in the question and as an SSN
    in the answer is the same number), so every digit-led entity is in group ``digits``.

    >>> canonical_value("PHONE_NUMBER", "+1 (415) 555-0100")
    ('digits', '4155550100')
    >>> canonical_value("EMAIL_ADDRESS", " Ann%40Example.ORG ")
    ('EMAIL_ADDRESS', 'ann@example.org')
    >>> canonical_value("CREDIT_CARD", "４１１１ 1111 1111 1111")
    ('digits', '4111111111111111')
    >>> canonical_value("PHONE_NUMBER", "555") is None
    True
    """
    view = detection_view(value)
    text = (view.text if view is not None else value).strip()
    if not text:
        return None
    if entity in _DIGIT_ENTITIES:
        digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
        if len(digits) < _MIN_DIGITS:
            return None
        if entity == "PHONE_NUMBER" and len(digits) > _PHONE_DIGITS:
            digits = digits[-_PHONE_DIGITS:]
        return "digits", digits
    if entity == "EMAIL_ADDRESS":
        return entity, text.casefold()
    if entity in _ALNUM_ENTITIES:
        return entity, _NOT_ALNUM.sub("", text).upper()
    if entity in ("IP_ADDRESS", "DATE_OF_BIRTH", "STREET_ADDRESS"):
        return entity, _SPACES.sub(" ", text.casefold())
    return entity, text  # secrets and plug-in entities: exactly, as the detectors read them


def field_text(doc: Mapping[str, Any], path: str) -> str | None:
    """The string a redaction finding's ``field`` path points into, or ``None`` when the
    path does not resolve (its offsets then cannot be trusted, and the entity stays a
    leak).

    Mirrors :mod:`detectors.redaction.tracewalk`: JSON held in a string
    (``tool_calls[0].arguments.to[0]``), JSON encoded twice, keys that hold dots
    (``metadata.ann@example.org``), the key itself (``...#key``), long integers and
    subtrees deeper than the walk goes (scanned as their JSON text).

    >>> field_text({"a": [{"b": '{"c": "x@y.org"}'}]}, "a[0].b.c")
    'x@y.org'
    >>> field_text({"m": {"ann@example.org": 1}}, "m.ann@example.org#key")
    'ann@example.org'
    >>> field_text({"a": 4111111111111111}, "a")
    '4111111111111111'
    >>> field_text({"a": []}, "a[3]") is None
    True
    """
    try:
        return _resolve(doc, path, 0)
    except (ValueError, RecursionError, TypeError):
        return None


def _as_text(node: Any) -> str | None:
    if isinstance(node, str):
        return _unwrap_quoted(node)
    if isinstance(node, bool) or node is None:
        return None
    if isinstance(node, int | float):
        return str(node)
    if isinstance(node, Mapping | list | tuple):
        return json.dumps(node, ensure_ascii=False, default=str)
    return None


def _unwrap_quoted(text: str) -> str:
    """JSON encoded twice (``"\\"...\\""``) is scanned for what it encodes."""
    for _ in range(_MAX_STEPS):
        stripped = text.strip()
        if not (stripped[:1] == '"' and stripped.endswith('"') and len(stripped) > 2):
            return text
        try:
            inner = json.loads(stripped)
        except ValueError:
            return text
        if not isinstance(inner, str):
            return text
        text = inner
    return text


def _resolve(node: Any, rest: str, steps: int) -> str | None:
    if steps > _MAX_STEPS:
        return None
    if not rest:
        return _as_text(node)
    if isinstance(node, str):
        text = _unwrap_quoted(node)
        if text.strip()[:1] not in ("{", "["):
            return None
        doc = json.loads(text)
        if not isinstance(doc, Mapping | list):
            return None
        return _resolve(doc, rest, steps + 1)
    if isinstance(node, list | tuple):
        m = _INDEX.match(rest)
        if m is None or int(m.group(1)) >= len(node):
            return None
        return _resolve(node[int(m.group(1))], rest[m.end():], steps + 1)
    if isinstance(node, Mapping):
        if rest.startswith("."):
            rest = rest[1:]
        # Keys may hold '.', '[' or '#': try every key the path starts with, longest first.
        for key in sorted((k for k in node if rest.startswith(str(k))), key=lambda k: -len(str(k))):
            after = rest[len(str(key)):]
            if after == "#key":
                return str(key)
            if after and after[0] not in ".[":
                continue
            found = _resolve(node[key], after, steps + 1)
            if found is not None:
                return found
    return None


def echo_sources(doc: Mapping[str, Any]) -> dict[str, str]:
    """``{field path prefix: source}`` of a trace's echo sources: each ``user`` or
    ``tool`` input message, and each tool call's result (source ``tool``).

    >>> echo_sources({"input_messages": [{"role": "system"}, {"role": "user"}],
    ...               "tool_calls": [{"name": "crm", "result": "{}"}]})
    {'input_messages[1]': 'user', 'tool_calls[0].result': 'tool'}
    """
    out: dict[str, str] = {}
    messages = doc.get("input_messages")
    if isinstance(messages, list):
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, Mapping) else None
            if isinstance(role, str) and role.lower() in ECHO_ROLES:
                out[f"input_messages[{i}]"] = role.lower()
    calls = doc.get("tool_calls")
    if isinstance(calls, list):
        for i, call in enumerate(calls):
            if isinstance(call, Mapping) and "result" in call:
                out[f"tool_calls[{i}].result"] = "tool"
    return out


def _source_of(path: str, sources: Mapping[str, str]) -> str | None:
    for prefix, source in sources.items():
        if path == prefix or path.startswith((f"{prefix}.", f"{prefix}[", f"{prefix}#")):
            return source
    return None


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith((f"{r}[", f"{r}.")) for r in roots)


@dataclass(frozen=True)
class EchoSplit:
    """Entities found in the answer, split into ``leaked`` (only in the answer) and
    ``echoed`` (an echo source of the same trace holds the same value);
    ``echo_sources[i]`` is where ``echoed[i]`` was given (``"user"`` or ``"tool"``)."""

    leaked: tuple[EntityFinding, ...] = ()
    echoed: tuple[EntityFinding, ...] = ()
    echo_sources: tuple[str, ...] = ()


class _Keys:
    """Fingerprints of findings, reading each field's text once."""

    def __init__(self, doc: Mapping[str, Any], fingerprint: Fingerprint) -> None:
        self.doc = doc
        self.fingerprint = fingerprint
        self.texts: dict[str, str | None] = {}

    def __call__(self, found: EntityFinding) -> str | None:
        if found.field not in self.texts:
            self.texts[found.field] = field_text(self.doc, found.field)
        text = self.texts[found.field]
        if text is None or not 0 <= found.start < found.end <= len(text):
            return None
        canonical = canonical_value(found.entity, text[found.start:found.end])
        return None if canonical is None else self.fingerprint(*canonical)


def split_echoes(doc: Mapping[str, Any], findings: Sequence[EntityFinding], fingerprint: Fingerprint,
                 answer_fields: Sequence[str] = ANSWER_FIELDS) -> EchoSplit:
    """Split the answer's entities of one trace into leaks and echoes.

    Parameters
    ----------
    doc
        The trace as the redactor saw it (``trace.model_dump(mode="json")``), before
        redaction: the offsets of ``findings`` point into it.
    findings
        Every entity the redactor found in the trace (``TraceRedaction.findings``).
    fingerprint
        Keyed digest of ``(group, canonical value)``; pass ``Redactor.fingerprint`` so
        values are compared without being kept.
    answer_fields
        Top-level trace fields that hold the answer.
    """
    answer = [f for f in findings if _under(f.field, answer_fields)]
    if not answer:
        return EchoSplit()
    sources = echo_sources(doc)
    keys = _Keys(doc, fingerprint)
    given: dict[str, str] = {}
    if sources:
        for found in findings:
            source = _source_of(found.field, sources)
            if source is not None:
                key = keys(found)
                if key is not None and given.get(key) != "user":
                    given[key] = source  # "user" wins when both gave it
    leaked: list[EntityFinding] = []
    echoed: list[EntityFinding] = []
    origins: list[str] = []
    for found in answer:
        key = keys(found) if given else None
        if key is not None and key in given:
            echoed.append(found)
            origins.append(given[key])
        else:
            leaked.append(found)
    return EchoSplit(tuple(leaked), tuple(echoed), tuple(origins))
