"""Issue 16, Kafka ACLs run here: a broker with StandardAuthorizer (``KAFKA_ACLS=1``,
deploy/kafka/kafka.sh) and the grants ``warden kafka acls --apply`` creates.

Serving's principal publishes raw traces and reads breaker states, and is refused
(TOPIC_AUTHORIZATION_FAILED) on findings, breaker, overrides and alerts; an operator writes
overrides and nothing else; nobody anonymous writes anything. The pipeline works under
these ACLs: a worker logged in as the worker principal creates the topics, governs a few
hundred traces into chDB, trips a breaker on an error burst, and relays an operator's
override to decide.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from typer.testing import CliRunner

from detectors.breaker import target_key
from streams.breaker_client import BreakerClient
from streams.breaking import OVERRIDE
from streams.cli import app
from streams.cli_breaker import send_control
from streams.config import KafkaSecurity, WardenSettings
from streams.publisher import TracePublisher
from streams.topics import ensure_topics, topic_specs
from tests.infra import LocalKafka, free_port_block
from tests.pipeline_helpers import fast_config, trace_for, wait_for
from tests.worker_proc import Pipeline

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-secret-31f0c6"
PASSWORDS = {"warden-serving": "serving-secret-8e21a0", "warden-worker": "worker-secret-c47d19",
             "warden-operator": "operator-secret-5a9b3e"}
REFUSED = KafkaError.TOPIC_AUTHORIZATION_FAILED


def login(user: str) -> KafkaSecurity:
    password = ADMIN_PASSWORD if user == "admin" else PASSWORDS[user]
    return KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                         sasl_username=user, sasl_password=password)  # type: ignore[arg-type]


@pytest.fixture  # one test: stopped before the per-test leak check looks
def acl_broker() -> Iterator[LocalKafka]:
    port = free_port_block(3)  # broker, controller (port + 1), SASL
    broker = LocalKafka(port, {
        "KAFKA_SASL_PORT": str(port + 2), "KAFKA_SASL_PLAIN_PASSWORD": "unused-plain-4c1e",
        "KAFKA_ACLS": "1", "KAFKA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "KAFKA_PLAIN_USERS": " ".join(f"{user}:{pw}" for user, pw in PASSWORDS.items())})
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def produce_error(bootstrap: str, security: KafkaSecurity, topic: str) -> KafkaError | None:
    """The delivery error of one record (None when it was stored)."""
    outcome: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, **security.confluent(), "message.timeout.ms": 20000})
    producer.produce(topic, key=b"k", value=b"{}", on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(30)
    assert outcome, f"no delivery report for {topic}"
    return outcome[0]


def test_serving_and_operators_write_only_their_topics_and_the_pipeline_runs(
        acl_broker: LocalKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = f"127.0.0.1:{acl_broker.port + 2}"
    pipeline = Pipeline(bootstrap=bootstrap, dsn=f"chdb://{tmp_path / 'clickhouse'}", workdir=tmp_path)
    deployment = {"KAFKA_BOOTSTRAP": bootstrap, "WARDEN_TOPIC_PREFIX": pipeline.prefix,
                  "WARDEN_APP_ID": f"warden-{pipeline.prefix}",
                  "WARDEN_OTLP_TOPICS": f'["{pipeline.topic("otlp_spans")}"]'}
    with monkeypatch.context() as env:  # `warden kafka acls --apply`, logged in as the super user
        for key, value in {**deployment, "WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                           "WARDEN_KAFKA_SASL_MECHANISM": "PLAIN", "WARDEN_KAFKA_SASL_USERNAME": "admin",
                           "WARDEN_KAFKA_SASL_PASSWORD": ADMIN_PASSWORD}.items():
            env.setenv(key, value)
        result = CliRunner().invoke(app, ["kafka", "acls", "--apply", "--serving", "warden-serving",
                                          "--worker", "warden-worker", "--operator", "warden-operator"])
        assert result.exit_code == 0 and "created" in result.output, result.output
        admin = WardenSettings()
    assert admin.security.sasl_username == "admin" and admin.topic_prefix == pipeline.prefix

    # The worker's principal creates the topics (what `warden topics` and the worker do).
    worker_settings = admin.model_copy(update={"security": login("warden-worker")})
    assert set(ensure_topics(worker_settings)) == {admin.topic(spec.name) for spec in topic_specs(admin)}

    serving, operator = login("warden-serving"), login("warden-operator")
    for security, topic in ((serving, "findings.v1"), (serving, "breaker.v1"), (serving, "overrides.v1"),
                            (serving, "alerts.v1"), (operator, "findings.v1"), (operator, "breaker.v1"),
                            (operator, "traces.raw.v1")):
        error = produce_error(bootstrap, security, pipeline.topic(topic))
        assert error is not None and error.code() == REFUSED, (security.sasl_username, topic, error)
    # Without credentials, the plaintext port grants nothing.
    anonymous = produce_error(acl_broker.bootstrap, KafkaSecurity(security_protocol="PLAINTEXT", sasl_mechanism=None,
                                                                   sasl_username=None, sasl_password=None),
                              pipeline.topic("traces.raw.v1"))
    assert anonymous is not None and anonymous.code() == REFUSED
    # `warden breaker open` as serving says Kafka refused it.
    with pytest.raises(RuntimeError, match="refused the override"):
        send_control(admin.model_copy(update={"security": serving}), OVERRIDE, "route=support-chat",
                     state="open", reason="not serving's to send", operator="svc")

    worker = pipeline.worker(extra={
        "WARDEN_CONFIG_DIR": str(fast_config(tmp_path)), "WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "WARDEN_KAFKA_SASL_MECHANISM": "PLAIN", "WARDEN_KAFKA_SASL_USERNAME": "warden-worker",
        "WARDEN_KAFKA_SASL_PASSWORD": PASSWORDS["warden-worker"]})
    publisher = TracePublisher(bootstrap, pipeline.topic("traces.raw.v1"), security=serving)
    client = BreakerClient(bootstrap, pipeline.topic("breaker.v1"), security=serving)
    rng = random.Random(16)
    try:
        worker.start()
        client.start()
        for _ in range(100):
            publisher.publish(trace_for("support-chat", "claude-3-5-haiku", error=False, rng=rng))
        for i in range(200):
            publisher.publish(trace_for("support-chat", "gpt-4o-mini", error=i % 4 != 0, rng=rng))
        publisher.flush(30)
        assert publisher.stats.delivered == 300 and publisher.stats.failed == 0
        burst = target_key({"route": "support-chat", "model": "gpt-4o-mini"})
        wait_for(lambda: not client.allow(burst), 120, "breaker open on the error burst", worker, 0.5)
        wait_for(lambda: int(worker.sql("SELECT count() AS n FROM traces FINAL")[0]["n"]) == 300, 120,
                 "traces stored", worker, 1)
        # An operator's override: written to overrides (its only topic), relayed by the worker.
        healthy = target_key({"route": "support-chat", "model": "claude-3-5-haiku"})
        assert client.allow(healthy)
        send_control(admin.model_copy(update={"security": operator}), OVERRIDE, healthy, state="open",
                     reason="provider maintenance", operator="alice")
        wait_for(lambda: not client.allow(healthy), 120, "operator's override applied", worker, 0.5)
        state = client.state(healthy)
        assert state is not None and state.operator == "unauthenticated:alice"
        # A detector finding smuggled onto the overrides topic is dead-lettered, not relayed.
        assert produce_error(bootstrap, operator, pipeline.topic("overrides.v1")) is None  # b"{}": no kind
        wait_for(lambda: int(worker.scalar("SELECT count() FROM dead_letters FINAL WHERE source_topic = "
                                           f"'{pipeline.topic('overrides.v1')}'")) == 1, 120,
                 "the non-override dead-lettered", worker, 0.5)
    finally:
        publisher.close()
        client.close()
        pipeline.stop_all()
    assert "TopicAuthorizationFailed" not in Path(worker.log_path).read_text(errors="replace")
