"""What the detectors read: a normalised view of a text, with offsets back to the original.

Attackers and ordinary software both hide values from ASCII patterns: full-width
digits (``４１１１``), zero-width or bidi control characters inside a number, no-break
and ideographic spaces, Unicode dashes, JSON escaped once more inside a string
(``{\\"password\\": \\"x\\"}``) and percent-encoding (``user%40example.com``). The view
applies NFKC per character, removes invisible characters, maps every Unicode digit,
space and dash to its ASCII form, unescapes ``\\"`` and decodes ``%XX`` of printable
ASCII. ``starts[i]``/``ends[i]`` give the original characters that view character
``i`` came from, so a span found in the view masks exactly the original characters.

>>> view = detection_view("card ４１１１\\u200b1111")
>>> view.text
'card 41111111'
>>> view.original_span(5, 13)
(5, 14)
>>> detection_view("plain ascii") is None
True
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import re2

# Zero-width, joiners, soft hyphen, word joiner, BOM, and the bidi embedding/isolate marks.
_INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069"
    "\u206a\u206b\u206c\u206d\u206e\u206f\u3164\ufeff\uffa0"
)
# "=" is one too: it joins a key to its value (password%3DTr0ub4dor) and ends base64.
_JOINING = frozenset("@.-_+~:/=") | frozenset(chr(c) for c in range(0x30, 0x3A)) | frozenset(
    chr(c) for c in (*range(0x41, 0x5B), *range(0x61, 0x7B)))
# What can change in the view: any non-ASCII character, an escaped quote, a %XX escape.
_CHANGING = re.compile(r'[^\x00-\x7f]|\\"|%[2-7][0-9A-Fa-f]')
_PERCENT = re.compile(r"%[2-7][0-9A-Fa-f]")
_LATIN1 = re2.Options()
_LATIN1.encoding = re2.Options.Encoding.LATIN1  # byte classes, not code points
_NON_ASCII_BYTES = re2.compile(rb"[\x80-\xff]+", _LATIN1)


@dataclass(frozen=True, slots=True)
class TextView:
    """A normalised text and, per character, the original ``[start, end)`` it came from."""

    text: str
    starts: list[int]
    ends: list[int]
    # True when escapes were decoded (``%XX``, ``\\"``): that can also break a value the
    # original holds whole (a password with ``%27`` in it), so the original is scanned too.
    decoded: bool = False

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original characters behind ``view.text[start:end]``."""
        return self.starts[start], self.ends[end - 1]


def _normalised_char(ch: str) -> str:
    if ch in _INVISIBLE:
        return ""
    category = unicodedata.category(ch)
    if category == "Nd":
        return str(unicodedata.digit(ch, 0))
    if category == "Zs":
        return " "
    if category == "Pd":
        return "-"
    if category == "Cf":
        return ""  # other format controls are invisible as well
    folded = unicodedata.normalize("NFKC", ch)
    return folded if folded.isascii() else ch


def _non_ascii_chars(text: str) -> set[str]:
    """The distinct non-ASCII characters of ``text``; RE2 over the UTF-8 bytes is ~3x
    faster than ``set(text)`` on 25 KB of prose."""
    raw = b"".join(_NON_ASCII_BYTES.findall(text.encode("utf-8", "surrogatepass")))
    return set(raw.decode("utf-8", "surrogatepass"))


@lru_cache(maxsize=8192)
def _changes(ch: str) -> bool:
    return _normalised_char(ch) != ch


def detection_view(text: str) -> TextView | None:
    """The normalised view of ``text``, or ``None`` when it would be identical."""
    # The common case, a text the view would not change, is decided by C string scans
    # and a literal-led regex: the alternation below starts with a class and costs ~10x
    # more on plain text. Non-ASCII text (curly quotes, accents) is checked per distinct
    # character, cached.
    if '\\"' not in text and _PERCENT.search(text) is None and (
        text.isascii() or not any(_changes(ch) for ch in _non_ascii_chars(text))
    ):
        return None
    first = _CHANGING.search(text)
    if first is None:
        return None
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    cursor = 0
    changed = decoded = False
    for m in _CHANGING.finditer(text, first.start()):
        pos = m.start()
        if pos > cursor:  # an unchanged run: copied and mapped one to one, in bulk
            out.append(text[cursor:pos])
            starts.extend(range(cursor, pos))
            ends.extend(range(cursor + 1, pos + 1))
        token = m.group()
        if token == '\\"':
            replacement, decoded = '"', True
        elif token[0] == "%":
            char = chr(int(token[1:], 16))
            # Only characters that join a value (ann%40example.org): a decoded quote, space
            # or separator would end a value the original holds whole (a password "a%27b").
            if char in _JOINING:
                replacement, decoded = char, True
            else:
                replacement = token
        else:
            replacement = _normalised_char(token)
        changed = changed or replacement != token
        out.append(replacement)
        starts.extend([pos] * len(replacement))
        ends.extend([m.end()] * len(replacement))
        cursor = m.end()
    if not changed:
        return None
    if cursor < len(text):
        out.append(text[cursor:])
        starts.extend(range(cursor, len(text)))
        ends.extend(range(cursor + 1, len(text) + 1))
    return TextView("".join(out), starts, ends, decoded)
