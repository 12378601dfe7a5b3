"""The ACL bindings of Warden's three principals (streams/kafka_acls.py), checked against the
project's own topic list with Kafka's matching rules (literal or prefixed name, READ/WRITE
imply DESCRIBE); the real broker: tests/test_security_acls_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
from typer.testing import CliRunner

from streams.app import consumer_group
from streams.config import WardenSettings
from streams.kafka_acls import (
    AclSetupError,
    Grant,
    Principals,
    apply_acls,
    warden_acls,
    warden_grants,
)
from streams.topics import topic_specs

WHO = Principals(serving="svc", worker="wrk", operator="ops")


def settings(**overrides: Any) -> WardenSettings:
    values: dict[str, Any] = {"topic_prefix": "acme", "app_id": "warden-acme", "otlp_topics": ["otlp_spans"]}
    return WardenSettings(**{**values, **overrides})


def allowed(grants: list[Grant], user: str, resource: str, name: str, op: str) -> bool:
    implied = {"DESCRIBE": {"READ", "WRITE", "DESCRIBE"}}.get(op, {op})
    return any(g.principal == user and g.resource == resource and g.operation in implied
               and (g.name == name if g.pattern == "literal" else name.startswith(g.name)) for g in grants)


def test_serving_writes_raw_traces_and_operators_overrides_and_nothing_else() -> None:
    s = settings()
    grants = warden_grants(s, WHO)
    topics = [s.topic(spec.name) for spec in topic_specs(s)]
    assert "acme.overrides.v1" in topics
    assert [t for t in topics if allowed(grants, "svc", "topic", t, "WRITE")] == ["acme.traces.raw.v1"]
    assert [t for t in topics if allowed(grants, "ops", "topic", t, "WRITE")] == ["acme.overrides.v1"]
    for user in ("svc", "ops"):
        assert [t for t in topics if allowed(grants, user, "topic", t, "READ")] == ["acme.breaker.v1"]
        assert not any(allowed(grants, user, "topic", t, op) for t in topics for op in ("CREATE", "ALTER", "DELETE"))
    # Other deployments' topics (another prefix) are nobody's here.
    assert not any(allowed(grants, u, "topic", "other.findings.v1", "READ") for u in ("svc", "wrk", "ops"))


def test_the_worker_may_run_every_role_on_every_topic_and_group_it_uses() -> None:
    s = settings()
    grants = warden_grants(s, WHO)
    faust_topics = [f"{s.app_id}-{table}-changelog" for table in ("scope-state", "breaker-state", "drift-state",
                                                                   "economics-state")]
    for topic in [s.topic(spec.name) for spec in topic_specs(s)] + faust_topics + ["otlp_spans"]:
        for op in ("READ", "DESCRIBE", "CREATE"):
            assert allowed(grants, "wrk", "topic", topic, op), (topic, op)
    for topic in [s.topic(spec.name) for spec in topic_specs(s)] + faust_topics:
        assert allowed(grants, "wrk", "topic", topic, "WRITE"), topic
    assert not allowed(grants, "wrk", "topic", "otlp_spans", "WRITE")  # the Collector's, not the worker's
    for role in ("all", "govern", "sink", "drift", "ingest"):
        group = consumer_group(s.model_copy(update={"role": role}))
        assert allowed(grants, "wrk", "group", group, "READ"), role
    for group in (f"{s.app_id}-alert-forwarder", "warden-ledger-123", "warden-breaker-client-9"):
        assert allowed(grants, "wrk", "group", group, "READ")
    # Narrow: no cluster grants, no transactional ids, nothing ALL, ALTER or DELETE.
    assert {g.resource for g in grants} == {"topic", "group"}
    assert not {g.operation for g in grants} & {"ALL", "ALTER", "DELETE", "ALTER_CONFIGS"}
    # Serving's breaker client may join its own groups, not the workers'.
    assert allowed(grants, "svc", "group", "warden-breaker-client-1", "READ")
    assert not allowed(grants, "svc", "group", s.app_id, "READ")


def test_bindings_are_confluent_allow_bindings_for_user_principals() -> None:
    bindings = warden_acls(settings(), WHO)
    assert len(bindings) == len(warden_grants(settings(), WHO))
    raw = [b for b in bindings if b.name == "acme.traces.raw.v1" and b.operation == AclOperation.WRITE]
    assert len(raw) == 1 and raw[0].principal == "User:svc" and raw[0].host == "*"
    assert raw[0].restype == ResourceType.TOPIC and raw[0].resource_pattern_type == ResourcePatternType.LITERAL


def test_otlp_topics_under_the_prefix_need_no_extra_grant() -> None:
    s = settings(otlp_topics=["acme.otlp_spans=otlp_json", "collector-spans"])
    names = {g.name for g in warden_grants(s, WHO) if g.resource == "topic"}
    assert "collector-spans" in names and "acme.otlp_spans" not in names


class _Future:
    def __init__(self, error: KafkaError):
        self.error = error

    def result(self, _timeout: float) -> None:
        raise KafkaException(self.error)


class _Admin:
    def __init__(self, code: int):
        self.code = code

    def create_acls(self, bindings: list[Any], request_timeout: float) -> dict[Any, _Future]:
        return {b: _Future(KafkaError(self.code)) for b in bindings}


def test_a_broker_without_authorizer_gets_an_error_that_says_what_to_do() -> None:
    s = settings()
    with pytest.raises(AclSetupError, match="no authorizer.*StandardAuthorizer.*KAFKA_ACLS=1"):
        apply_acls(s, warden_acls(s, WHO), admin=_Admin(KafkaError.SECURITY_DISABLED))
    with pytest.raises(AclSetupError, match="super user"):
        apply_acls(s, warden_acls(s, WHO), admin=_Admin(KafkaError.CLUSTER_AUTHORIZATION_FAILED))


def test_the_cli_prints_the_bindings_without_applying(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.cli import app

    monkeypatch.setenv("WARDEN_TOPIC_PREFIX", "acme")
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["kafka", "acls", "--serving", "svc", "--worker", "wrk", "--operator", "ops"])
    assert result.exit_code == 0, result.output
    assert "acme.traces.raw.v1" in result.output and "acme.overrides.v1" in result.output
    assert "created" not in result.output
