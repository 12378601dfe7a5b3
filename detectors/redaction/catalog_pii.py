"""Personal-data patterns: what a regex plus a checksum or a context word can prove.

Each entry is a :class:`~detectors.redaction.engine.PatternSpec`. Numbers are accepted
only when a validator agrees (Luhn and network prefix for cards, mod-97 for IBANs, SSA
structure for SSNs, octet ranges for IPv4) or when a context word sits right before
them (a bare 9-digit number is an SSN only after "SSN"). Person names are deliberately
absent: patterns cannot find them; plug an NER recognizer in instead.

>>> from detectors.redaction.engine import PatternRecognizer
>>> rec = PatternRecognizer("pii", PII_SPECS)
>>> sorted({s.entity for s in rec.find("card 4111 1111 1111 1111, ip 10.1.2.3")})
['CREDIT_CARD', 'IP_ADDRESS']
>>> [s.entity for s in rec.find("Tracking number 4111 1111 1111 1111, release 1.2.3.4")]
[]
"""

from __future__ import annotations

from .engine import PatternSpec
from .validators import (
    IBAN_LENGTHS,
    card_valid,
    digits_of,
    iban_valid,
    ipv4_valid,
    ipv6_valid,
    nanp_valid,
    ssn_valid,
)

PRIORITY = 2
_NUM_LEFT = r"[A-Za-z0-9_.]"  # a number glued to a word or a decimal point is not standalone
_NUM_RIGHT = r"[A-Za-z0-9_]|[.-][0-9]"
_PHONE_CONTEXT = (
    r"\b(?:phone|tel|telephone|mobile|cell|fax|call|ring|whatsapp|sms|text|contact|reach"
    r"|desk|landline|dial|number|no\.|num|registered|messages to|answering at)\b"
)
# Words that make almost any digit group a phone number (short local formats included).
_STRONG_PHONE_CONTEXT = (
    r"\b(?:phone|tel|telephone|mobile|cell|fax|call me (?:on|at)|whatsapp|sms|landline"
    r"|messages to|answering at|registered)\b\W{0,4}$"
)
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]{0,6}\.?"
_DATE = (
    rf"(?:[0-9]{{1,2}}[/.-][0-9]{{1,2}}[/.-](?:[0-9]{{4}}|[0-9]{{2}})|[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}"
    rf"|(?i:{_MONTH}) [0-9]{{1,2}}(?:st|nd|rd|th)?,? [0-9]{{4}}"
    rf"|[0-9]{{1,2}}(?:st|nd|rd|th)? (?i:{_MONTH}),? [0-9]{{4}})"
)
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH"
    "|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|AA|AE|AP"
)
_STREET_SUFFIX = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl"
    "|Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq|Trail|Trl|Plaza|Crescent"
    "|Close|Row|Loop|Pike|Expressway|Freeway"
)


def _refine_card(value: str) -> tuple[int, int] | None:
    """The longest valid card at the start of ``value`` (it may run into another number)."""
    if card_valid(value):
        return 0, len(value)
    for cut in range(len(value) - 1, 12, -1):
        if value[cut] in " -" and card_valid(value[:cut]):
            return 0, cut
    return None


def _refine_iban(value: str) -> tuple[int, int] | None:
    """Cut the candidate at its country's IBAN length, then check mod 97."""
    want = IBAN_LENGTHS.get(value[:2])
    if want is None:
        return None
    seen = 0
    for i, ch in enumerate(value):
        if ch != " ":
            seen += 1
        if seen == want:
            end = i + 1
            if end < len(value) and value[end] != " ":
                return None
            return (0, end) if iban_valid(value[:end]) else None
    return None


def _refine_maestro(value: str) -> tuple[int, int] | None:
    return (0, len(value)) if card_valid(value, min_digits=12) else None


def _short_phone_ok(value: str) -> bool:
    return 7 <= len(digits_of(value)) <= 15


def _not_git_remote(value: str) -> bool:
    """``git@github.com`` in an SSH remote is a service account, not a person."""
    return not value.startswith("git@")


def _phone_digits_ok(value: str) -> bool:
    return 8 <= len(digits_of(value)) <= 15


def _national_ok(value: str) -> bool:
    return 10 <= len(digits_of(value)) <= 11


def _has_digits(n: int):  # noqa: ANN202 - tiny closure factory
    def check(value: str) -> bool:
        return sum(ch.isdigit() for ch in value) >= n

    return check


def _spec(entity: str, pattern: str, **kw) -> PatternSpec:  # noqa: ANN003
    kw.setdefault("priority", PRIORITY)
    kw.setdefault("category", "pii")
    return PatternSpec(entity, pattern, **kw)


PII_SPECS: tuple[PatternSpec, ...] = (
    _spec(
        "EMAIL_ADDRESS",
        r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}",
        right=r"[A-Za-z0-9-]",
        trigger=r"[A-Za-z0-9._%+-]@[A-Za-z0-9]", engine="python", validate=_not_git_remote,
        left=r"[A-Za-z0-9._%+-]",
    ),
    # North American numbers with separators: (555) 123-4567, 555.123.4567 x12, +1-555-...
    _spec(
        "PHONE_NUMBER",
        r"(?:(?:\+1|001|1)[ .-]?)?(?:\([0-9]{3}\)[ .-]?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}"
        r"(?:[ ]?(?:x|ext\.?|extension)[ ]?[0-9]{1,6})?", right=_NUM_RIGHT,
        trigger=r"[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}",
        left=r"[A-Za-z0-9_./+-]",
    ),
    # Ten bare digits: a phone only if it is a valid NANP number or a context word says so.
    _spec("PHONE_NUMBER", r"(?:\+?1)?[0-9]{10}", right=_NUM_RIGHT, trigger=r"[0-9]{10}",
          validate=nanp_valid, left=_NUM_LEFT + "|[+-]"),
    _spec("PHONE_NUMBER", r"[0-9]{10}", right=_NUM_RIGHT, trigger=r"[0-9]{10}",
          context=_PHONE_CONTEXT, window=32, left=_NUM_LEFT),
    # International E.164 with or without separators: +44 20 7946 0958, +447700900123.
    _spec(
        "PHONE_NUMBER",
        r"\+[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,4}\)?){2,6}"
        r"(?:[ ]?(?:x|ext\.?)[ ]?[0-9]{1,6})?", right=_NUM_RIGHT,
        trigger=r"\+[1-9][0-9]{0,3}[ .(-]*[0-9]",
        validate=_phone_digits_ok, left=r"[A-Za-z0-9_]",
    ),
    # National numbers with a trunk 0 (UK, EU): spaced groups, or anything after a context word.
    _spec("PHONE_NUMBER", r"0[0-9]{2,4} [0-9]{3,4} ?[0-9]{3,4}", right=_NUM_RIGHT,
          trigger=r"0[0-9]{2,4} [0-9]{3,4}", validate=_national_ok, left=_NUM_LEFT),
    _spec("PHONE_NUMBER", r"\(?0[0-9]{1,4}\)?[ .-]?[0-9]{2,4}(?:[ .-]?[0-9]{2,4}){1,3}", right=_NUM_RIGHT,
          trigger=r"0[0-9]{1,4}\)?[ .-]?[0-9]{2}", validate=_national_ok,
          context=_PHONE_CONTEXT, window=32, left=_NUM_LEFT),
    _spec("PHONE_NUMBER", r"\(?[0-9]{2,4}\)?(?:[ .-][0-9]{2,8}){1,4}", right=_NUM_RIGHT,
          context=_STRONG_PHONE_CONTEXT, window=40, validate=_short_phone_ok, left=_NUM_LEFT),
    _spec("CREDIT_CARD", r"[0-9]{12}", right=r"[0-9]", refine=_refine_maestro, left=_NUM_LEFT,
          context=r"\b(?:card|cc|credit|debit|visa|mastercard|maestro|amex)\b\W{0,6}(?:no\.?|number|#)?\W{0,3}$"),
    _spec(
        "CREDIT_CARD", r"[0-9](?:[ -]?[0-9]){12,18}", right=r"[0-9]",
        trigger=r"[0-9](?:[ -]?[0-9]){12}", refine=_refine_card, left=_NUM_LEFT,
        deny_context=r"(?:tracking|order|invoice|shipment|parcel|awb|reference|ref|confirmation"
                     r"|transaction|account|acct|iban|imei|serial)\s*(?:number|no\.?|id|#)?\s*[:#]?\s*$",
    ),
    _spec("US_SSN", r"[0-9]{3}-[0-9]{2}-[0-9]{4}", right=_NUM_RIGHT,
          trigger=r"[0-9]{3}-[0-9]{2}-[0-9]{4}", validate=ssn_valid, left=_NUM_LEFT + "|-"),
    _spec("US_SSN", r"[0-9]{3} ?[0-9]{2} ?[0-9]{4}", right=_NUM_RIGHT,
          trigger=r"[0-9]{3} ?[0-9]{2} ?[0-9]{4}", validate=ssn_valid, left=_NUM_LEFT,
          context=r"\b(?:ssn|social security|ss#|ss no)", window=40),
    _spec("IBAN_CODE", r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}", right=r"[A-Za-z0-9]",
          trigger=r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){4}", refine=_refine_iban, left=r"[A-Za-z0-9]"),
    _spec(
        "IP_ADDRESS", r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", right=r"[A-Za-z0-9_]|\.[0-9]",
        trigger=r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
        validate=ipv4_valid, left=r"[A-Za-z0-9_.:-]",
        deny_context=r"(?:\bv|version|ver|release|build|firmware|python|node|java|chrome|sdk|==|>=|"
                     r"<=|~=|@)\s*[:=]?\s*$",
    ),
    _spec(
        "IP_ADDRESS", r"[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}", right=r"[\w:]",
        trigger=r"[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}",
        validate=ipv6_valid, left=r"[A-Za-z0-9_:]",
    ),
    _spec("POSTAL_CODE", r"[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][ABD-HJLNP-UW-Z]{2}", right=r"[A-Za-z0-9]",
          trigger=r"[A-Z][0-9][A-Z0-9]? [0-9][A-Z]{2}", left=r"[A-Za-z0-9]"),
    _spec("POSTAL_CODE",
          r"[ABCEGHJ-NPRSTVXY][0-9][ABCEGHJ-NPRSTV-Z] ?[0-9][ABCEGHJ-NPRSTV-Z][0-9]", right=r"[A-Za-z0-9]",
          trigger=r"[A-Z][0-9][A-Z] ?[0-9][A-Z][0-9]", left=r"[A-Za-z0-9]"),
    _spec("POSTAL_CODE", rf"(?:\b(?:{_US_STATES}),? )(?P<value>[0-9]{{5}}(?:-[0-9]{{4}})?)", right=r"[0-9]"),
    _spec("POSTAL_CODE",
          r"(?i:\b(?:zip|postal|post)\s*(?:code)?)\s*[:#]?\s*(?P<value>[0-9]{5}(?:-[0-9]{4})?)", right=r"[0-9]"),
    _spec(
        "STREET_ADDRESS",
        rf"[0-9]{{1,6}}(?: [A-Z][A-Za-z'.-]*){{1,4}} (?:{_STREET_SUFFIX})\b\.?"
        r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|#)\.? ?[A-Za-z0-9-]{1,6})?",
        trigger=rf"[0-9] [A-Z][A-Za-z'.-]*(?: [A-Z][A-Za-z'.-]*){{0,3}} (?:{_STREET_SUFFIX})\b",
        left=r"[A-Za-z0-9_.]",
    ),
    _spec("STREET_ADDRESS", r"(?:PSC|CMR|Unit) [0-9]{3,5},? Box [0-9]{3,5}",
          left=r"[A-Za-z0-9]"),
    _spec(
        "DATE_OF_BIRTH",
        r"(?i:date of birth|birth ?date|birthday|\bd\.?o\.?b\b\.?|\bborn(?: on)?)"
        rf"[^0-9\n]{{0,20}}?(?P<value>{_DATE})", right=r"[0-9]",
    ),
    _spec(
        "PASSPORT",
        r"(?i:passport(?:\s*(?:no\.?|number|num|#|id))?(?:\s*is)?)\s*[:#=]?\s*"
        r"(?P<value>[A-Z0-9]{6,9})", right=r"[A-Za-z0-9]",
        validate=_has_digits(5),
    ),
    _spec(
        "DRIVER_LICENSE",
        r"(?i:driver'?s?\s*licen[cs]e|driving\s*licen[cs]e|\bDL)(?i:\s*(?:no\.?|number|num|#|id))?"
        r"(?i:\s*is)?\s*[:#=]?\s*(?P<value>[A-Z0-9][A-Z0-9-]{4,19})", right=r"[A-Za-z0-9]",
        validate=_has_digits(4),
    ),
)
