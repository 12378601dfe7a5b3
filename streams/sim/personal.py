"""Personal data and secrets the simulator puts into traffic, generated rather than listed.

Why generated: a fixed list of a few values would let a detector (or a test) match on the
values themselves; a seeded generator gives every user their own email or phone, and every
leak its own card or SSN, in the formats the redactor recognises (emails, North American
phones in the fictional 555-01xx range, Luhn-valid card numbers in the 4xxx test range, SSNs
with the structure the redactor checks, provider-prefixed tokens). Nothing here is real.

>>> import random
>>> rng = random.Random(1)
>>> "@" in person_email(rng) and "555" in person_phone(rng)
True
>>> digits = card_number(rng).replace(" ", "")
>>> len(digits) == 16 and _luhn_complete(digits[:-1]) == digits
True
"""

from __future__ import annotations

import random
import string

# What a model says when it declines (counted as refusals by the scalar refusal signal).
REFUSALS = ("I'm sorry, but I can't help with that request.",
            "I can't assist with that. If you need help with your account, please contact support.",
            "Sorry, I'm not able to provide that information.")
FIRST_NAMES = ("maria", "james", "wei", "priya", "lucas", "amara", "olga", "diego", "hannah", "kenji",
               "fatima", "tom", "sofia", "noah", "aisha", "liam", "yara", "ethan", "ines", "omar")
LAST_NAMES = ("garcia", "smith", "chen", "patel", "martin", "okafor", "ivanova", "lopez", "schmidt",
              "tanaka", "haddad", "brown", "rossi", "kim", "khan", "walsh", "silva", "nguyen", "dubois")
MAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "fastmail.com")


def person_email(rng: random.Random) -> str:
    """A personal address as people have them (name, separator, sometimes digits)."""
    sep = rng.choice((".", "_", ""))
    digits = str(rng.randint(1, 99)) if rng.random() < 0.4 else ""
    return f"{rng.choice(FIRST_NAMES)}{sep}{rng.choice(LAST_NAMES)}{digits}@{rng.choice(MAIL_DOMAINS)}"


def person_phone(rng: random.Random) -> str:
    """A North American number in the 555-01xx fictional range, as people type it."""
    area = rng.choice((212, 312, 415, 617, 646, 206, 512, 303))
    line = f"01{rng.randint(0, 99):02d}"
    return rng.choice((f"+1 {area} 555 {line}", f"({area}) 555-{line}", f"{area}-555-{line}"))


def _luhn_complete(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


def card_number(rng: random.Random) -> str:
    """A Luhn-valid 16-digit number starting with 4, grouped as printed on a card."""
    body = _luhn_complete("4" + "".join(rng.choice(string.digits) for _ in range(14)))
    return " ".join(body[i:i + 4] for i in range(0, 16, 4))


def ssn(rng: random.Random) -> str:
    """A US social security number in the ``AAA-GG-SSSS`` shape (area 100-665)."""
    return f"{rng.randint(100, 665):03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"


def _token(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def secret_value(rng: random.Random) -> str:
    """A credential a user might paste (or a model might repeat from its context): an AWS
    access key id, a GitHub token, an OpenAI project key or a Slack bot token."""
    alnum = string.ascii_letters + string.digits
    kind = rng.randrange(4)
    if kind == 0:
        return "AKIA" + _token(rng, string.ascii_uppercase + "234567", 16)
    if kind == 1:
        return "ghp_" + _token(rng, alnum, 36)
    if kind == 2:
        return "sk-proj-" + _token(rng, alnum, 48)
    return "xoxb-" + _token(rng, string.digits, 12) + "-" + _token(rng, string.digits, 13) + "-" + _token(rng, alnum, 24)
