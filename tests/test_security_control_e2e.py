"""Issue 16, item 2, through a real broker and worker: any Kafka client can write the
findings and breaker topics, so only what a trusted key signed moves a breaker.

A forged breaker signal (unsigned, or signed by a key serving does not trust) is refused by
``BreakerClient`` with a reason; a forged override (no operator key) is refused by ``decide``,
dead-lettered as ``unauthenticated`` and never stored as a decision; the operator's signed
override is applied under the name of the key that signed it, whatever ``--operator`` says,
and its one-record audit chain is signed within the checkpoint interval.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from detectors.breaker import target_key
from streams.breaker_client import BreakerClient
from streams.cli import app
from streams.guard.signing import RecordSigner, RecordVerifier
from streams.records import BreakerSignal, BreakerState
from tests.pipeline_helpers import fast_config, wait_for
from tests.worker_proc import Pipeline

pytestmark = pytest.mark.integration

WORKER = RecordSigner("warden-test", bytes.fromhex("d4" * 32))
ALICE = RecordSigner("alice", bytes.fromhex("e5" * 32))
MALLORY_SEED = "f6" * 32


def _produce(pipeline: Pipeline, topic: str, key: str, record: dict[str, object]) -> None:
    producer = Producer({"bootstrap.servers": pipeline.bootstrap, "acks": "all"})
    producer.produce(pipeline.topic(topic), key=key.encode(), value=json.dumps(record).encode())
    assert producer.flush(30) == 0


def test_forged_signals_and_overrides_are_refused_signed_ones_applied(
        pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = pipeline.worker(extra={
        "WARDEN_CONFIG_DIR": str(fast_config(tmp_path)),
        "WARDEN_SIGNAL_KEY": "d4" * 32, "WARDEN_SIGNAL_KEY_NAME": WORKER.name,
        "WARDEN_OPERATOR_PUBLIC_KEYS": f"alice={ALICE.public_key.hex()}",
        "WARDEN_AUDIT_SIGNING_KEY": "a7" * 32, "WARDEN_AUDIT_CHECKPOINT_INTERVAL_S": "1"}).start()
    for key, value in pipeline.env(0).items():
        if key.startswith(("WARDEN_", "KAFKA_", "CLICKHOUSE_")) and key != "WARDEN_WEB_PORT":
            monkeypatch.setenv(key, value)
    cli = CliRunner()
    target = target_key({"route": "support-chat", "model": "gpt-4o-mini"})
    forged_target = target_key({"route": "checkout", "model": "gpt-4o"})
    client = BreakerClient(pipeline.bootstrap, pipeline.topic("breaker.v1"),
                           verifier=RecordVerifier({WORKER.name: WORKER.public_key})).start()
    try:
        # Serving: a breaker signal written straight to the topic, unsigned and mis-signed.
        forged = BreakerSignal(signal_id="forged", target=forged_target, state=BreakerState.open,
                               reason="forged").model_dump(mode="json")
        _produce(pipeline, "breaker.v1", forged_target, forged)
        _produce(pipeline, "breaker.v1", forged_target,
                 RecordSigner(WORKER.name, bytes.fromhex(MALLORY_SEED)).sign(forged))
        wait_for(lambda: client.rejected == {"unsigned": 1, "bad_signature": 1}, 60, "forged signals refused",
                 worker, 0.2)
        assert client.allow(forged_target) and client.state(forged_target) is None

        # decide: an override from a CLI without an operator key, claiming to be alice.
        monkeypatch.delenv("WARDEN_SIGNAL_KEY", raising=False)
        unsigned = cli.invoke(app, ["breaker", "open", target, "--reason", "forged", "--operator", "alice"])
        assert unsigned.exit_code == 0 and "unsigned" in unsigned.output, unsigned.output
        # The operator's own key; what --operator claims is not who is recorded.
        monkeypatch.setenv("WARDEN_SIGNAL_KEY", "e5" * 32)
        monkeypatch.setenv("WARDEN_SIGNAL_KEY_NAME", "alice")
        signed = cli.invoke(app, ["breaker", "open", target, "--reason", "provider maintenance",
                                  "--operator", "bob"])
        assert signed.exit_code == 0, signed.output
        # Same route, same findings partition: decide saw the forged one first.
        wait_for(lambda: not client.allow(target), 60, "the signed override applied", worker, 0.2)
        state = client.state(target)
        assert state is not None and state.operator == "alice" and "maintenance" in state.reason

        wait_for(lambda: int(worker.scalar(
            "SELECT count() FROM dead_letters FINAL WHERE error_kind = 'unauthenticated'")) >= 1, 60,
            "the forged override dead-lettered", worker)
        reason = str(worker.scalar("SELECT reason FROM dead_letters FINAL WHERE error_kind = 'unauthenticated'"))
        assert "unsigned" in reason
        metrics = worker.get("/metrics").decode()
        assert 'warden_control_rejected_total{reason="unsigned",stage="decide"}' in metrics
        wait_for(lambda: int(worker.scalar(
            f"SELECT count() FROM breaker_events FINAL WHERE target = '{target}'")) >= 1, 60,
            "the signed transition stored", worker)
        rows = worker.sql("SELECT target, operator, reason FROM breaker_events FINAL")
        assert [(r["target"], r["operator"]) for r in rows] == [(target, "alice")]  # nothing forged stored
        # Issue 16, item 6: a quiet chain's tail (one override) gets a signed checkpoint on
        # the time interval, not only every 1,000 records.
        wait_for(lambda: int(worker.scalar(
            "SELECT count() FROM audit_checkpoints WHERE partition LIKE 'breaker.v1/%' AND signature != ''")) >= 1,
            60, "the override's chain checkpointed and signed", worker)
    finally:
        client.close()
        worker.stop()
