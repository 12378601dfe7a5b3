"""Planted PII and secrets ("canaries") for redaction tests, including the pipeline canary test.

Every value is random but valid for its type (Luhn-valid cards, mod-97-valid IBANs,
SSA-valid SSNs, provider key formats), generated from a seed so a failure replays.

Usage::

    canaries = Canaries(seed=7)
    trace, planted = canaries.plant_trace(trace_dict)   # values in every scanned field
    ...                                               # send through the pipeline
    assert_no_canary(anything_serialisable, planted)  # ClickHouse rows, topic payloads, logs
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Iterable
from typing import Any

_ALNUM = string.ascii_letters + string.digits
_B32 = string.ascii_uppercase + "234567"


def luhn_complete(prefix_and_body: str) -> str:
    """Append the Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(prefix_and_body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return prefix_and_body + str((10 - total % 10) % 10)


def iban_complete(country: str, bban: str) -> str:
    """A valid IBAN for ``country`` and ``bban`` (ISO 13616 check digits)."""
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


class Canaries:
    """Deterministic generator of planted values, one method per entity."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def _tok(self, n: int, alphabet: str = _ALNUM) -> str:
        while True:
            value = "".join(self.rng.choice(alphabet) for _ in range(n))
            low = value.lower()
            # keep clear of words the placeholder filter rejects (ex-"here", "your", ...)
            if not any(w in low for w in ("here", "your", "xxxx", "test", "fake", "todo", "example", "dummy")):
                return value

    def _digits(self, n: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    def email(self) -> str:
        return f"canary.{self._tok(8).lower()}@mail-{self._tok(6).lower()}.com"

    def phone(self) -> str:
        area, exch = self.rng.randint(201, 989), self.rng.randint(201, 989)
        return f"+1-{area}-{exch}-{self._digits(4)}"

    def card(self) -> str:
        return luhn_complete("4" + self._digits(14))

    def ssn(self) -> str:
        return f"{self.rng.randint(1, 665):03d}-{self.rng.randint(1, 99):02d}-{self.rng.randint(1, 9999):04d}"

    def iban(self) -> str:
        return iban_complete("GB", self._tok(4, string.ascii_uppercase) + self._digits(14))

    def ipv4(self) -> str:
        return ".".join(str(self.rng.randint(11, 250)) for _ in range(4))

    def aws_key_id(self) -> str:
        return "AKIA" + self._tok(16, _B32)

    def github_token(self) -> str:
        return "ghp_" + self._tok(36)

    def slack_token(self) -> str:
        return f"xoxb-{self._digits(12)}-{self._digits(13)}-{self._tok(24)}"

    def stripe_key(self) -> str:
        return "sk_live_" + self._tok(24)

    def openai_key(self) -> str:
        return "sk-proj-" + self._tok(40) + "T3BlbkFJ" + self._tok(20)

    def jwt(self) -> str:
        def seg(obj: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

        return f"{seg({'alg': 'HS256', 'typ': 'JWT'})}.{seg({'sub': self._digits(9)})}.{self._tok(43)}"

    def password(self) -> str:
        return self._tok(6) + self.rng.choice("#%!*") + self._tok(6) + self._digits(2)

    def private_key(self) -> str:
        body = "\n".join(self._tok(64, _ALNUM + "+/") for _ in range(4))
        return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"

    def generic_secret(self) -> str:
        return self._tok(32)

    def values(self) -> dict[str, str]:
        """One fresh value per entity (the keys are Warden entity names)."""
        return {
            "EMAIL_ADDRESS": self.email(), "PHONE_NUMBER": self.phone(), "CREDIT_CARD": self.card(),
            "US_SSN": self.ssn(), "IBAN_CODE": self.iban(), "IP_ADDRESS": self.ipv4(),
            "AWS_ACCESS_KEY_ID": self.aws_key_id(), "GITHUB_TOKEN": self.github_token(),
            "SLACK_TOKEN": self.slack_token(), "STRIPE_KEY": self.stripe_key(),
            "OPENAI_API_KEY": self.openai_key(), "JWT": self.jwt(), "PASSWORD": self.password(),
            "PRIVATE_KEY": self.private_key(), "GENERIC_SECRET": self.generic_secret(),
        }

    def sentence(self, entity: str, value: str) -> str:
        """``value`` in a natural carrier sentence that gives it the context it needs."""
        carriers = {
            "PASSWORD": "connect with postgres://svc:{v}@db.internal.example:5432/app",
            "GENERIC_SECRET": "client_secret={v}",
            "PRIVATE_KEY": "key file:\n{v}\n",
        }
        return carriers.get(entity, "please use {v} for this").format(v=value)

    def plant_text(self) -> tuple[str, list[str]]:
        """A message holding every entity once; returns (text, planted values)."""
        values = self.values()
        return " \n ".join(self.sentence(e, v) for e, v in values.items()), list(values.values())

    def plant_trace(self, trace: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """A copy of a trace mapping with canaries in messages, tool calls, error and metadata."""
        out = json.loads(json.dumps(trace))
        planted: list[str] = []

        def text() -> str:
            body, values = self.plant_text()
            planted.extend(values)
            return body

        out["input_messages"] = [*out.get("input_messages", []), {"role": "user", "content": text()}]
        out["output_messages"] = [*out.get("output_messages", []), {"role": "assistant", "content": text()}]
        email, card = self.email(), self.card()
        planted += [email, card]
        nested = {"query": text(), "filters": [{"owner": email}], "card_number": int(card)}
        out["tool_calls"] = [
            *out.get("tool_calls", []),
            {"name": "lookup", "arguments": nested, "result": json.dumps({"rows": [text()]}), "status": "ok"},
            {"name": "search", "arguments": json.dumps({"q": text()}), "result": text(), "status": "ok"},
        ]
        out["error_message"] = text()
        out["metadata"] = {**out.get("metadata", {}), "customer_email": (e := self.email()), "note": text()}
        planted.append(e)
        plants, look_for = bypass_variants(self)
        planted += look_for
        for where, value in plants:
            if where == "tool_arguments":
                out["tool_calls"].append({"name": "connect", "arguments": value, "status": "ok"})
            else:
                out["input_messages"].append({"role": "user", "content": value})
        return out, planted


_FULL_WIDTH = {ord(d): chr(0xFF10 + int(d)) for d in string.digits}
_IMAGE = "data:image/png;base64," + base64.b64encode(bytes(range(256))).decode()


def bypass_variants(c: Canaries) -> tuple[list[tuple[str, Any]], list[str]]:
    """Issue 17's bypasses, one of each, as (field, value) plants and the strings to look for.

    JSON-keyed values of no recognisable format, Unicode disguises, percent and base64
    encodings, PII right after an inline image, backslash-escaped JSON in text and hostile
    nesting. The planted strings are what appears in the trace (the encoded or disguised
    form); the plain values are planted beside them where they can survive decoding.
    """
    keyed_password = c._tok(5).lower() + "&" + c._tok(5) + c._digits(2)  # no format at all
    keyed_secret = c._tok(12).lower() + "-" + c._tok(6).lower()
    ssn_digits = c.ssn().replace("-", "")
    card = c.card()
    wide_card = " ".join(card[i:i + 4] for i in range(0, 16, 4)).translate(_FULL_WIDTH)
    zw_card = "\u200b".join(card[i:i + 4] for i in range(0, 16, 4))
    email = c.email()
    encoded_email = email.replace("@", "%40")
    secret_blob = base64.b64encode(f"aws_secret_access_key={c._tok(40)}".encode()).decode()
    after_image_card = c.card()
    escaped_password = c.password()
    deep_card = c.card()
    plants: list[tuple[str, Any]] = [
        ("tool_arguments", {"db": {"password": keyed_password, "api_key": keyed_secret}, "ssn": ssn_digits}),
        ("content", f"pay with {wide_card} or {zw_card}"),
        ("content", f"login?user={encoded_email}&next=%2Fhome cfg {secret_blob}"),
        ("content", f"{_IMAGE} card {after_image_card}"),
        ("content", 'use {\\"password\\": \\"' + escaped_password + '\\"} for it'),
        ("content", "[" * 2000 + f" card {deep_card}"),
    ]
    look_for = [keyed_password, keyed_secret, ssn_digits, wide_card, zw_card,
                encoded_email, secret_blob, after_image_card, escaped_password, deep_card]
    return plants, look_for


def assert_no_canary(blob: Any, planted: Iterable[str]) -> None:
    """Fail naming the entity-free position if any planted value survives in ``blob``."""
    text = blob if isinstance(blob, str) else json.dumps(blob, ensure_ascii=False, default=str)
    unescaped = text.replace("\\n", "\n")
    leaked = [v for v in planted if v in text or v in unescaped]
    assert not leaked, f"{len(leaked)} planted value(s) leaked (first at offset {text.find(leaked[0][:12])})"
