"""Walk the selected parts of a JSON-like trace and redact every string inside them.

Selectors are dotted paths: ``input_messages[*].content`` (every list item's
``content``), ``metadata.*`` (every value of a mapping), ``error_message``. Below a
selected node everything is scanned: nested mappings and lists, strings that hold JSON
(parsed, redacted inside, re-serialised only if something changed), long integers (a
card number sent as a JSON number is still a card number) and the keys of mappings (a
key can be an e-mail address). A value under a sensitive key (``password``,
``api_key``, ``ssn``: :mod:`detectors.redaction.keys`) goes to the ``keyed`` function
with its key, because the free-text detectors never see the key. Containers are
copied, never modified in place.

The walk fails closed, so one hostile field never takes a trace out of governance: an
exception while redacting one string replaces that string with
``[REDACTION_FAILED:<error>]`` (see :meth:`Redactor.redact`); text that looks like JSON
but nests deeper than the parser goes (``"[" * 2000``) is scanned as text; an exception
anywhere else in the walk of a selected field (a structure too deep to serialise)
replaces that whole field through ``failed``, and its partial findings are discarded.
The walk's own recursion is bounded by :data:`MAX_DEPTH`.

>>> seen = []
>>> def upper(text, field):
...     seen.append(field)
...     return type("R", (), {"text": text.upper(), "findings": ()})()
>>> redact_mapping({"a": [{"b": "x", "c": "y"}], "d": "z"}, ["a[*].b"], upper, [])
{'a': [{'b': 'X', 'c': 'y'}], 'd': 'z'}
>>> seen
['a[0].b']
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

MAX_DEPTH = 32  # streams.records.MAX_JSON_DEPTH; deeper subtrees are scanned as JSON text
_MIN_SCANNED_INT = 10**6  # shorter integers cannot hold a phone, card or SSN
_MIN_SCANNED_KEY = 6  # the shortest e-mail address or phone number a key could be
_SEGMENT = re.compile(r"\[\*\]|[^.\[\]]+")

RedactFn = Callable[[str, str], Any]  # (text, field) -> object with .text and .findings
# (value, key, field) -> result as RedactFn's, or None when the key is not sensitive
KeyedFn = Callable[[str, str, str], Any]
# (field text or "", field, error) -> result as RedactFn's, masking the whole field
FailedFn = Callable[[str, str, BaseException], Any]


def parse_selector(selector: str) -> list[str]:
    """``"tool_calls[*].arguments"`` -> ``["tool_calls", "[*]", "arguments"]``."""
    return _SEGMENT.findall(selector)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def redact_mapping(
    trace: Mapping[str, Any],
    selectors: Sequence[str],
    redact: RedactFn,
    findings: list[Any],
    keyed: KeyedFn | None = None,
    failed: FailedFn | None = None,
) -> dict[str, Any]:
    """A copy of ``trace`` with every string under the selectors passed through ``redact``.

    Without ``failed`` an error in the walk propagates (the caller decides).
    """
    walk = _Walk(redact, keyed, failed, findings)
    out: Any = dict(trace)
    for selector in selectors:
        out = walk.select(out, parse_selector(selector), "")
    return out


class _Walk:
    def __init__(
        self, redact: RedactFn, keyed: KeyedFn | None, failed: FailedFn | None, findings: list[Any]
    ) -> None:
        self.redact = redact
        self.keyed = keyed
        self.failed = failed
        self.findings = findings

    def guarded(self, node: Any, path: str, scan: Callable[[], Any]) -> Any:
        """``scan()``, or on any error the whole field masked by ``failed`` (fail closed)."""
        if self.failed is None:
            return scan()
        before = len(self.findings)
        try:
            return scan()
        except Exception as exc:  # noqa: BLE001 - whatever broke, the content must not pass
            del self.findings[before:]  # they point into a structure that is thrown away
            result = self.failed(node if isinstance(node, str) else "", path, exc)
            self.findings.extend(result.findings)
            return result.text

    def select(self, node: Any, segs: list[str], path: str) -> Any:
        if not segs:
            return self.guarded(node, path, lambda: self.scan(node, path, 0))
        seg, rest = segs[0], segs[1:]
        if seg == "[*]" or (seg == "*" and isinstance(node, list)):
            if not isinstance(node, list):
                return node
            return [self.select(v, rest, f"{path}[{i}]") for i, v in enumerate(node)]
        if not isinstance(node, Mapping):
            return node
        if seg == "*":
            if not rest:  # every value of this mapping: keys give context, as below it
                return self.scan_mapping(node, path, 0, guard=True)
            return {k: self.select(v, rest, _join(path, k)) for k, v in node.items()}
        if seg not in node:
            return node
        copy = dict(node)
        copy[seg] = self.select(node[seg], rest, _join(path, seg))
        return copy

    def text(self, value: str, path: str) -> str:
        result = self.redact(value, path)
        if result.findings:
            self.findings.extend(result.findings)
        return str(result.text)

    def scan(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, str):
            return self.scan_str(value, path, depth)
        if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
            return self.text(json.dumps(value, ensure_ascii=False, default=str), path)
        if isinstance(value, Mapping):
            return self.scan_mapping(value, path, depth)
        if isinstance(value, list | tuple):
            return [self.scan(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _MIN_SCANNED_INT:
            result = self.redact(str(value), path)
            if result.findings:
                self.findings.extend(result.findings)
                return result.text
        return value

    def scan_mapping(
        self, value: Mapping[Any, Any], path: str, depth: int, guard: bool = False
    ) -> dict[Any, Any]:
        """Keys scanned too; with ``guard`` each value is its own fail-closed field."""
        out: dict[Any, Any] = {}
        for key, item in value.items():
            field = _join(path, key)
            new_key = key
            if isinstance(key, str) and len(key) >= _MIN_SCANNED_KEY:
                new_key = self.text(key, f"{field}#key")
            if guard:
                out[new_key] = self.guarded(item, field, partial(self.item, key, item, field, depth))
            else:
                out[new_key] = self.item(key, item, field, depth)
        return out

    def item(self, key: Any, item: Any, field: str, depth: int) -> Any:
        if isinstance(key, str) and self.keyed is not None:
            keyed = self.keyed_value(item, key, field)
            if keyed is not None:
                return keyed
        return self.scan(item, field, depth + 1)

    def keyed_value(self, item: Any, key: str, field: str) -> Any:
        """The redacted value under a sensitive key, or ``None`` to scan it as usual."""
        assert self.keyed is not None
        if isinstance(item, bool) or item is None:
            return None
        if isinstance(item, list | tuple) and item and not any(isinstance(v, Mapping | list | tuple) for v in item):
            # {"backup_codes": [...]}, {"passwords": ["a", "b"]}: each item is under the key
            items = [self.keyed_value(v, key, f"{field}[{i}]") for i, v in enumerate(item)]
            if all(new is None for new in items):
                return None  # the key is not sensitive: the list is scanned as usual
            return [new if new is not None else self.scan(old, f"{field}[{i}]", 0)
                    for i, (new, old) in enumerate(zip(items, item, strict=True))]
        if isinstance(item, int | float):
            item = str(item)
        if not isinstance(item, str):
            return None
        result = self.keyed(item, key, field)
        if result is None:
            return None
        if result.findings:
            self.findings.extend(result.findings)
        return result.text

    def scan_str(self, value: str, path: str, depth: int) -> Any:
        stripped = value.strip()
        head = stripped[:1]
        if head == '"' and stripped.endswith('"') and len(stripped) > 2 and depth < MAX_DEPTH:
            # JSON encoded twice ("\"{\\\"password\\\": ...}\""): scan what it encodes
            try:
                inner = json.loads(stripped)
            except (ValueError, RecursionError):
                inner = None
            if isinstance(inner, str):
                before = len(self.findings)
                redacted = self.scan_str(inner, path, depth + 1)
                return value if len(self.findings) == before else json.dumps(redacted, ensure_ascii=False)
        if head in ("{", "[") and depth < MAX_DEPTH:
            try:
                doc = json.loads(value)
            except (ValueError, RecursionError):
                doc = None  # not JSON, or nesting deeper than the parser goes: scanned as text
            if isinstance(doc, dict | list):
                before = len(self.findings)
                redacted = self.scan(doc, path, depth + 1)
                if len(self.findings) == before:
                    return value  # untouched: keep the producer's exact formatting
                return json.dumps(redacted, ensure_ascii=False)
        return self.text(value, path)
