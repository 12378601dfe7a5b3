"""The local replicated Kafka cluster (deploy/kafka/kafka.sh cluster-up): where its nodes
listen, and waiting until all of them have joined.

A node's port opens before it has registered with the controller quorum; topics with three
replicas can only be created once three brokers are registered, so ``warden kafka up
--brokers 3`` and the tests wait on the cluster's own metadata, not on the ports.
"""

from __future__ import annotations

import time

from confluent_kafka.admin import AdminClient


class ClusterNotReady(RuntimeError):
    """Fewer brokers registered than asked for, within the time given."""


def node_ports(first_port: int, brokers: int) -> list[int]:
    """Client ports of the cluster's nodes (each node's controller listens on the next port)."""
    return [first_port + 2 * i for i in range(brokers)]


def cluster_bootstrap(first_port: int, brokers: int) -> str:
    return ",".join(f"127.0.0.1:{port}" for port in node_ports(first_port, brokers))


def registered_brokers(bootstrap: str, timeout_s: float = 5.0, **config: str) -> set[int]:
    """Ids of the brokers the cluster's metadata lists now."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **config})
    return set(admin.list_topics(timeout=timeout_s).brokers)


def wait_for_brokers(bootstrap: str, count: int, timeout_s: float = 120.0, **config: str) -> set[int]:
    """Block until ``count`` brokers are registered; raises :class:`ClusterNotReady` after
    ``timeout_s`` with how many were."""
    deadline = time.monotonic() + timeout_s
    seen: set[int] = set()
    last_error = ""
    while time.monotonic() < deadline:
        try:
            seen = registered_brokers(bootstrap, timeout_s=5.0, **config)
            if len(seen) >= count:
                return seen
        except Exception as exc:  # the first node may not answer yet
            last_error = f" (last error: {type(exc).__name__}: {exc})"
        time.sleep(0.5)
    raise ClusterNotReady(f"{len(seen)} of {count} brokers registered at {bootstrap} after "
                          f"{timeout_s:.0f} s{last_error}; see each node's server.log under var/")
