"""Shared helpers for the pipeline, sink and publisher benchmarks.

The benchmarks use their own broker (``BENCH_KAFKA_BOOTSTRAP``, default 127.0.0.1:29092),
never the development or test brokers::

    KAFKA_PORT=29092 KAFKA_DATA=$PWD/var/kafka-bench-29092 bash deploy/kafka/kafka.sh up
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BOOTSTRAP = os.environ.get("BENCH_KAFKA_BOOTSTRAP", "127.0.0.1:29092")
BENCH_KEY = "bench-pseudonym-key-0123456789abcdef"
SIZES_KB = {"2KB": 2.0, "25KB": 25.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_up(bootstrap: str = BOOTSTRAP) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return True
    except OSError:
        return False


def require_broker(bootstrap: str = BOOTSTRAP) -> None:
    if not broker_up(bootstrap):
        sys.exit(f"no Kafka broker at {bootstrap}: start the benchmark broker with\n"
                 "  KAFKA_PORT=29092 KAFKA_DATA=$PWD/var/kafka-bench-29092 bash deploy/kafka/kafka.sh up\n"
                 "or set BENCH_KAFKA_BOOTSTRAP")


def machine() -> dict[str, Any]:
    """What the figures were measured on, including the load other processes put on it."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "at": datetime.now(UTC).isoformat(timespec="seconds")}


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def trace_dicts(count: int, trace_kb: float, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Synthetic traces from the load generator (4 routes × 2 models, no incidents)."""
    from streams.loadgen import LoadPlan, make_trace

    plan = LoadPlan.build(count=count, rate=1e9, routes=4, trace_kb=trace_kb, incidents=[], seed=seed)
    rng = random.Random(seed)
    now = datetime.now(UTC)
    for i in range(count):
        yield make_trace(plan, i, rng, now)


def dumps(value: Any) -> bytes:
    """The bytes ``TracePublisher.publish`` sends for a dict."""
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def create_topic(bootstrap: str, name: str, partitions: int = 4) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        try:
            fut.result(30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Drop a run's topics so the benchmark broker does not fill its disk."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            # Already gone, or the broker is busy: not worth failing a benchmark.
            with contextlib.suppress(Exception):
                fut.result(30)


def end_offsets(bootstrap: str, topic: str) -> int:
    """Sum of the topic's high watermarks (= records in it, nothing compacted or expired)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-offsets-{time.monotonic_ns()}"})
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        total = 0
        for p in meta.partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += high
        return total
    finally:
        consumer.close()


class Process:
    """A worker subprocess with a Faust web port: start, wait until it serves, poll, stop."""

    def __init__(self, argv: list[str], env: dict[str, str], web_port: int, log_path: Path,
                 cwd: Path = ROOT):
        self.argv, self.env, self.web_port, self.log_path, self.cwd = argv, env, web_port, log_path, cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str = "/healthz", wait_s: float = 180.0) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.get(ready_path, timeout=2)
                return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"{self.argv} not serving within {wait_s}s:\n{self.log_tail()}")

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=timeout) as resp:
            return bytes(resp.read())

    def sql(self, query: str) -> list[dict[str, Any]]:
        body = self.get("/sql?" + urllib.parse.urlencode({"q": query}), timeout=120)
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


_METRIC = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def prometheus_value(text: str, name: str, labels: str = "") -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m and m["name"] == name and (m["labels"] or "") == labels:
            return float(m["value"])
    return 0.0


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (readable on stdout and pasteable into docs/BENCHMARKS.md)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])
