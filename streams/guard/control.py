"""What ``decide``, the sinks and ``BreakerClient`` accept: signed control records.

Two sets of public keys, because the two kinds of writer are trusted for different things:
*worker* keys for findings and breaker signals (what workers write), *operator* keys for
``breaker.override`` / ``breaker.release`` (what ``warden breaker open|close|release``
writes). A worker key cannot sign an override and an operator key cannot fake a finding.

Built once from settings (:func:`control_keys`). A process that trusts no key at all runs in
the compatibility mode of earlier releases: records are accepted unsigned, and an
operator's claimed name is recorded as ``unauthenticated:<name>`` so nobody mistakes it for
an identity. The worker says so in its log at start (docs/SECURITY.md "Control records").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.config import WardenSettings
from streams.guard.signing import (
    AUTH,
    MALFORMED,
    UNKNOWN_KEY,
    RecordSigner,
    RecordVerifier,
    Unauthenticated,
    parse_public_keys,
    parse_seed,
)

OPERATOR_KINDS = frozenset({"breaker.override", "breaker.release"})
UNAUTHENTICATED_PREFIX = "unauthenticated:"


@dataclass(frozen=True)
class ControlKeys:
    """This process's signer (or None) and the keys it trusts, by what they may sign."""

    signer: RecordSigner | None = None
    workers: RecordVerifier = field(default_factory=lambda: RecordVerifier({}))
    operators: RecordVerifier = field(default_factory=lambda: RecordVerifier({}))

    @property
    def required(self) -> bool:
        """Signatures are required as soon as any key is trusted."""
        return bool(self.workers) or bool(self.operators)

    def sign(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.signer.sign(record) if self.signer is not None else dict(record)


def control_keys(settings: WardenSettings, *, worker: bool = True) -> ControlKeys:
    """The signer (``WARDEN_SIGNAL_KEY``, named ``WARDEN_SIGNAL_KEY_NAME``) and the trusted
    keys (``WARDEN_WORKER_PUBLIC_KEYS``, ``WARDEN_OPERATOR_PUBLIC_KEYS``). In a worker
    (``worker=True``) its own key is a worker key: it reads back what it wrote."""
    signer = None
    if settings.signal_key is not None:
        signer = RecordSigner(settings.signal_key_name, parse_seed(settings.signal_key.get_secret_value()))
    workers = parse_public_keys(settings.worker_public_keys, "WARDEN_WORKER_PUBLIC_KEYS")
    operators = parse_public_keys(settings.operator_public_keys, "WARDEN_OPERATOR_PUBLIC_KEYS")
    if worker and signer is not None:
        known = workers.get(signer.name)
        if known is not None and known != signer.public_key:
            raise ValueError(f"WARDEN_WORKER_PUBLIC_KEYS names {signer.name!r} with another key than "
                             "WARDEN_SIGNAL_KEY's: give each worker key its own name")
        workers[signer.name] = signer.public_key
    return ControlKeys(signer, RecordVerifier(workers), RecordVerifier(operators))


def _verify(verifier: RecordVerifier, record: Mapping[str, Any], who: str, variable: str) -> str:
    if not verifier:
        raise Unauthenticated(UNKNOWN_KEY, f"no {who} public keys are trusted here: set {variable}")
    return verifier.verify(record)


def admit_finding(record: Any, keys: ControlKeys) -> dict[str, Any]:
    """The finding ``decide`` may act on, without ``auth``; raises :class:`Unauthenticated`.

    An operator command must carry an operator key's signature, and its ``operator`` becomes
    that key's name (what it claimed is kept as ``claimed_operator`` when different); any
    other finding must carry a worker key's signature."""
    if not isinstance(record, Mapping):
        raise Unauthenticated(MALFORMED, f"a finding is a JSON object, got {type(record).__name__}")
    operator_kind = record.get("kind") in OPERATOR_KINDS
    signer = None
    if keys.required:
        signer = (_verify(keys.operators, record, "operator", "WARDEN_OPERATOR_PUBLIC_KEYS") if operator_kind
                  else _verify(keys.workers, record, "worker", "WARDEN_WORKER_PUBLIC_KEYS"))
    out = {k: v for k, v in record.items() if k != AUTH}
    if operator_kind:
        raw = out.get("evidence")
        evidence = dict(raw) if isinstance(raw, Mapping) else {}
        claimed = str(evidence.get("operator", ""))[:128]
        evidence["operator"] = signer if signer is not None else f"{UNAUTHENTICATED_PREFIX}{claimed}"
        if signer is not None and claimed and claimed != signer:
            evidence["claimed_operator"] = claimed
        out["evidence"] = evidence
    return out


def admit_signal(record: Any, keys: ControlKeys) -> str | None:
    """Check a breaker signal's signature (a worker key); the signer's name, or None when
    nothing is required. Raises :class:`Unauthenticated`."""
    if not keys.required:
        return None
    if not isinstance(record, Mapping):
        raise Unauthenticated(MALFORMED, f"a breaker signal is a JSON object, got {type(record).__name__}")
    return _verify(keys.workers, record, "worker", "WARDEN_WORKER_PUBLIC_KEYS")


__all__ = ["OPERATOR_KINDS", "ControlKeys", "Unauthenticated", "admit_finding", "admit_signal", "control_keys"]
