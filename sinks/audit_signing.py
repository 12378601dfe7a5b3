"""Ed25519 signatures over audit checkpoints (the ``cryptography`` package).

The signing key is a 32-byte seed (hex in configuration). Its key id is the first 16 hex
digits of SHA-256 over the raw public key, stored beside every signature so a verifier with
several public keys (rotation) knows which one to use.

>>> signer = CheckpointSigner(bytes(range(32)))
>>> sig = signer.sign(b"tree head")
>>> verify_signature(signer.public_key, b"tree head", sig), verify_signature(signer.public_key, b"x", sig)
(True, False)
>>> key_id(signer.public_key) == signer.key_id
True
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def parse_seed(text: str) -> bytes:
    """A hex seed from configuration → 32 bytes; the error names the variable and the fix."""
    try:
        seed = bytes.fromhex(text.strip())
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ValueError(
            "WARDEN_AUDIT_SIGNING_KEY must be 64 hex digits (a 32-byte Ed25519 seed); "
            "make one with: openssl rand -hex 32")
    return seed


class CheckpointSigner:
    """Signs checkpoint messages with an Ed25519 seed."""

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 signing seed is 32 bytes, got {len(seed)}")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(self.public_key)

    def sign(self, message: bytes) -> str:
        return self._key.sign(message).hex()


def verify_signature(public_key: bytes, message: bytes, signature_hex: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True
