"""Street addresses in US, UK and continental European forms, with the lines that follow them.

spaCy's small model finds few street addresses (it was trained on news, where
``Pfarrgasse 91`` rarely appears), and the built-in catalogue only knows the US form with
capitalised ASCII words. This recognizer adds, with full Unicode letters:

* US/UK: house number, one to five words, a street suffix (``St``, ``Road``, ``Terrace``...);
* continental: a word built on a street word (``-straße``, ``-gasse``, ``-straat``,
  ``-vägen``, ``-katu``; ``Rue``, ``Via``, ``Calle``, ``ul.``...) and a house number,
  optionally after a postcode-like number (``80331 Pfarrgasse 91``);
* unit lines (``Apt. 608``, ``Suite 170``, ``Flat 2``) and military forms (``PSC 1234, Box
  5678``, ``USNV Botolen``, ``FPO AE 12382``).

A found street line is extended over up to four short following lines (unit, city,
region, country, postcode), which is how postal addresses are written in forms and
signatures; the whole block is one ``STREET_ADDRESS`` span. Texts without a digit are
skipped (every form here has a house, unit or box number).

>>> rec = StreetAddressRecognizer()
>>> text = "Ship it to 6185 Pfarrgasse 91\\n Suite 170\\n MITTERLOBMING\\n Austria 26759\\nThanks."
>>> [text[s.start:s.end] for s in rec.find(text)]
['6185 Pfarrgasse 91\\n Suite 170\\n MITTERLOBMING\\n Austria 26759']
>>> rec.find("Order 44549894 was shipped on 2024-05-01 to the main warehouse.")
[]
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import re2

from .engine import Span

_SUFFIX = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl"
    r"|Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq|Trail|Trl|Plaza|Crescent"
    r"|Close|Row|Loop|Pike|Expressway|Freeway|Mews|Gardens|Grove|Hill|Park|Walk|Alley|Path"
    r"|Cliffs?|Flats?|Mills?|Dam|Ridge|Heights|Green|Crossing|Junction|Estates?|Manor|Meadows?"
    r"|Harbou?r|Landing|Point|Springs?|Station|Summit|Turnpike|Underpass|Valley|View|Villages?"
)
# Street words of European languages, as a word of their own or the end of a compound.
_STREET_END = (
    r"stra(?:ss|ß)e|str\.|gasse|weg|allee|platz|ring|damm|ufer|steig|straat|laan|gracht|plein"
    r"|dreef|kade|gatan|gata|vägen|väg|gränd|gade|vej|veien|vegen|gate|stræde|katu|kuja|tie"
    r"|polku|kaari|utca|út|tér|ulica|ucica|cesta|ulice|náměstí|třída|sokak|caddesi|odos|οδός"
)
_STREET_START = (
    r"Rue|Avenue|Av\.?|Avenida|Via|Viale|Piazza|Corso|Largo|Vicolo|Calle|Carrer|Paseo|Plaza"
    r"|Camino|Rua|Travessa|Praça|Estrada|Rambla|Chemin|Boulevard|Bd|Allée|Impasse|Quai"
    r"|Place|ul\.|ulica|Aleja|al\.|Strada|Bulevardul|Ulitsa|ulitsa|Jalan|Jl\.|Λ\.|Οδός"
)
_W = r"[^\W\d_][\w'’.-]*"  # a word: starts with a letter (any script), may hold dots/dashes
_NUM = r"[0-9]{1,6}[A-Za-z]?(?:[/-][0-9]{1,4}[A-Za-z]?)?"

_PATTERNS = [
    # 1600 Pennsylvania Avenue NW / 12 High St. / 0605 πεντέλης 210 (US/UK: suffix required)
    rf"\b{_NUM}(?:[ \t]+{_W}){{1,5}}[ \t]+(?:{_SUFFIX})\b\.?(?:[ \t]+(?:N|S|E|W|NE|NW|SE|SW)\b)?",
    # [80331 ]Pfarrgasse 91 / Beerninckstraat 88 / Árpád fejedelem útja 3
    rf"(?:\b[0-9]{{1,6}}[ \t]+)?(?:{_W}[ \t]+){{0,3}}[^\W\d_]*(?i:{_STREET_END})(?:[ \t]+{_W}){{0,2}}[ \t]+{_NUM}\b",
    # [12 ]Rue de Tanger 29 / Via Nuova del Campo 85 / Rua Mina 50 / ul. Więckowskiego Stefana 28
    rf"(?:\b[0-9]{{1,6}}[ \t]+)?\b(?i:{_STREET_START})[ \t]+(?:{_W}[ \t]+){{0,5}}{_NUM}\b",
    # 36 rue de pologne / 29 Rue de Tanger (number first)
    rf"\b{_NUM}[ \t]+(?i:{_STREET_START})(?:[ \t]+{_W}){{1,5}}",
    # Apt. 608 / Suite 170 / Flat 2B / Unit 4
    r"\b(?i:apt|apartment|suite|ste|unit|flat)\.?[ \t]*#?[0-9]{1,5}[A-Za-z]?\b",
    # PSC 1234, Box 5678 / USNS Botolen / APO AE 12345
    r"\b(?:PSC|CMR|Unit)[ \t]+[0-9]{3,5},?[ \t]+Box[ \t]+[0-9]{3,5}\b",
    r"\b(?:USNS|USNV|USS|USCGC)[ \t]+[^\W\d_]+\b",
    r"\b(?:APO|FPO|DPO)[ \t]+(?:AA|AE|AP)[ \t]+[0-9]{5}\b",
]
_ADDRESS = re.compile("|".join(f"(?:{p})" for p in _PATTERNS))
# Every form above holds one of these words. RE2 finds them in one linear pass (its DFA);
# the address patterns (Unicode words, optional groups: slow in Python's engine) then run
# only on the line around each hit, within _WINDOW characters. RE2's \b is ASCII-only,
# so the trigger is a superset (the patterns check the real word boundaries).
_TRIGGER = re2.compile(
    rf"\b(?:{_SUFFIX}|PSC|CMR|USNS|USNV|USS|USCGC|APO|FPO|DPO)\b|(?i:{_STREET_END})"
    rf"|\b(?i:{_STREET_START})|\b(?i:apt|apartment|suite|ste|unit|flat)\b|Λ\.|Οδός"
)
_WINDOW = 120
# At most this many characters of windows per text go through Python's engine: its cost is
# about 0.1 ms per character on text dense with trigger words ("1 2 3 Street " repeated),
# so without a bound one hostile 1 MB message held the worker's event loop for minutes.
# Real text has a few triggers per address; past the budget the built-in (RE2) one-line
# street pattern still covers the rest of the text.
MAX_WINDOW_CHARS = 8_192
_DIGIT = re.compile(r"[0-9]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# A following line that continues an address: short, Title Case or capitals (city, region,
# country), numbers (postcode, unit); not a sentence and not a new "Label:" field.
_LINE = re.compile(r"[ \t>?*•-]*([^\n]{1,40}?)[ \t]*(?=\n|$)")
_CONNECTORS = frozenset(["de", "del", "della", "di", "da", "do", "dos", "das", "du", "la", "le", "les", "el", "nad", "pod", "an", "am", "im", "upon", "on", "u", "v", "y", "i"])
_MAX_FOLLOWING = 4


class StreetAddressRecognizer:
    """``STREET_ADDRESS`` spans by pattern, extended over the address block that follows.

    ``priority`` defaults to the built-in PII priority, so that where the built-in
    one-line street pattern also matched, the longer block (with city and postcode) wins.
    """

    name: str = "addresses"
    entities: tuple[str, ...] = ("STREET_ADDRESS",)

    def __init__(self, priority: int = 2) -> None:
        self.priority = priority

    def find(self, text: str) -> list[Span]:
        if _DIGIT.search(text) is None:  # every form has an ASCII house/unit/box number; C loop, not Python
            return []
        found: list[tuple[int, int]] = []
        for m in _candidates(text):
            start, end = m.span()
            if found and start <= found[-1][1]:
                found[-1] = (found[-1][0], max(end, found[-1][1]))
                continue
            found.append((start, _extend(text, end)))
        return [Span("STREET_ADDRESS", s, e, 0.8, self.priority, self.name) for s, e in _merge(found)]


def _candidates(text: str) -> Iterable[re.Match[str]]:
    """Address matches in the windows around trigger words (each region scanned once)."""
    scanned = budget = 0
    # RE2 takes UTF-8: a lone surrogate (JSON "\\ud800") becomes U+FFFD, one code point
    # for one, so offsets stay those of ``text``.
    safe = text if text.isascii() else _SURROGATE.sub("\ufffd", text)
    for hit in _TRIGGER.finditer(safe):
        if hit.end() <= scanned:
            continue
        line_start = text.rfind("\n", 0, hit.start()) + 1
        line_end = text.find("\n", hit.end())
        lo = max(line_start, hit.start() - _WINDOW, scanned)
        hi = min(len(text) if line_end < 0 else line_end, hit.end() + _WINDOW)
        if _DIGIT.search(text, lo, hi):
            budget += hi - lo
            if budget > MAX_WINDOW_CHARS:
                return
            for m in _ADDRESS.finditer(text, lo, hi):
                yield m
                scanned = max(scanned, m.end())
        scanned = max(scanned, hit.end())


def _extend(text: str, end: int) -> int:
    """``end`` moved over up to 4 following address lines (unit, city, country, postcode)."""
    for _ in range(_MAX_FOLLOWING):
        if not text.startswith("\n", end):
            break
        nxt = end + 1
        while text.startswith("\n", nxt):  # one blank line between address lines is common
            nxt += 1
        m = _LINE.match(text, nxt)
        if m is None or not _address_line(m.group(1)):
            break
        end = m.end()
    return end


def _address_line(line: str) -> bool:
    """City / region / country / postcode line: every word capitalised, a number or a connector.

    >>> [_address_line(x) for x in ["Suite 170", "MITTERLOBMING", "Velká Bukovina u Decína", "Thanks.", "Phone: 555"]]
    [True, True, True, False, False]
    """
    if line.endswith((".", "!", "?")) or ":" in line or "@" in line:
        return False
    words = re.split(r"[\s,]+", line.strip(" ,"))
    return bool(words) and all(
        w[:1].isupper() or w[:1].isdigit() or w[:1] == "(" or w.lower() in _CONNECTORS for w in words if w
    )


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        else:
            out.append((s, e))
    return out
