"""Checks run only on regex candidates: checksums, entropy and look-alike filters.

Patterns alone over-match (every 16-digit tracking number looks like a card, every
dotted quad like an IP). These functions turn a candidate into a decision cheaply;
they never see text that no pattern matched.

>>> luhn_valid("4111 1111 1111 1111"), luhn_valid("4111 1111 1111 1112")
(True, False)
>>> iban_valid("GB82 WEST 1234 5698 7654 32"), iban_valid("GB82 WEST 1234 5698 7654 33")
(True, False)
>>> round(shannon_entropy("aaaa"), 2), round(shannon_entropy("abcd"), 2)
(0.0, 2.0)
>>> looks_like_placeholder("sk-...your-key-here..."), looks_like_placeholder("Zk9q2LmX8vR1")
(True, False)
>>> looks_like_placeholder("Somewhere42!"), looks_like_placeholder("AKIAIOSFODNN7EXAMPLE")
(False, True)
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
from collections import Counter

# ISO 13616 lengths; a candidate of the wrong length for its country is not an IBAN.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

# Issuer prefixes of the card networks (Visa, Mastercard incl. 2-series, Amex, Discover,
# Diners, JCB, UnionPay, Maestro, Mir). A Luhn-valid number outside them is most often
# a tracking or order number, which pass Luhn one time in ten by chance.
_CARD_PREFIX = re.compile(r"4|5[0-8]|2[2-7]|3[0-9]|6[0-9]|220[0-4]|2131|1800", re.ASCII)

# Placeholders are recognised by their SHAPE, never by a word that can sit inside a real
# password ("Somewhere42!" holds "here"): template brackets and variable references,
# elided values ("sk-...", "***"), filler runs, ALL_CAPS_NAMES, and values made only of
# letters whose words say "fill me in" (your-api-key-here).
_TEMPLATE_MARKERS = re.compile(r"<[^<>]*>|\{\{|\}\}|\$\{|\.\.\.|\u2026|\*\*\*|\[[A-Za-z _-]+\]")
_PLACEHOLDER_ONLY_WORDS = frozenset(
    ["your", "my", "here", "example", "placeholder", "changeme", "redacted", "dummy", "sample", "insert", "replace", "todo", "fake", "xxx", "xxxx", "enter", "put", "paste", "fill", "goes", "value"]
)
# A "fill me in" value is made of these words only (your-api-key-here, enter_your_token):
# a random token that happens to contain "My" is made of other "words" (TkaxoIvVPVElMy).
_PLACEHOLDER_VOCABULARY = _PLACEHOLDER_ONLY_WORDS | frozenset(
    ["api", "key", "keys", "token", "tokens", "secret", "secrets", "password", "pass", "passwd", "pwd", "access", "client", "id", "app", "application", "aws", "github", "gitlab", "openai", "stripe", "slack", "sk", "pk", "live", "test", "the", "a", "an", "of", "for", "to", "own", "real", "actual", "new", "auth", "bearer", "private", "public", "account", "user", "name", "service", "me"]
)
_CAPS_NAME = re.compile(r"[A-Z][A-Z_]*_[A-Z_]+", re.ASCII)  # YOUR_API_KEY
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+")
_DOC_KEY = re.compile(r"EXAMPLE(?:KEY)?$")  # vendors' documentation keys (AKIA...EXAMPLE)
_VARIABLE = re.compile(r"\$\{.*|\$[A-Za-z_][A-Za-z0-9_]*|%[A-Za-z_][A-Za-z0-9_]*%", re.DOTALL)
# Filler runs mark a template ("AKIA0000000000000000", "ghp_aaaaaaaaaaaa"), but a random
# 13-digit segment holds six equal digits about once in five thousand tokens (the
# pipeline canary test found real-format Slack tokens passing as placeholders), so a
# run only counts when it is long: 8 of a filler character, 12 of anything else.
_FILLER_RUN = re.compile(r"([0xX*#._-])\1{7}|(.)\2{11}", re.DOTALL)
_HEX = re.compile(r"[0-9a-fA-F]+", re.ASCII)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def digits_of(value: str) -> str:
    """The decimal digits of ``value`` in order (separators dropped)."""
    return "".join(ch for ch in value if "0" <= ch <= "9")


def luhn_valid(number: str) -> bool:
    """Luhn (mod 10) check over the digits of ``number`` (ISO/IEC 7812-1)."""
    digits = digits_of(number)
    if not digits:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_valid(value: str, min_digits: int = 13) -> bool:
    """13-19 digits, a known network prefix, Luhn-valid, and not one repeated digit.

    Maestro also issues 12-digit numbers; callers pass ``min_digits=12`` when a card
    word stands right before the number.
    """
    digits = digits_of(value)
    if not min_digits <= len(digits) <= 19 or len(set(digits)) < 2:
        return False
    return bool(_CARD_PREFIX.match(digits)) and luhn_valid(digits)


def iban_valid(value: str) -> bool:
    """ISO 13616 IBAN: known country length and ISO 7064 mod-97 remainder of 1."""
    iban = "".join(value.split()).upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    if not iban.isascii() or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def ssn_valid(value: str) -> bool:
    """US SSN structure rules: area not 000/666/9xx, group not 00, serial not 0000."""
    d = digits_of(value)
    if len(d) != 9 or len(set(d)) == 1 or d == "123456789":
        return False
    return d[:3] not in ("000", "666") and d[0] != "9" and d[3:5] != "00" and d[5:] != "0000"


def nanp_valid(value: str) -> bool:
    """North American number: area code and exchange both start with 2-9."""
    d = digits_of(value)
    if len(d) == 11 and d[0] == "1":
        d = d[1:]
    return len(d) == 10 and d[0] >= "2" and d[3] >= "2"


def ipv4_valid(value: str) -> bool:
    """Four dotted octets 0-255 without leading zeros (``01.02.03.04`` is a version)."""
    parts = value.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part.isdigit() or int(part) > 255 or (len(part) > 1 and part[0] == "0"):
            return False
    return value != "0.0.0.0"


def ipv6_valid(value: str) -> bool:
    """A parseable IPv6 address with at least 3 groups, or ``::`` and a hex digit group."""
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    groups = [g for g in value.split(":") if g]
    return len(groups) >= 3 or ("::" in value and len(groups) >= 2)


def shannon_entropy(value: str) -> float:
    """Shannon entropy of the character distribution, bits per character."""
    if not value:
        return 0.0
    n = len(value)
    return abs(-sum(c / n * math.log2(c / n) for c in Counter(value).values()))


def is_template_value(value: str) -> bool:
    """A value that only stands in for a secret: a template, a variable, a mask, filler.

    Used on values under sensitive keys, where documentation keys still count as real.

    >>> [is_template_value(v) for v in ("<your-key>", "YOUR_API_KEY", "your-api-key-here", "xxxxxxxx")]
    [True, True, True, True]
    >>> [is_template_value(v) for v in ("Somewhere42!", "Tr0ub4dor&3x!", "hereford-9Kx")]
    [False, False, False]
    >>> is_template_value("sk_live_TkaxoIvVPVElMyUdElALxItP")  # holds "My", is not a template
    False
    """
    stripped = value.strip()
    if not stripped:
        return True
    if _TEMPLATE_MARKERS.search(stripped) or _VARIABLE.fullmatch(stripped):
        return True
    if stripped.startswith(("os.environ", "process.env", "env.", "ENV[", "getenv(")):
        return True
    if _FILLER_RUN.search(stripped) or len(set(ch for ch in stripped.lower() if ch.isalnum())) <= 2:
        return True
    if _CAPS_NAME.fullmatch(stripped):
        return True
    words = [w.lower() for w in _WORD_SPLIT.split(stripped) if w]
    return bool(words) and all(w in _PLACEHOLDER_VOCABULARY for w in words) and any(
        w in _PLACEHOLDER_ONLY_WORDS for w in words)


def looks_like_placeholder(value: str) -> bool:
    """Template text, masks, variable references and vendors' documentation keys."""
    return is_template_value(value) or bool(_DOC_KEY.search(value))


def is_uuid(value: str) -> bool:
    """RFC 4122 textual form (request and trace ids, not credentials)."""
    return bool(_UUID.fullmatch(value))


def token_is_random(value: str, min_len: int = 16) -> bool:
    """Heuristic for a machine-generated secret: long, high entropy, not a placeholder.

    Hex strings carry at most 4 bits/char, so they get a lower entropy bar; words and
    identifiers (all letters, snake_case names) fail the mixed-class test.
    """
    if len(value) < min_len or looks_like_placeholder(value):
        return False
    entropy = shannon_entropy(value)
    if _HEX.fullmatch(value):
        return len(value) >= 32 and entropy >= 3.0
    classes = sum((any(c.islower() for c in value), any(c.isupper() for c in value),
                   any(c.isdigit() for c in value)))
    if classes < 2 or not any(c.isdigit() for c in value):
        # Letters only: random mixed case flips case at about every other character,
        # CamelCase identifiers once a word; that tells them apart when the character
        # entropy of a short random draw happens to be low (found by the canary test).
        flips = sum(a.isupper() != b.isupper() for a, b in zip(value, value[1:], strict=False))
        return classes >= 2 and len(value) >= 20 and (
            entropy >= 4.0 or (entropy >= 3.4 and flips >= 0.3 * len(value)))
    return entropy >= 3.2


def password_like(value: str) -> bool:
    """A typed password: 6+ chars, not a placeholder, with a digit or a symbol."""
    if len(value) < 6 or looks_like_placeholder(value):
        return False
    has_digit = any(c.isdigit() for c in value)
    has_symbol = any(not c.isalnum() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    return (has_digit or has_symbol) and (has_alpha or len(value) >= 8)


def jwt_valid(value: str) -> bool:
    """The header segment decodes to a JSON object naming ``alg`` or ``typ``."""
    header = value.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        obj = json.loads(decoded)
    except (binascii.Error, ValueError):
        return False
    return isinstance(obj, dict) and ("alg" in obj or "typ" in obj)


def basic_auth_valid(value: str) -> bool:
    """``Authorization: Basic`` payload that decodes to ``user:password``."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, ValueError):
        return False
    user, sep, password = decoded.partition(":")
    return bool(sep) and bool(password) and not looks_like_placeholder(password)
