"""SASL and TLS against a real broker with SASL and TLS listeners: the worker (Faust, its
admin and ledger clients) authenticates with SCRAM-SHA-512 or talks TLS, the serving-side
publisher and breaker client use PLAIN or TLS, and a wrong password or an untrusted
certificate is refused with an error that says so."""

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
from tests.infra import LocalKafka, free_port_block
from tests.pipeline_helpers import fast_config, trace_for, wait_for
from tests.worker_proc import Pipeline

PLAIN_PASSWORD = "plain-secret-5d0c2e"
SCRAM_PASSWORD = "scram-secret-91b7aa"


@pytest.fixture(scope="module")
def sasl_broker() -> LocalKafka:
    # Shared by this module's tests and stopped below, so exempt from the per-test leak check.
    port = free_port_block(4)  # broker, controller (port + 1), SASL, TLS
    broker = LocalKafka(port, {"KAFKA_SASL_PORT": str(port + 2), "KAFKA_SASL_PLAIN_PASSWORD": PLAIN_PASSWORD,
                               "KAFKA_SSL_PORT": str(port + 3)}, session=True)
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    upsert = UserScramCredentialUpsertion("warden-worker", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                          SCRAM_PASSWORD.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(30)
    yield broker
    broker.stop()


def sasl_address(broker: LocalKafka) -> str:
    return f"127.0.0.1:{broker.port + 2}"


def tls_address(broker: LocalKafka) -> str:
    return f"127.0.0.1:{broker.port + 3}"


def _govern_and_trip(bootstrap: str, worker_security: dict[str, str], client_security: KafkaSecurity,
                     tmp_path: Path, secrets: tuple[str, ...] = ()) -> None:
    pipeline = Pipeline(bootstrap=bootstrap, dsn=f"chdb://{tmp_path / 'clickhouse'}", workdir=tmp_path)
    worker = pipeline.worker(extra={"WARDEN_CONFIG_DIR": str(fast_config(tmp_path)), **worker_security})
    client = BreakerClient(bootstrap, pipeline.topic("breaker.v1"), security=client_security)
    publisher = TracePublisher(bootstrap, pipeline.topic("traces.raw.v1"), security=client_security)
    rng = random.Random(4)
    try:
        worker.start()
        client.start()
        for _ in range(40):
            publisher.publish(trace_for("support-chat", "claude-3-5-haiku", error=False, rng=rng))
        for i in range(120):
            publisher.publish(trace_for("support-chat", "gpt-4o-mini", error=i % 4 != 0, rng=rng))
        publisher.flush(30)
        assert publisher.stats.delivered == 160 and publisher.stats.failed == 0
        target = target_key({"route": "support-chat", "model": "gpt-4o-mini"})
        wait_for(lambda: not client.allow(target), 120, "breaker open", worker, 0.5)
        wait_for(lambda: int(worker.sql("SELECT count() AS n FROM traces FINAL")[0]["n"]) == 160, 120,
                 "traces stored", worker, 1)
    finally:
        publisher.close()
        client.close()
        pipeline.stop_all()
    log = Path(worker.log_path).read_text(errors="replace")
    for secret in secrets:
        assert secret not in log


def test_worker_and_serving_clients_over_sasl(sasl_broker: LocalKafka, tmp_path: Path) -> None:
    plain = KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                          sasl_username="warden", sasl_password=PLAIN_PASSWORD)  # type: ignore[arg-type]
    _govern_and_trip(sasl_address(sasl_broker), {
        "WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "WARDEN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "WARDEN_KAFKA_SASL_USERNAME": "warden-worker", "WARDEN_KAFKA_SASL_PASSWORD": SCRAM_PASSWORD,
    }, plain, tmp_path, (SCRAM_PASSWORD, PLAIN_PASSWORD))


def test_worker_and_serving_clients_over_tls(sasl_broker: LocalKafka, tmp_path: Path) -> None:
    cafile = str(sasl_broker.data / "ca.pem")
    tls = KafkaSecurity(security_protocol="SSL", ssl_cafile=cafile)
    _govern_and_trip(tls_address(sasl_broker), {
        "WARDEN_KAFKA_SECURITY_PROTOCOL": "SSL", "WARDEN_KAFKA_SSL_CAFILE": cafile}, tls, tmp_path)


def test_an_untrusted_broker_certificate_is_refused(sasl_broker: LocalKafka) -> None:
    errors: list[str] = []
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": tls_address(sasl_broker), "security.protocol": "SSL",
                         "error_cb": lambda err: errors.append(err.str())})  # system CAs only
    deadline = time.monotonic() + 30
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    assert errors and any("certificate verify failed" in e or "SSL handshake failed" in e for e in errors), errors


def test_a_wrong_password_is_refused_with_a_clear_error(sasl_broker: LocalKafka) -> None:
    from confluent_kafka import Producer

    wrong = KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                          sasl_username="warden-worker", sasl_password="not-the-password")  # type: ignore[arg-type]
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": sasl_address(sasl_broker), **wrong.confluent(),
                         "error_cb": lambda err: errors.append(err.str())})
    deadline = time.monotonic() + 30
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    assert errors and any("Authentication failed" in e or "SASL" in e for e in errors), errors
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": sasl_address(sasl_broker), **wrong.confluent()}).list_topics(timeout=5)
