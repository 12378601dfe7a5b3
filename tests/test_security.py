"""Issue 10, security: credentials come from settings (env or files), never show in
reprs, DSNs in logs, or a running worker's logs; Kafka clients get TLS/SASL from settings."""

from __future__ import annotations

import random

import faust
import pytest

from sinks.clickhouse import redact_dsn
from streams.config import KafkaSecurity, WardenSettings
from streams.security import faust_credentials
from tests.pipeline_helpers import publisher, trace_for, wait_for
from tests.worker_proc import Pipeline

SASL_PASSWORD = "planted-sasl-password-7f3a91"
REDACTION_KEY = "planted-redaction-key-0123456789abcdef"
AUDIT_SEED = "11" * 32


def test_secrets_stay_out_of_reprs_and_dsns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.setenv("WARDEN_REDACTION_KEY", REDACTION_KEY)
    monkeypatch.setenv("CLICKHOUSE_DSN", "https://warden:dsn-secret-99@ch.example:8443/warden")
    settings = WardenSettings(pseudonym_key=REDACTION_KEY)
    text = repr(settings) + str(settings.model_dump()) + settings.model_dump_json()
    assert SASL_PASSWORD not in text and REDACTION_KEY not in text
    assert "dsn-secret-99" not in redact_dsn(settings.clickhouse_dsn)
    assert settings.security.sasl_password is not None
    assert settings.security.sasl_password.get_secret_value() == SASL_PASSWORD


def test_kafka_security_reaches_both_clients() -> None:
    scram = KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                          sasl_username="warden", sasl_password=SASL_PASSWORD)
    conf = scram.confluent()
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "warden" and conf["sasl.password"] == SASL_PASSWORD
    creds = faust_credentials(scram)
    assert isinstance(creds, faust.SASLCredentials) and creds.mechanism.value == "SCRAM-SHA-512"
    plain = faust_credentials(KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                                            sasl_username="u", sasl_password="p"))
    assert isinstance(plain, faust.SASLCredentials) and plain.mechanism.value == "PLAIN"
    assert faust_credentials(KafkaSecurity()) is None


@pytest.mark.integration
def test_a_running_worker_never_logs_its_secrets(pipeline: Pipeline) -> None:
    worker = pipeline.worker(extra={
        "WARDEN_LOG_LEVEL": "DEBUG", "WARDEN_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        "WARDEN_REDACTION_KEY": REDACTION_KEY, "WARDEN_AUDIT_SIGNING_KEY": AUDIT_SEED}).start()
    rng = random.Random(3)
    try:
        with publisher(pipeline) as pub:
            for i in range(200):
                pub.publish(trace_for("support-chat", "gpt-4o-mini", error=i % 2 == 0, rng=rng))
            pub.publish_raw(b"{broken", b"x")
        wait_for(lambda: int(worker.scalar("SELECT count() FROM traces FINAL")) >= 200, 120, "traces", worker)
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert log.strip(), "the worker logged nothing at DEBUG"
    for secret in (SASL_PASSWORD, REDACTION_KEY, AUDIT_SEED):
        assert secret not in log
