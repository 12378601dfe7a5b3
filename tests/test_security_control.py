"""Issue 16, item 2: control records are accepted only when a trusted key signed them.

Findings and breaker signals need a worker key, overrides an operator key; an operator's
identity is the name of the key that signed, not the name the record claims. Rejections say
why (a stable reason) and are counted. End to end: tests/test_security_control_e2e.py.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from streams.breaker_client import BreakerClient, worker_verifier
from streams.config import WardenSettings
from streams.guard.control import admit_finding, admit_signal, control_keys
from streams.guard.signing import (
    RecordSigner,
    RecordVerifier,
    Unauthenticated,
    parse_public_keys,
    parse_seed,
)
from streams.metrics import METRICS
from streams.records import BreakerSignal, BreakerState

WORKER_SEED, ALICE_SEED, MALLORY_SEED = "a1" * 32, "b2" * 32, "c3" * 32
WORKER = RecordSigner("warden", bytes.fromhex(WORKER_SEED))
ALICE = RecordSigner("alice", bytes.fromhex(ALICE_SEED))
MALLORY = RecordSigner("warden", bytes.fromhex(MALLORY_SEED))  # claims the worker's key name


def _settings(**extra: str) -> WardenSettings:
    return WardenSettings(worker_public_keys=f"warden={WORKER.public_key.hex()}",
                          operator_public_keys=f"alice={ALICE.public_key.hex()}", **extra)


def _finding(kind: str = "error_rate", **evidence: object) -> dict[str, object]:
    return {"finding_id": "f1", "kind": kind, "subject": {"route": "chat"}, "score": 1.0, "threshold": 0.5,
            "at": time.time(), "severity": "warning", "evidence": dict(evidence), "detector": "govern"}


def _override(operator: str = "alice") -> dict[str, object]:
    return _finding("breaker.override", target="route=chat", state="open", reason="maintenance", operator=operator)


def _reason(record: object, **settings: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        admit_finding(record, control_keys(_settings(**settings)))
    return caught.value.reason


def test_a_worker_signed_finding_is_admitted_and_forgeries_say_why() -> None:
    keys = control_keys(_settings())
    admitted = admit_finding(WORKER.sign(_finding()), keys)
    assert admitted["kind"] == "error_rate" and "auth" not in admitted
    assert _reason(_finding()) == "unsigned"
    assert _reason(MALLORY.sign(_finding())) == "bad_signature"
    assert _reason(RecordSigner("eve", bytes(32)).sign(_finding())) == "unknown_key"
    assert _reason({**WORKER.sign(_finding()), "score": 99.0}) == "bad_signature"  # altered after signing
    assert _reason({**_finding(), "auth": "nope"}) == "malformed"
    assert _reason(["not", "a", "finding"]) == "malformed"


def test_an_override_names_the_key_that_signed_it_not_the_claimed_operator() -> None:
    keys = control_keys(_settings())
    admitted = admit_finding(ALICE.sign(_override(operator="bob")), keys)
    assert admitted["evidence"]["operator"] == "alice"
    assert admitted["evidence"]["claimed_operator"] == "bob"
    assert _reason(_override()) == "unsigned"
    # A worker key may sign findings, never an operator's command (and the reverse).
    assert _reason(WORKER.sign(_override())) == "unknown_key"
    assert _reason(ALICE.sign(_finding())) == "unknown_key"


def test_without_trusted_keys_records_pass_but_operators_are_marked_unauthenticated() -> None:
    keys = control_keys(WardenSettings())
    assert not keys.required
    assert admit_finding(_override(operator="alice"), keys)["evidence"]["operator"] == "unauthenticated:alice"
    assert admit_signal({"target": "x"}, keys) is None


def test_signatures_survive_the_topic_encoding() -> None:
    """Signed as the JSON a reader parses: datetimes become strings before signing."""
    signal = BreakerSignal(signal_id="s1", target="route=chat", state=BreakerState.open, reason="errors",
                           at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))
    signed = WORKER.sign(signal.model_dump())
    wire = json.loads(json.dumps(signed))
    assert admit_signal(wire, control_keys(_settings())) == "warden"


def test_a_worker_trusts_its_own_key_and_keys_load_from_files(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "seed").write_text(WORKER_SEED + "\n")
    (folder / "operators").write_text(f"alice={ALICE.public_key.hex()}\nbob={MALLORY.public_key.hex()}\n")
    keys = control_keys(WardenSettings(signal_key=str(folder / "seed"), operator_public_keys=str(folder / "operators")))
    assert keys.signer is not None and keys.signer.public_key == WORKER.public_key
    assert keys.workers.names == ["warden"] and keys.operators.names == ["alice", "bob"]
    assert keys.required
    assert control_keys(WardenSettings(signal_key=WORKER_SEED), worker=False).workers.names == []


def test_bad_key_settings_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="openssl rand -hex 32"):
        parse_seed("not-hex")
    with pytest.raises(ValueError, match="name=<64 hex digits>"):
        parse_public_keys("alice", "WARDEN_OPERATOR_PUBLIC_KEYS")
    with pytest.raises(ValueError, match="another key"):
        control_keys(WardenSettings(signal_key=MALLORY_SEED, worker_public_keys=f"warden={WORKER.public_key.hex()}"))


def _signal(target: str, state: BreakerState, at: float) -> dict[str, object]:
    return BreakerSignal(signal_id=f"{target}@{at}", target=target, state=state, reason="r",
                         at=datetime.fromtimestamp(at, UTC)).model_dump(mode="json")


def _message(record: dict[str, object]) -> bytes:
    return json.dumps(record).encode()


def test_breaker_client_applies_signed_signals_and_counts_forged_ones() -> None:
    verifier = worker_verifier(_settings())
    assert isinstance(verifier, RecordVerifier)
    client = BreakerClient("127.0.0.1:1", "t.breaker.v1", verifier=verifier)
    before = METRICS.control_rejected.labels("breaker_client", "unsigned")._value.get()
    target, now = "route=chat", time.time()
    client._apply(target.encode(), _message(_signal(target, BreakerState.open, now)))  # unsigned
    client._apply(target.encode(), _message(MALLORY.sign(_signal(target, BreakerState.open, now))))
    assert client.allow(target) and client.state(target) is None
    assert client.rejected == {"unsigned": 1, "bad_signature": 1}
    assert "bad_signature" in client.last_rejection
    assert METRICS.control_rejected.labels("breaker_client", "unsigned")._value.get() == before + 1

    client._apply(target.encode(), _message(WORKER.sign(_signal(target, BreakerState.open, now))))
    assert not client.allow(target)
    # A genuine record replayed under another target's key, or an older one, moves nothing.
    client._apply(b"route=other", _message(WORKER.sign(_signal(target, BreakerState.closed, now + 1))))
    client._apply(target.encode(), _message(WORKER.sign(_signal(target, BreakerState.closed, now - 60))))
    client._apply(target.encode(), None)  # an unsigned tombstone
    assert not client.allow(target)
    assert client.rejected["wrong_key"] == 1 and client.rejected["stale"] == 1 and client.rejected["unsigned"] == 2

    trusting = BreakerClient("127.0.0.1:1", "t.breaker.v1")  # no keys configured: compatibility
    trusting._apply(target.encode(), _message(_signal(target, BreakerState.open, now)))
    assert not trusting.allow(target) and not trusting.rejected


def test_a_record_whose_handling_raises_is_skipped_and_the_client_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # Seen in CI: the rejection's log line hit a closed stream, the exception killed the
    # follower thread, and serving saw no breaker change after it.
    import streams.breaker_client as module

    client = BreakerClient("127.0.0.1:1", "t.breaker.v1", verifier=worker_verifier(_settings()))
    target, now = "route=chat", time.time()

    def broken_log(*args: object, **kwargs: object) -> None:
        raise ValueError("I/O operation on closed file.")

    monkeypatch.setattr(module.log, "warning", broken_log)
    client._apply_guarded(target.encode(), _message(_signal(target, BreakerState.open, now)))  # unsigned
    assert client.rejected == {"unsigned": 1} and client.apply_errors == 1
    client._apply_guarded(target.encode(), _message(WORKER.sign(_signal(target, BreakerState.open, now))))
    assert not client.allow(target)


def test_logs_go_to_the_current_stderr_even_after_the_configured_one_closed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    import structlog

    from streams.logs import configure_logging

    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging("INFO")
    logger = structlog.get_logger("t")
    logger.warning("one")
    first.close()  # a test runner's capture ends, a daemon closes its stderr
    second = io.StringIO()
    monkeypatch.setattr("sys.stderr", second)
    logger.warning("two")
    assert '"event": "two"' in second.getvalue()
