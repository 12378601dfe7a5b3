"""Walk the selected parts of a JSON-like trace and redact every string inside them.

Selectors are dotted paths: ``input_messages[*].content`` (every list item's
``content``), ``metadata.*`` (every value of a mapping), ``error_message``. Below a
selected node everything is scanned: nested mappings and lists, strings that hold JSON
(parsed, redacted inside, re-serialised only if something changed) and long integers
(a card number sent as a JSON number is still a card number). Containers are copied,
never modified in place.

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
from typing import Any

MAX_DEPTH = 32  # streams.records.MAX_JSON_DEPTH; deeper subtrees are scanned as JSON text
_MIN_SCANNED_INT = 10**6  # shorter integers cannot hold a phone, card or SSN
_SEGMENT = re.compile(r"\[\*\]|[^.\[\]]+")

RedactFn = Callable[[str, str], Any]  # (text, field) -> object with .text and .findings


def parse_selector(selector: str) -> list[str]:
    """``"tool_calls[*].arguments"`` -> ``["tool_calls", "[*]", "arguments"]``."""
    return _SEGMENT.findall(selector)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def redact_mapping(
    trace: Mapping[str, Any], selectors: Sequence[str], redact: RedactFn, findings: list[Any]
) -> dict[str, Any]:
    """A copy of ``trace`` with every string under the selectors passed through ``redact``."""
    out: Any = dict(trace)
    for selector in selectors:
        out = _select(out, parse_selector(selector), "", redact, findings)
    return out


def _select(node: Any, segs: list[str], path: str, redact: RedactFn, findings: list[Any]) -> Any:
    if not segs:
        return _scan(node, path, redact, findings, 0)
    seg, rest = segs[0], segs[1:]
    if seg == "[*]" or (seg == "*" and isinstance(node, list)):
        if not isinstance(node, list):
            return node
        return [_select(v, rest, f"{path}[{i}]", redact, findings) for i, v in enumerate(node)]
    if not isinstance(node, Mapping):
        return node
    if seg == "*":
        return {k: _select(v, rest, _join(path, k), redact, findings) for k, v in node.items()}
    if seg not in node:
        return node
    copy = dict(node)
    copy[seg] = _select(node[seg], rest, _join(path, seg), redact, findings)
    return copy


def _scan(value: Any, path: str, redact: RedactFn, findings: list[Any], depth: int) -> Any:
    if isinstance(value, str):
        return _scan_str(value, path, redact, findings, depth)
    if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        return _scan_str(json.dumps(value, ensure_ascii=False, default=str), path, redact, findings, depth)
    if isinstance(value, Mapping):
        return {k: _scan(v, _join(path, k), redact, findings, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scan(v, f"{path}[{i}]", redact, findings, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _MIN_SCANNED_INT:
        result = redact(str(value), path)
        if result.findings:
            findings.extend(result.findings)
            return result.text
    return value


def _scan_str(value: str, path: str, redact: RedactFn, findings: list[Any], depth: int) -> Any:
    head = value.lstrip()[:1]
    if head in ("{", "[") and depth < MAX_DEPTH:
        try:
            doc = json.loads(value)
        except ValueError:
            doc = None
        if isinstance(doc, dict | list):
            before = len(findings)
            redacted = _scan(doc, path, redact, findings, depth + 1)
            if len(findings) == before:
                return value  # untouched: keep the producer's exact formatting
            return json.dumps(redacted, ensure_ascii=False)
    result = redact(value, path)
    if result.findings:
        findings.extend(result.findings)
    return result.text
