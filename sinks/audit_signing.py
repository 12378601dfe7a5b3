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
    """A hex seed (or a file holding it) from configuration → 32 bytes; the error names the
    variable and the fix."""
    from pathlib import Path

    value = text.strip()
    if value and len(value) != 64 and Path(value).is_file():  # a mounted secret
        value = Path(value).read_text().strip()
    try:
        seed = bytes.fromhex(value)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ValueError(
            "WARDEN_AUDIT_SIGNING_KEY must be 64 hex digits (a 32-byte Ed25519 seed) or a file holding them; "
            "make one with: openssl rand -hex 32")
    return seed


def parse_public_key(text: str) -> bytes:
    """A raw Ed25519 public key from configuration: 64 hex digits, or the path of a file
    holding them (or a PEM ``PUBLIC KEY``); the error names the variable and the fix.

    >>> parse_public_key(CheckpointSigner(bytes(32)).public_key.hex()) == CheckpointSigner(bytes(32)).public_key
    True
    """
    from pathlib import Path

    value = text.strip()
    if value and len(value) != 64 and Path(value).is_file():
        value = Path(value).read_text().strip()
    if value.startswith("-----BEGIN PUBLIC KEY-----"):
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        loaded = load_pem_public_key(value.encode())
        if isinstance(loaded, Ed25519PublicKey):
            return loaded.public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(
            "WARDEN_AUDIT_PUBLIC_KEY must be 64 hex digits (a raw Ed25519 public key), or a file holding "
            "them or a PEM public key; print it on the worker with: warden audit public-key")
    return raw


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
