"""SASL against a real broker with a SASL listener: the worker (Faust, its admin and ledger
clients) authenticates with SCRAM-SHA-512, the serving-side publisher and breaker client
with PLAIN, and a wrong password is refused with an error that says so."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from detectors.breaker import target_key
from streams.breaker_client import BreakerClient
from streams.config import KafkaSecurity
from streams.publisher import TracePublisher
from tests.infra import LocalKafka
from tests.pipeline_helpers import fast_config, trace_for, wait_for
from tests.worker_proc import Pipeline

PORT, SASL_PORT = 19292, 19294
PLAIN_PASSWORD = "plain-secret-5d0c2e"
SCRAM_PASSWORD = "scram-secret-91b7aa"


@pytest.fixture(scope="module")
def sasl_broker() -> LocalKafka:
    broker = LocalKafka(PORT, {"KAFKA_SASL_PORT": str(SASL_PORT), "KAFKA_SASL_PLAIN_PASSWORD": PLAIN_PASSWORD})
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    upsert = UserScramCredentialUpsertion("warden-worker", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                          SCRAM_PASSWORD.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(30)
    yield broker
    broker.stop()


def test_worker_and_serving_clients_over_sasl(sasl_broker: LocalKafka, tmp_path: Path) -> None:
    sasl = f"127.0.0.1:{SASL_PORT}"
    pipeline = Pipeline(bootstrap=sasl, dsn=f"chdb://{tmp_path / 'clickhouse'}", workdir=tmp_path)
    worker = pipeline.worker(extra={
        "WARDEN_CONFIG_DIR": str(fast_config(tmp_path)),
        "WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "WARDEN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "WARDEN_KAFKA_SASL_USERNAME": "warden-worker", "WARDEN_KAFKA_SASL_PASSWORD": SCRAM_PASSWORD,
    }).start()
    plain = KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                          sasl_username="warden", sasl_password=PLAIN_PASSWORD)  # type: ignore[arg-type]
    client = BreakerClient(sasl, pipeline.topic("breaker.v1"), security=plain).start()
    publisher = TracePublisher(sasl, pipeline.topic("traces.raw.v1"), security=plain)
    rng = random.Random(4)
    try:
        for _ in range(40):
            publisher.publish(trace_for("support-chat", "claude-3-5-haiku", error=False, rng=rng))
        for i in range(120):
            publisher.publish(trace_for("support-chat", "gpt-4o-mini", error=i % 4 != 0, rng=rng))
        publisher.flush(30)
        assert publisher.stats.delivered == 160 and publisher.stats.failed == 0
        target = target_key({"route": "support-chat", "model": "gpt-4o-mini"})
        wait_for(lambda: not client.allow(target), 120, "breaker open over SASL", worker, 0.5)
        wait_for(lambda: int(worker.sql("SELECT count() AS n FROM traces FINAL")[0]["n"]) == 160, 120,
                 "traces stored over SASL", worker, 1)
        assert worker.log_tail().count(SCRAM_PASSWORD) == 0
    finally:
        publisher.close()
        client.close()
        worker.stop()
    log = Path(worker.log_path).read_text(errors="replace")
    assert SCRAM_PASSWORD not in log and PLAIN_PASSWORD not in log


def test_a_wrong_password_is_refused_with_a_clear_error(sasl_broker: LocalKafka) -> None:
    from confluent_kafka import Producer

    wrong = KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                          sasl_username="warden-worker", sasl_password="not-the-password")  # type: ignore[arg-type]
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{SASL_PORT}", **wrong.confluent(),
                         "error_cb": lambda err: errors.append(err.str())})
    deadline = time.monotonic() + 30
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    assert errors and any("Authentication failed" in e or "SASL" in e for e in errors), errors
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": f"127.0.0.1:{SASL_PORT}", **wrong.confluent()}).list_topics(timeout=5)
