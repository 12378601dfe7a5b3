"""Which JSON keys make their value sensitive, and as what entity.

A value under ``"password"`` is a password whatever it looks like; the free-text
detectors never see the key, so the structured walk asks this module. Keys are
normalised (lower case, ASCII letters and digits only: ``db_Password`` and
``db-password`` are ``dbpassword``) and matched exactly or by suffix. A policy extends
the lists with its ``keys:`` mapping (normalised key -> entity).

>>> key_entity("aws_secret_access_key"), key_entity("db-Password"), key_entity("max_tokens")
('AWS_SECRET_ACCESS_KEY', 'PASSWORD', None)
>>> key_entity("customer_dob"), key_entity("x-api-key"), key_entity("route")
('DATE_OF_BIRTH', 'GENERIC_SECRET', None)
>>> key_entity("employee_id", {"employeeid": "EMPLOYEE_ID"})
'EMPLOYEE_ID'

JSON quoted inside free text (a prompt that pastes a config, escaped JSON once the
view has unescaped it, a decoded base64 blob) is read by :func:`quoted_pairs`:

>>> text = 'use {"client_secret": "plainwordsecret", "n": 3} now'
>>> [(entity, text[a:b]) for entity, a, b in quoted_pairs(text)]
[('GENERIC_SECRET', 'plainwordsecret')]
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NON_ALNUM = re.compile(r"[^a-z0-9]+")

# Whole normalised key -> entity.
EXACT_KEYS: dict[str, str] = {
    "ssn": "US_SSN", "socialsecuritynumber": "US_SSN", "socialsecurityno": "US_SSN",
    "dob": "DATE_OF_BIRTH", "dateofbirth": "DATE_OF_BIRTH", "birthdate": "DATE_OF_BIRTH",
    "birthday": "DATE_OF_BIRTH",
    "passport": "PASSPORT", "passportnumber": "PASSPORT", "passportno": "PASSPORT",
    "iban": "IBAN_CODE",
    "phone": "PHONE_NUMBER", "phonenumber": "PHONE_NUMBER", "mobile": "PHONE_NUMBER",
    "mobilenumber": "PHONE_NUMBER", "telephone": "PHONE_NUMBER", "tel": "PHONE_NUMBER",
    "cellphone": "PHONE_NUMBER", "fax": "PHONE_NUMBER",
    "email": "EMAIL_ADDRESS", "emailaddress": "EMAIL_ADDRESS", "mail": "EMAIL_ADDRESS",
    "creditcard": "CREDIT_CARD", "cardnumber": "CREDIT_CARD", "ccnumber": "CREDIT_CARD",
    "pan": "CREDIT_CARD", "cvv": "CREDIT_CARD", "cvc": "CREDIT_CARD",
    "driverlicense": "DRIVER_LICENSE", "driverslicense": "DRIVER_LICENSE",
    "driverlicensenumber": "DRIVER_LICENSE",
    "ip": "IP_ADDRESS", "ipaddress": "IP_ADDRESS", "clientip": "IP_ADDRESS",
    "streetaddress": "STREET_ADDRESS", "homeaddress": "STREET_ADDRESS",
    "mailingaddress": "STREET_ADDRESS", "billingaddress": "STREET_ADDRESS",
    "shippingaddress": "STREET_ADDRESS",
    "authorization": "GENERIC_SECRET", "proxyauthorization": "GENERIC_SECRET",
    "cookie": "GENERIC_SECRET", "setcookie": "GENERIC_SECRET", "sessionid": "GENERIC_SECRET",
    "pin": "PASSWORD", "otp": "PASSWORD",
    "connectionstring": "PASSWORD", "databaseurl": "PASSWORD", "dsn": "PASSWORD",
    "awssecretaccesskey": "AWS_SECRET_ACCESS_KEY", "secretaccesskey": "AWS_SECRET_ACCESS_KEY",
    "awsaccesskeyid": "AWS_ACCESS_KEY_ID",
}

# Normalised key suffix -> entity, longest first (``client_secret``, ``github_token``).
SUFFIX_KEYS: tuple[tuple[str, str], ...] = (
    ("secretaccesskey", "AWS_SECRET_ACCESS_KEY"),
    ("password", "PASSWORD"), ("passwd", "PASSWORD"), ("passphrase", "PASSWORD"),
    ("passcode", "PASSWORD"), ("pwd", "PASSWORD"),
    ("privatekey", "PRIVATE_KEY"),
    ("apikey", "GENERIC_SECRET"), ("accesskey", "GENERIC_SECRET"), ("secretkey", "GENERIC_SECRET"),
    ("signingkey", "GENERIC_SECRET"), ("encryptionkey", "GENERIC_SECRET"),
    ("masterkey", "GENERIC_SECRET"), ("clientkey", "GENERIC_SECRET"), ("licensekey", "GENERIC_SECRET"),
    ("accesstoken", "GENERIC_SECRET"), ("refreshtoken", "GENERIC_SECRET"), ("idtoken", "GENERIC_SECRET"),
    ("authtoken", "GENERIC_SECRET"), ("bearertoken", "GENERIC_SECRET"), ("token", "GENERIC_SECRET"),
    ("secret", "GENERIC_SECRET"), ("credentials", "GENERIC_SECRET"), ("credential", "GENERIC_SECRET"),
    ("ssn", "US_SSN"), ("dateofbirth", "DATE_OF_BIRTH"), ("dob", "DATE_OF_BIRTH"),
    ("birthdate", "DATE_OF_BIRTH"), ("passportnumber", "PASSPORT"), ("iban", "IBAN_CODE"),
    ("phonenumber", "PHONE_NUMBER"), ("phone", "PHONE_NUMBER"),
    ("emailaddress", "EMAIL_ADDRESS"), ("email", "EMAIL_ADDRESS"),
    ("cardnumber", "CREDIT_CARD"), ("creditcard", "CREDIT_CARD"),
    ("ipaddress", "IP_ADDRESS"),
)

# Keys that end like a credential but name a counter or a cursor, not a secret.
NOT_SENSITIVE: frozenset[str] = frozenset({
    "maxtoken", "maxtokens", "pagetoken", "nextpagetoken", "nexttoken", "continuationtoken",
    "cursortoken", "tokencount", "stoptoken", "eostoken", "bostoken", "padtoken",
    "secretname", "secretid", "secretref", "passwordpolicy", "passwordlength", "emailverified",
    "phoneverified", "apikeyname", "apikeyid", "tokentype", "tokenendpoint",
})

# Entities with a format: a value under their key that cannot be one (``"phone":
# "unknown"``, ``"email": "n/a"``) is scanned as ordinary text instead of masked whole.
_NEEDS_DIGIT = frozenset({"PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "DATE_OF_BIRTH", "PASSPORT",
                          "IBAN_CODE", "DRIVER_LICENSE", "IP_ADDRESS"})
_HAS_DIGIT = re.compile(r"[0-9]")
# "key": "value" or 'key': 'value' in text. The regex is led by the colon, a literal, so
# ``re`` skips to candidates at C speed (led by a quote class it cost ~4x more); the key
# is then read backwards from the colon. The value runs to its closing quote (escapes
# allowed), so a password holding spaces or '&' is taken whole.
_PAIR_VALUE = re.compile(r""":\s*(["'])((?:(?!\1)[^\\\n]|\\.){1,512})\1""")
_PAIR_KEY = re.compile(r"""(["'])([A-Za-z_][A-Za-z0-9_.\- ]{0,63})\1\s*\Z""")
# Cheap test before the pair regex runs (C substring scans). A key with two or more
# spaces before its colon is left to the patterns.
_PAIR_HINTS = ('":', "':", '" :', "' :")

# Values that carry no secret whatever key they sit under.
_FLAGS = frozenset({"true", "false", "null", "none", "yes", "no", "on", "off", "n/a", "na", "-"})


def normalise_key(key: str) -> str:
    """Lower case, ASCII letters and digits only."""
    return _NON_ALNUM.sub("", key.lower())


def key_entity(key: str, extra: Mapping[str, str] | None = None) -> str | None:
    """The entity a value under ``key`` is, or ``None`` when the key says nothing."""
    norm = normalise_key(key)
    if not norm or len(norm) > 64:
        return None
    if extra and norm in extra:
        return extra[norm]
    if norm in NOT_SENSITIVE:
        return None
    entity = EXACT_KEYS.get(norm)
    if entity is not None:
        return entity
    for suffix, entity in SUFFIX_KEYS:
        if norm.endswith(suffix):
            return entity
    return None


def is_plain_flag(value: str) -> bool:
    """``true``, ``null``, ``-``: a value that holds nothing under any key."""
    return value.strip().lower() in _FLAGS


def value_fits(entity: str, value: str) -> bool:
    """Whether ``value`` can be an ``entity`` at all (an e-mail has an @, a phone a digit)."""
    if entity == "EMAIL_ADDRESS":
        return "@" in value
    if entity in _NEEDS_DIGIT:
        return _HAS_DIGIT.search(value) is not None
    return True


def quoted_pairs(text: str, extra: Mapping[str, str] | None = None) -> list[tuple[str, int, int]]:
    """``(entity, start, end)`` of the quoted values under sensitive keys in ``text``."""
    if not any(hint in text for hint in _PAIR_HINTS):
        return []
    pairs: list[tuple[str, int, int]] = []
    for m in _PAIR_VALUE.finditer(text):
        colon = m.start()
        key = _PAIR_KEY.search(text, max(0, colon - 72), colon)
        if key is None:
            continue
        entity = key_entity(key.group(2), extra)
        if entity is not None:
            pairs.append((entity, *m.span(2)))
    return pairs
