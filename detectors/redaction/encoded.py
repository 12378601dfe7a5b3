"""Base64 segments decoded and scanned: a key hidden in an encoded blob is still a key.

Runs of the base64 (or base64url) alphabet of at least :data:`MIN_ENCODED_CHARS`
characters are decoded; when the bytes are mostly printable UTF-8 text, the caller's
``find`` scans it, and any finding inside masks the whole encoded run (its offsets in
the decoded text mean nothing in the original). Inline binary (``data:...;base64,``
URLs, images) is skipped exactly: only its own characters, never what follows.
Percent-encoding is handled by :mod:`detectors.redaction.textview`, whose offsets map
back character by character.

>>> import base64
>>> blob = base64.b64encode(b"password=Tr0ub4dor&3x!").decode()
>>> def find(text):
...     return [Span("PASSWORD", 9, len(text))] if "password=" in text else []
>>> [(s.entity, s.start, s.end) for s in encoded_spans(f"cfg {blob} end", find)]
[('PASSWORD', 4, 36)]
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import re
from collections.abc import Callable, Sequence

import re2

from .engine import DATA_URI, Span, _ByteToChar

MIN_ENCODED_CHARS = 24
MAX_ENCODED_CHARS = 1 << 20
# RE2 runs in linear time, ~5x faster than ``re`` on prose, where every word is a
# candidate start; it runs on the UTF-8 bytes, offsets mapped back as the engine does.
_RUN_RE2 = re2.compile(rf"[A-Za-z0-9+/_-]{{{MIN_ENCODED_CHARS},}}={{0,2}}")
_HEX_ONLY = re.compile(r"[0-9a-fA-F-]+", re.ASCII)  # digests and UUIDs


def _decode(run: str) -> str | None:
    body = run.rstrip("=")
    if _HEX_ONLY.fullmatch(body) or len(body) > MAX_ENCODED_CHARS:
        return None  # hex digests and UUIDs decode to noise; they are scanned as themselves
    padded = body + "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if text.isprintable():
        return text or None
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return text if text and printable >= 0.95 * len(text) else None


def encoded_spans(text: str, find: Callable[[str], list[Span]], found: Sequence[Span] = ()) -> list[Span]:
    """Spans over the encoded runs of ``text`` whose decoded text holds a finding.

    Runs inside a span in ``found`` (a JWT, a provider key the patterns already
    reported) are not decoded: that span masks them anyway. Every decoded run of a text
    is scanned in ONE ``find`` call (joined by newlines, findings mapped back to their
    run), so a text of many small runs costs one scan, not one per run, and no count
    limit is needed (a limit would let a secret hide behind enough harmless runs).
    """
    if len(text) < MIN_ENCODED_CHARS:
        return []
    encoded = text.encode("utf-8", "surrogatepass")
    matches = _RUN_RE2.finditer(encoded)
    first = next(matches, None)
    if first is None:
        return []
    to_char = _ByteToChar(text, len(encoded))  # the identity on ASCII text
    skip = [m.span(1) for m in DATA_URI.finditer(text)] if "base64," in text else []
    covered = _Covered(found)
    runs: list[tuple[int, int]] = []
    offsets: list[int] = []  # where each decoded run starts in the joined text
    parts: list[str] = []
    size = 0
    for m in itertools.chain((first,), matches):
        start, end = to_char(m.span())
        if covered(start, end) or any(a <= start < b for a, b in skip):
            continue
        decoded = _decode(text[start:end])
        if decoded is None:
            continue
        runs.append((start, end))
        offsets.append(size)
        parts.append(decoded)
        size += len(decoded) + 1
    if not parts:
        return []
    best: dict[int, Span] = {}
    for inner in find("\n".join(parts)):
        first_run = bisect.bisect_right(offsets, inner.start) - 1
        last_run = bisect.bisect_right(offsets, max(inner.start, inner.end - 1)) - 1
        for i in range(max(first_run, 0), last_run + 1):
            if i not in best or inner.priority > best[i].priority:
                best[i] = inner
    return [Span(s.entity, *runs[i], s.score, s.priority, "base64") for i, s in sorted(best.items())]


class _Covered:
    """Whether ``[start, end)`` lies inside one of ``spans`` (bisect over a prefix max)."""

    def __init__(self, spans: Sequence[Span]) -> None:
        ordered = sorted((s.start, s.end) for s in spans)
        self._starts = [a for a, _ in ordered]
        self._reach = list(itertools.accumulate((b for _, b in ordered), max))

    def __call__(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self._starts, start)
        return i > 0 and self._reach[i - 1] >= end
