"""Who may do what on Warden's Kafka topics: the ACLs of its three principals.

Computed from the project's own topic list (:func:`streams.topics.topic_specs`), the topic
prefix and the app id, so the grants cannot drift from the topics the code uses:

- **serving** (the inference service: ``TracePublisher``, ``BreakerClient``): write
  ``traces.raw``; read ``breaker`` (its consumers' groups start ``warden-breaker-client-``).
  Nothing else: not findings, breaker signals, overrides or alerts.
- **worker** (``warden worker``, every role): read, write and create every topic under the
  topic prefix, the OTLP topics it ingests, and the topics Faust keeps under the app id
  (state changelogs, the assignor's leader topic); its consumer groups are the app id and
  groups starting ``<app id>-`` (``-sink``, ``-drift``, ``-ingest``, ``-alert-forwarder``),
  plus the change ledger's ``warden-ledger-`` readers and its own breaker clients. Faust runs
  at least once, so no transactional ids; its idempotent producers need ``WRITE`` on a topic
  only (KIP-679), so no cluster-wide ``IDEMPOTENT_WRITE``.
- **operator** (``warden breaker open|close|release|list``): write ``overrides`` (the worker
  relays those commands to ``findings``, where decide checks the operator's signature), read
  ``breaker``. Nothing else.

Applied with the Admin API as a super user (``warden kafka acls --apply``); the broker needs
an authorizer (``KAFKA_ACLS=1 deploy/kafka/kafka.sh up``, or ``authorizer.class.name`` in
production, docs/SECURITY.md "Kafka ACLs"). Re-applying is harmless: Kafka stores a binding once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from streams.config import WardenSettings
from streams.topics import topic_specs

SERVING_WRITES = "traces.raw.v1"
OPERATOR_WRITES = "overrides.v1"
BREAKER_TOPIC = "breaker.v1"
BREAKER_CLIENT_GROUPS = "warden-breaker-client-"  # streams/breaker_client.py
LEDGER_GROUPS = "warden-ledger-"  # streams/ledger.py
# What the worker does on its topics: Faust and ensure_topics create them, agents read and
# write them, and the admin client reads their configs. Not ALTER or DELETE.
WORKER_TOPIC_OPS = (AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE,
                    AclOperation.DESCRIBE_CONFIGS)


class AclSetupError(RuntimeError):
    """The broker refused to store the bindings; the message says what to change."""


@dataclass(frozen=True)
class Principals:
    serving: str = "warden-serving"
    worker: str = "warden-worker"
    operator: str = "warden-operator"


@dataclass(frozen=True)
class Grant:
    """One ALLOW binding, in plain values (printable, comparable, testable)."""

    principal: str  # the user name, without "User:"
    resource: str  # "topic" | "group"
    pattern: str  # "literal" | "prefixed"
    name: str
    operation: str  # AclOperation name, e.g. "WRITE"

    def binding(self) -> AclBinding:
        return AclBinding(ResourceType[self.resource.upper()], self.name, ResourcePatternType[self.pattern.upper()],
                          f"User:{self.principal}", "*", AclOperation[self.operation],
                          AclPermissionType.ALLOW)


def _grants(user: str, resource: str, name: str, operations: Iterable[AclOperation],
            pattern: str = "literal") -> list[Grant]:
    return [Grant(user, resource, pattern, name, op.name) for op in operations]


def warden_grants(settings: WardenSettings, who: Principals) -> list[Grant]:
    """Every grant for one deployment (its topic prefix, app id and OTLP topics)."""
    known = {spec.name for spec in topic_specs(settings)}
    for short in (SERVING_WRITES, OPERATOR_WRITES, BREAKER_TOPIC):
        if short not in known:  # a renamed topic must be renamed here too
            raise ValueError(f"{short} is not in streams.topics.topic_specs: update streams/kafka_acls.py")
    write, read, describe = AclOperation.WRITE, AclOperation.READ, AclOperation.DESCRIBE
    raw, breaker, overrides = (settings.topic(n) for n in (SERVING_WRITES, BREAKER_TOPIC, OPERATOR_WRITES))
    grants = [
        *_grants(who.serving, "topic", raw, (write, describe)),
        *_grants(who.serving, "topic", breaker, (read, describe)),
        *_grants(who.serving, "group", BREAKER_CLIENT_GROUPS, (read,), "prefixed"),
        *_grants(who.operator, "topic", overrides, (write, describe)),
        *_grants(who.operator, "topic", breaker, (read, describe)),
        *_grants(who.operator, "group", BREAKER_CLIENT_GROUPS, (read,), "prefixed"),
        # Every topic of the deployment: topic_specs' names all live under this prefix.
        *_grants(who.worker, "topic", f"{settings.topic_prefix}.", WORKER_TOPIC_OPS, "prefixed"),
        # Faust's own topics: <app id>-<table>-changelog, <app id>-__assignor-__leader.
        *_grants(who.worker, "topic", f"{settings.app_id}-", WORKER_TOPIC_OPS, "prefixed"),
    ]
    for otlp in settings.otlp_topics:  # the ingest agent's sources, named as configured
        name = otlp.split("=", 1)[0].strip()
        if name and not name.startswith(f"{settings.topic_prefix}."):
            grants += _grants(who.worker, "topic", name, (read, describe, AclOperation.CREATE))
    group_ops = (read, describe)
    grants += _grants(who.worker, "group", settings.app_id, group_ops)
    for prefix in (f"{settings.app_id}-", LEDGER_GROUPS, BREAKER_CLIENT_GROUPS):
        grants += _grants(who.worker, "group", prefix, group_ops, "prefixed")
    return grants


def warden_acls(settings: WardenSettings, who: Principals) -> list[AclBinding]:
    return [grant.binding() for grant in warden_grants(settings, who)]


def explain(exc: KafkaException | KafkaError) -> str:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    code = error.code() if isinstance(error, KafkaError) else None
    if code == KafkaError.SECURITY_DISABLED:
        return ("the broker has no authorizer, so it cannot store ACLs: set authorizer.class.name="
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer, super.users and "
                "allow.everyone.if.no.acl.found=false on every broker and controller (locally: "
                "KAFKA_ACLS=1 deploy/kafka/kafka.sh up), then run this again")
    if code == KafkaError.CLUSTER_AUTHORIZATION_FAILED:
        return ("this login may not create ACLs: run it as a super user (WARDEN_KAFKA_SASL_USERNAME / "
                "WARDEN_KAFKA_SASL_PASSWORD of a name in the broker's super.users)")
    return f"the broker refused the ACLs: {error}"


def apply_acls(settings: WardenSettings, bindings: list[AclBinding], timeout_s: float = 30.0,
               admin: Any = None) -> int:
    """Create the bindings, logged in as ``settings.security`` (a super user); raises
    :class:`AclSetupError` with what to do when the broker refuses."""
    admin = admin or AdminClient({"bootstrap.servers": settings.kafka_bootstrap, **settings.security.confluent()})
    try:
        for future in admin.create_acls(bindings, request_timeout=timeout_s).values():
            future.result(timeout_s)
    except KafkaException as exc:
        raise AclSetupError(explain(exc)) from exc
    return len(bindings)


__all__ = ["AclSetupError", "Grant", "Principals", "apply_acls", "explain", "warden_acls", "warden_grants"]
