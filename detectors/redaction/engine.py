"""One-pass pattern engine: an RE2 set says which patterns can match, only those run.

Every pattern has an RE2 *trigger* (a superset of what the pattern matches). All
triggers are compiled into one ``re2.Set`` and scanned in a single linear-time pass
(RE2's DFA, Cox 2010, "Regular Expression Matching in the Wild"). Only the patterns
whose trigger fired are then run with Python's ``re`` to get offsets, and only their
candidates reach the validators (Luhn, mod-97, entropy). A text with no candidate costs
one DFA pass and nothing else.

>>> spec = PatternSpec("EMAIL_ADDRESS", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}")
>>> rec = PatternRecognizer("demo", [spec])
>>> [(s.entity, s.start, s.end) for s in rec.find("mail ann@example.org now")]
[('EMAIL_ADDRESS', 5, 20)]
>>> rec.find("nothing here")
[]
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import re2

Category = Literal["pii", "secret", "other"]

# RE2 keeps a lazily built DFA per set; with ~100 patterns a generous budget keeps it from
# bailing out (which would read as "no match" and fail open).
_SET_MAX_MEM = 256 << 20
# The payload is exactly the base64 alphabet: whitespace ends it, so text after an inline
# image is scanned as usual (group 1 is the payload).
DATA_URI = re.compile(r"data:[\w/+.-]{1,64};base64,([A-Za-z0-9+/]{16,}={0,2})", re.ASCII)


@dataclass(frozen=True, slots=True)
class Span:
    """A found entity: ``text[start:end]`` (code-point offsets, end exclusive).

    ``priority`` settles overlaps: a provider-specific key beats the generic
    high-entropy rule that also matched it.
    """

    entity: str
    start: int
    end: int
    score: float = 1.0
    priority: int = 1
    source: str = ""


@runtime_checkable
class Recognizer(Protocol):
    """What a pluggable recognizer provides (e.g. an NER model for person names).

    ``find`` returns spans over the exact string it was given; it must not raise on
    any Unicode input.
    """

    name: str
    entities: tuple[str, ...]

    def find(self, text: str) -> list[Span]: ...


@dataclass(frozen=True)
class PatternSpec:
    """One pattern for one entity.

    Parameters
    ----------
    entity
        Entity name reported, e.g. ``"CREDIT_CARD"``.
    pattern
        Python ``re`` pattern (compiled with ``re.ASCII``). A named group ``value``,
        when present, is the reported part (the context words around it are not).
    trigger
        RE2 pattern that matches wherever ``pattern`` can; defaults to ``pattern``.
    validate
        Check on the value (``str -> bool``) run only on candidates.
    refine
        Alternative to ``validate`` that returns the valid ``(start, end)`` inside the
        value (e.g. a card followed by another number), or ``None``.
    context, deny_context
        Case-insensitive regexes looked for in the ``window`` characters before the
        match: ``context`` must be there; ``deny_context`` rejects the match.
    left, right
        Regexes that must NOT match at the character before / at the end of the match
        (token boundaries). They are checked in code, not as lookarounds, so that the
        pattern stays RE2-compatible and runs on RE2's DFA.
    engine
        ``"auto"``: Python's ``re`` when the pattern starts with a literal of two or more
        characters (its prefix scan is fastest there), otherwise RE2 (linear time, no
        per-position backtracking for patterns starting with a character class).
        ``"python"`` forces Python (measured faster for a few capture-heavy patterns).
        ``"anchored"``: RE2 finds where ``trigger`` matches (the pattern must begin with
        it) and Python's ``re.match`` runs only there; for keyword-led patterns that
        Python would otherwise try at every position.
    """

    entity: str
    pattern: str
    trigger: str | None = None
    validate: Callable[[str], bool] | None = None
    refine: Callable[[str], tuple[int, int] | None] | None = None
    context: str | None = None
    deny_context: str | None = None
    window: int = 48
    left: str | None = None
    right: str | None = None
    engine: Literal["auto", "python", "anchored"] = "auto"
    priority: int = 1
    category: Category = "pii"


@dataclass
class _Compiled:
    spec: PatternSpec
    regex: re.Pattern[str]  # Python engine: fallback, and for patterns RE2 cannot run
    fast: Any  # re2 regexp, or None when the pattern needs lookarounds/backreferences
    context: re.Pattern[str] | None
    deny: re.Pattern[str] | None
    left: re.Pattern[str] | None
    right: re.Pattern[str] | None
    group: int = field(default=0)


def re2_superset(pattern: str) -> str:
    """``pattern`` with its lookaround groups removed: what RE2 can run, matching a superset.

    Counted repetitions lose their upper bound and keep a lower bound of at most 8
    (``x{8,}`` matches wherever ``x{36}`` does), which keeps RE2's set DFA small.

    >>> re2_superset(r"(?<![a-z])ab(?![0-9])c[0-9]{36}x{2,5}")
    'abc[0-9]{8,}x{2,}'
    """
    return _COUNTED.sub(lambda m: f"{{{min(int(m.group(1)), 8)},}}", _strip_lookarounds(pattern))


_COUNTED = re.compile(r"(?<!\\)\{([0-9]+)(?:,[0-9]*)?\}")


def _strip_lookarounds(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
            depth, j = 0, i
            while j < len(pattern):
                if pattern[j] == "\\":
                    j += 2
                    continue
                if pattern[j] == "(":
                    depth += 1
                elif pattern[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            i = j + 1
            continue
        if pattern[i] == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        out.append(pattern[i])
        i += 1
    return "".join(out)


_LITERAL_START = re.compile(r"[A-Za-z0-9_\-:/@\"'=]{2}")


def _compile(spec: PatternSpec) -> _Compiled:
    regex = re.compile(spec.pattern, re.ASCII)
    fast = None
    if spec.engine == "anchored":
        fast = re2.compile(spec.trigger or spec.pattern)
    elif spec.engine == "auto" and not _LITERAL_START.match(spec.pattern):
        quiet = re2.Options()
        quiet.log_errors = False  # a pattern RE2 cannot run simply stays on Python's engine
        try:
            fast = re2.compile(spec.pattern, quiet)
        except re2.error:
            fast = None
    ctx = re.compile(spec.context, re.IGNORECASE) if spec.context else None
    deny = re.compile(spec.deny_context, re.IGNORECASE) if spec.deny_context else None
    left = re.compile(spec.left, re.ASCII) if spec.left else None
    right = re.compile(spec.right, re.ASCII) if spec.right else None
    group = regex.groupindex.get("value", 0)
    return _Compiled(spec, regex, fast, ctx, deny, left, right, group)


class PatternRecognizer:
    """Runs a catalogue of :class:`PatternSpec` with a single RE2-set prefilter pass.

    Parameters
    ----------
    name
        Recognizer name recorded on each span (``source``).
    specs
        The patterns; each trigger must compile in RE2 (checked here, with the entity
        named in the error).
    """

    def __init__(self, name: str, specs: Sequence[PatternSpec]) -> None:
        self.name = name
        self.specs = tuple(specs)
        self.entities = tuple(dict.fromkeys(s.entity for s in self.specs))
        self._compiled = [_compile(s) for s in self.specs]
        options = re2.Options()
        options.max_mem = _SET_MAX_MEM
        self._set = re2.Set.SearchSet(options)
        for spec in self.specs:
            try:
                self._set.Add(spec.trigger or re2_superset(spec.pattern))
            except re2.error as exc:
                raise ValueError(
                    f"pattern for {spec.entity} is not valid RE2 ({exc}); give the spec an "
                    "RE2-compatible `trigger` that matches a superset of `pattern`"
                ) from exc
        self._set.Compile()

    def triggered(self, text: str) -> list[int]:
        """Indices of the specs whose trigger matches somewhere in ``text`` (one pass)."""
        hits = self._set.Match(text.encode("utf-8", "surrogatepass"))
        return sorted(hits) if hits else []

    def find(self, text: str) -> list[Span]:
        """All validated spans in ``text``, overlaps not yet resolved."""
        encoded = text.encode("utf-8", "surrogatepass")
        hits = self._set.Match(encoded)
        if not hits:
            return []
        # RE2 runs on the UTF-8 bytes; byte offsets are mapped back to code points (the
        # identity for ASCII text).
        to_char = _ByteToChar(text, len(encoded))
        spans: list[Span] = []
        for index in sorted(hits):
            spans.extend(self._run(self._compiled[index], text, encoded, to_char))
        if spans and "base64," in text:
            spans = _outside_data_uris(text, spans)
        return spans

    def _run(self, c: _Compiled, text: str, encoded: bytes, to_char: _ByteToChar) -> Iterable[Span]:
        spec = c.spec
        if spec.engine == "anchored":
            matches: Iterable[tuple[int, int, int, int]] = _anchored(c, text, encoded, to_char)
        elif c.fast is not None:
            matches = (
                (*to_char(m.span()), *to_char(m.span(c.group))) for m in c.fast.finditer(encoded)
            )
        else:
            matches = ((*m.span(), *m.span(c.group)) for m in c.regex.finditer(text))
        for m_start, m_end, start, end in matches:
            if c.left is not None and m_start > 0 and c.left.match(text, m_start - 1):
                continue
            if c.right is not None and c.right.match(text, m_end):
                continue
            if start < 0 or start == end:
                continue
            if c.context is not None or c.deny is not None:
                before = text[max(0, m_start - spec.window) : start]
                if c.context is not None and not c.context.search(before):
                    continue
                if c.deny is not None and c.deny.search(before):
                    continue
            value = text[start:end]
            if spec.refine is not None:
                sub = spec.refine(value)
                if sub is None:
                    continue
                start, end = start + sub[0], start + sub[1]
            elif spec.validate is not None and not spec.validate(value):
                continue
            yield Span(spec.entity, start, end, 1.0, spec.priority, self.name)


def _anchored(c: _Compiled, text: str, encoded: bytes, to_char: _ByteToChar) -> Iterable[tuple[int, int, int, int]]:
    """Python ``re.match`` at each place RE2 found the pattern's leading trigger."""
    resume = 0
    for anchor in c.fast.finditer(encoded):
        pos = to_char(anchor.span())[0]
        if pos < resume:
            continue
        m = c.regex.match(text, pos)
        if m is not None:
            resume = m.end()
            yield (*m.span(), *m.span(c.group))


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


class _ByteToChar:
    """Maps UTF-8 byte offsets of ``text`` to code-point offsets (bisect over non-ASCII chars)."""

    __slots__ = ("_bytes", "_extra", "identity")

    def __init__(self, text: str, n_bytes: int) -> None:
        self.identity = n_bytes == len(text)
        self._bytes: list[int] = []
        self._extra: list[int] = []
        if not self.identity:
            extra = 0
            for m in _NON_ASCII.finditer(text):
                # ``surrogatepass`` encodes a lone surrogate in 3 bytes too
                extra += len(m.group().encode("utf-8", "surrogatepass")) - 1
                self._bytes.append(m.start() + extra)  # byte offset just after this char
                self._extra.append(extra)

    def __call__(self, span: tuple[int, int]) -> tuple[int, int]:
        if self.identity or span[0] < 0:
            return span
        return self._one(span[0]), self._one(span[1])

    def _one(self, byte_offset: int) -> int:
        i = bisect.bisect_right(self._bytes, byte_offset)
        return byte_offset - (self._extra[i - 1] if i else 0)


def _outside_data_uris(text: str, spans: list[Span]) -> list[Span]:
    """Drop secret look-alikes that sit inside ``data:...;base64,`` payloads (images)."""
    blobs = [m.span() for m in DATA_URI.finditer(text)]
    if not blobs:
        return spans
    return [s for s in spans if not any(a <= s.start and s.end <= b for a, b in blobs)]


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Keep a non-overlapping subset: higher priority first, then longer, then earlier.

    >>> a = Span("GENERIC_SECRET", 0, 30, priority=1)
    >>> b = Span("GITHUB_TOKEN", 2, 30, priority=3)
    >>> [s.entity for s in resolve_overlaps([a, b])]
    ['GITHUB_TOKEN']
    """
    ranked = sorted(set(spans), key=lambda s: (-s.priority, s.start - s.end, s.start, s.entity))
    starts: list[int] = []
    kept: list[Span] = []
    for span in ranked:
        i = bisect.bisect_right(starts, span.start)
        if i > 0 and kept[i - 1].end > span.start:
            continue
        if i < len(kept) and kept[i].start < span.end:
            continue
        starts.insert(i, span.start)
        kept.insert(i, span)
    return kept
