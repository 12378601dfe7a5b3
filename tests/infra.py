"""Where the tests' Kafka and ClickHouse come from; one module chooses.

1. ``KAFKA_BOOTSTRAP`` / ``CLICKHOUSE_DSN`` set: use those, start nothing.
2. A Docker engine answers: testcontainers starts Kafka and ClickHouse.
3. Otherwise: the project's own broker (deploy/kafka/kafka.sh) on a test port, and the
   embedded chDB engine in a temporary directory per test.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO / "deploy" / "kafka" / "kafka.sh"
# Figures the fault suite reports (sent, stored, duplicated, lost, faults injected ...),
# printed at the end of the run by tests/conftest.py and written to var/fault-figures.json.
FAULT_FIGURES: dict[str, dict[str, object]] = {}
# Unset: the session's broker takes free ports, so two runs (two clones, CI beside a
# developer's own run) never meet on one broker.
TEST_KAFKA_PORT = int(os.environ["WARDEN_TEST_KAFKA_PORT"]) if os.environ.get("WARDEN_TEST_KAFKA_PORT") else None


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive loopback ports free now: a broker needs its own
    port, the controller's (port + 1) and, for the security tests, its SASL and TLS ports.
    Drawn below Linux's ephemeral range, where ``free_port()`` and clients take theirs."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20000, 32000 - count)
        if all(_port_free(base + offset) for offset in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free loopback ports between 20000 and 32000")


# The JIT's first tier only: a test broker lives minutes and carries little traffic, so the
# optimising compiler's work never pays back. Measured here (start, then ten topics of 3,000
# records produced and consumed): 8.7 -> 4.7 CPU seconds to start, 5.7 -> 2.8 for the traffic.
TEST_BROKER_JVM_OPTS = "-XX:TieredStopAtLevel=1"

# Brokers started and not stopped; the session's own broker is not checked per test.
LIVE_BROKERS: set[LocalKafka | LocalKafkaCluster] = set()


class LocalKafka:
    """The project's KRaft broker on a test port with its own data directory."""

    def __init__(self, port: int, extra_env: dict[str, str] | None = None,
                 session: bool = False):
        self.port = port
        self.session = session  # lives for the whole run: exempt from the per-test leak check
        self.data = REPO / "var" / f"kafka-test-{port}"
        self.env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DATA": str(self.data),
                    "KAFKA_EXTRA_JVM_OPTS": os.environ.get("KAFKA_EXTRA_JVM_OPTS", TEST_BROKER_JVM_OPTS),
                    **(extra_env or {})}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, verb: str) -> None:
        subprocess.run(["bash", str(KAFKA_SCRIPT), verb], env=self.env, check=True, timeout=600)

    def start(self, fresh: bool = True) -> LocalKafka:
        LIVE_BROKERS.add(self)
        try:
            if fresh:
                self._script("wipe")
            self._script("up")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._script("down")
        LIVE_BROKERS.discard(self)

    @property
    def running(self) -> bool:
        """The broker's JVM is alive (the pid kafka.sh recorded)."""
        try:
            os.kill(int((self.data / "kafka.pid").read_text()), 0)
            return True
        except (OSError, ValueError):
            return False

    def restart(self) -> None:
        self.stop()
        LIVE_BROKERS.add(self)
        self._script("up")


class LocalKafkaCluster:
    """The project's replicated KRaft cluster (kafka.sh cluster-up) on test ports: node i
    listens on ``first_port + 2(i-1)``; three nodes give topics three replicas and
    min.insync.replicas=2."""

    session = False

    def __init__(self, first_port: int, brokers: int = 3):
        from streams.kafka_cluster import cluster_bootstrap, node_ports

        self.port = first_port
        self.brokers = brokers
        self.ports = node_ports(first_port, brokers)
        self.bootstrap = cluster_bootstrap(first_port, brokers)
        self.data = REPO / "var" / f"kafka-cluster-test-{first_port}"
        self.env = {**os.environ, "KAFKA_PORT": str(first_port), "KAFKA_DATA": str(self.data),
                    "KAFKA_BROKERS": str(brokers), "KAFKA_HEAP": os.environ.get("KAFKA_HEAP", "384m"),
                    "KAFKA_EXTRA_JVM_OPTS": os.environ.get("KAFKA_EXTRA_JVM_OPTS", TEST_BROKER_JVM_OPTS)}

    def _script(self, verb: str) -> None:
        subprocess.run(["bash", str(KAFKA_SCRIPT), verb], env=self.env, check=True, timeout=600)

    def start(self) -> LocalKafkaCluster:
        """A fresh cluster, returned once every broker is registered."""
        from streams.kafka_cluster import wait_for_brokers

        LIVE_BROKERS.add(self)
        try:
            self._script("cluster-wipe")
            self._script("cluster-up")
            wait_for_brokers(self.bootstrap, self.brokers)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._script("cluster-down")
        LIVE_BROKERS.discard(self)

    def pid(self, node: int) -> int | None:
        try:
            pid = int((self.data / f"node-{node}" / "kafka.pid").read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    @property
    def running(self) -> bool:
        """Any node's JVM is alive."""
        return any(self.pid(node) is not None for node in range(1, self.brokers + 1))

    def kill(self, node: int) -> None:
        """kill -9 one node (broker and controller voter) and wait until it is gone."""
        import time

        pid = self.pid(node)
        if pid is None:
            return
        os.kill(pid, 9)
        while self.pid(node) is not None:
            time.sleep(0.05)

    def revive(self) -> None:
        """Start the nodes that are down again (on their old data), then wait until every
        broker is registered."""
        from streams.kafka_cluster import wait_for_brokers

        self._script("cluster-up")
        wait_for_brokers(self.bootstrap, self.brokers)


@contextmanager
def kafka_bootstrap() -> Iterator[tuple[str, LocalKafka | None]]:
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"], None
        return
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server(), None
        return
    broker = LocalKafka(TEST_KAFKA_PORT or free_port_block(2), session=True).start()
    try:
        yield broker.bootstrap, broker
    finally:
        broker.stop()


def clickhouse_dsn(tmp: Path) -> str:
    if os.environ.get("CLICKHOUSE_DSN"):
        return os.environ["CLICKHOUSE_DSN"]
    return f"chdb://{tmp / 'clickhouse'}"


# Processes a module-scoped fixture shares between its tests (and stops itself).
SHARED_PIDS: set[int] = set()


def leaked_processes() -> list[str]:
    """Workers and brokers started by tests and still running, each stopped as it is found.

    Also any child of this process still running a worker (``streams.cli``) that no
    ``WorkerProcess`` knows of."""
    from tests.worker_proc import LIVE_WORKERS

    found: list[str] = []
    for worker in list(LIVE_WORKERS):
        if worker.proc is not None and worker.proc.pid in SHARED_PIDS:
            continue
        if worker.alive:
            found.append(f"worker pid {worker.proc.pid if worker.proc else '?'} "
                         f"(role {worker.env.get('WARDEN_ROLE')}, log {worker.log_path})")
        worker.kill()
    for broker in list(LIVE_BROKERS):
        if broker.session:
            continue
        if broker.running:
            found.append(f"kafka broker on port {broker.port}")
        broker.stop()
    known = {w.proc.pid for w in LIVE_WORKERS if w.proc is not None}
    for pid, cmdline in _children(os.getpid()):
        if "streams.cli" in cmdline and pid not in known and pid not in SHARED_PIDS:
            found.append(f"child pid {pid}: {cmdline[:120]}")
            try:
                os.killpg(pid, 9)
            except OSError:
                os.kill(pid, 9)
    return found


def _children(parent: int) -> list[tuple[int, str]]:
    """Running (not zombie) child processes of ``parent``, with their command lines."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) != parent or state == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        out.append((int(entry.name), cmdline))
    return out
