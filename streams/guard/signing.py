"""Ed25519 signatures on control records: findings, operator overrides, breaker signals.

Any Kafka client that can write the findings or breaker topic could otherwise open a
route's breaker, or claim to be any operator. A record Warden acts on carries
``"auth": {"key": NAME, "sig": HEX}``: an Ed25519 signature over the record's canonical
JSON (sorted keys, no spaces, without ``auth``). Workers and operators hold private seeds
(``WARDEN_SIGNAL_KEY``); readers hold only public keys (``WARDEN_WORKER_PUBLIC_KEYS``,
``WARDEN_OPERATOR_PUBLIC_KEYS``), so serving, which checks breaker signals, cannot forge
them. An operator's identity is the *name of the key that signed*, never the name the
record claims.

The signer normalises the record through the same JSON encoder the topics use
(:func:`streams.state.dumps`) before signing, so the bytes a reader re-encodes from the
parsed message are the bytes that were signed (a ``datetime`` is signed as its string).

>>> signer = RecordSigner("ops-alice", bytes(range(32)))
>>> verifier = RecordVerifier({"ops-alice": signer.public_key})
>>> record = signer.sign({"kind": "breaker.override", "at": 1.5})
>>> verifier.verify(dict(record))
'ops-alice'
>>> verifier.verify({**record, "at": 2.5})
Traceback (most recent call last):
...
streams.guard.signing.Unauthenticated: bad_signature: signature by 'ops-alice' does not match the record
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

AUTH = "auth"
# Stable rejection codes (the ``reason`` label of warden_control_rejected_total).
UNSIGNED, MALFORMED, UNKNOWN_KEY, BAD_SIGNATURE = "unsigned", "malformed", "unknown_key", "bad_signature"


class Unauthenticated(ValueError):
    """A control record without a valid signature; ``reason`` is a stable code for metrics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the record without ``auth``, keys sorted, no spaces."""
    body = {k: v for k, v in record.items() if k != AUTH}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
                      default=str).encode()


def _value_or_file(text: str) -> str:
    """A setting holding a key, or the path of a file holding it (a mounted secret)."""
    value = text.strip()
    if value and "=" not in value and Path(value).is_file():
        return Path(value).read_text().strip()
    return value


def parse_seed(text: str, variable: str = "WARDEN_SIGNAL_KEY") -> bytes:
    """A 32-byte Ed25519 seed from 64 hex digits or a file holding them; the error says how
    to make one."""
    try:
        seed = bytes.fromhex(_value_or_file(text))
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ValueError(f"{variable} must be 64 hex digits (a 32-byte Ed25519 seed) or a file holding them; "
                         "make one with: openssl rand -hex 32")
    return seed


def parse_public_keys(text: str, variable: str) -> dict[str, bytes]:
    """``name=hex,name2=hex`` (or a file of such entries, one per line) → {name: 32-byte key}."""
    keys: dict[str, bytes] = {}
    for entry in filter(None, (e.strip() for e in _value_or_file(text).replace("\n", ",").split(","))):
        name, sep, hexkey = entry.partition("=")
        try:
            key = bytes.fromhex(hexkey.strip())
        except ValueError:
            key = b""
        if not sep or not name.strip() or len(key) != 32:
            raise ValueError(f"{variable} entry {entry[:40]!r}: write name=<64 hex digits>; print a seed's "
                             "public key with: warden breaker public-key")
        keys[name.strip()] = key
    return keys


def normalised(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as a reader parses it off the topic (JSON types only)."""
    from streams.state import dumps  # here: serving imports the verifier without Faust

    parsed = json.loads(dumps(dict(record)))
    assert isinstance(parsed, dict)
    return parsed


class RecordSigner:
    """Signs control records with one named Ed25519 seed."""

    def __init__(self, name: str, seed: bytes):
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
        if not name or "=" in name or "," in name:
            raise ValueError(f"a signing key name must be non-empty, without '=' or ',': {name!r}")
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The record, normalised to JSON types, with an ``auth`` field (input unchanged)."""
        body = normalised({k: v for k, v in record.items() if k != AUTH})
        return {**body, AUTH: {"key": self.name, "sig": self._key.sign(canonical(body)).hex()}}


class RecordVerifier:
    """Checks ``auth`` against the public keys it was given; returns the signer's name."""

    def __init__(self, public_keys: Mapping[str, bytes]):
        self._keys = {name: Ed25519PublicKey.from_public_bytes(key) for name, key in public_keys.items()}

    def __bool__(self) -> bool:
        return bool(self._keys)

    @property
    def names(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, record: Mapping[str, Any]) -> str:
        auth = record.get(AUTH)
        if auth is None:
            raise Unauthenticated(UNSIGNED, "record carries no signature")
        if not isinstance(auth, Mapping) or not isinstance(auth.get("key"), str) or not isinstance(auth.get("sig"), str):
            raise Unauthenticated(MALFORMED, "auth must be {key: name, sig: hex}")
        key = self._keys.get(auth["key"])
        if key is None:
            raise Unauthenticated(UNKNOWN_KEY, f"signed by {auth['key'][:64]!r}, not a trusted key for this record")
        try:
            key.verify(bytes.fromhex(auth["sig"]), canonical(record))
        except (InvalidSignature, ValueError):
            raise Unauthenticated(BAD_SIGNATURE,
                                  f"signature by {auth['key'][:64]!r} does not match the record") from None
        return str(auth["key"])
