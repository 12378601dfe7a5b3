"""Where the tests' Kafka and ClickHouse come from; one module chooses.

1. ``KAFKA_BOOTSTRAP`` / ``CLICKHOUSE_DSN`` set: use those, start nothing.
2. A Docker engine answers: testcontainers starts Kafka and ClickHouse.
3. Otherwise: the project's own broker (deploy/kafka/kafka.sh) on a test port, and the
   embedded chDB engine in a temporary directory per test.
"""

from __future__ import annotations

import os
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
TEST_KAFKA_PORT = int(os.environ.get("WARDEN_TEST_KAFKA_PORT", "19092"))


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


class LocalKafka:
    """The project's KRaft broker on a test port with its own data directory."""

    def __init__(self, port: int = TEST_KAFKA_PORT, extra_env: dict[str, str] | None = None):
        self.port = port
        self.data = REPO / "var" / f"kafka-test-{port}"
        self.env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DATA": str(self.data), **(extra_env or {})}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, verb: str) -> None:
        subprocess.run(["bash", str(KAFKA_SCRIPT), verb], env=self.env, check=True, timeout=300)

    def start(self, fresh: bool = True) -> LocalKafka:
        if fresh:
            self._script("wipe")
        self._script("up")
        return self

    def stop(self) -> None:
        self._script("down")

    def restart(self) -> None:
        self.stop()
        self._script("up")


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
    broker = LocalKafka().start()
    try:
        yield broker.bootstrap, broker
    finally:
        broker.stop()


def clickhouse_dsn(tmp: Path) -> str:
    if os.environ.get("CLICKHOUSE_DSN"):
        return os.environ["CLICKHOUSE_DSN"]
    return f"chdb://{tmp / 'clickhouse'}"
