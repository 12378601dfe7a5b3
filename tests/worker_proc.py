"""Run real ``warden worker`` processes in tests: start, wait until serving, stop or kill -9."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from streams.config import CONFIG_DIR
from tests.infra import REPO, free_port


@dataclass
class Pipeline:
    """One isolated Warden deployment: its own topic prefix, app id, data dir and DSN."""

    bootstrap: str
    dsn: str
    workdir: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    partitions: int = 4
    # Embedding drift in the workers. Off unless a test is about it: loading the sentence
    # encoder costs a worker about 20 CPU seconds (torch, transformers, the model) before
    # it encodes anything, which a suite of ~40 worker starts on two cores paid in minutes.
    # The drift tests and the redaction canary turn it on.
    embeddings: bool = False
    workers: list[WorkerProcess] = field(default_factory=list, repr=False)

    def env(self, web_port: int, role: str = "all", extra: dict[str, str] | None = None) -> dict[str, str]:
        extra = dict(extra or {})
        if not self.embeddings:
            # A test's own config directory is edited in place; the shipped one never is (it
            # is copied into the work directory first).
            given = Path(extra.get("WARDEN_CONFIG_DIR") or CONFIG_DIR)
            config_dir = self.workdir / "config-no-embeddings" if given.resolve() == CONFIG_DIR.resolve() else given
            if not config_dir.exists():
                shutil.copytree(CONFIG_DIR, config_dir)
            without_embedding_drift(config_dir)
            extra["WARDEN_CONFIG_DIR"] = str(config_dir)
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "CLICKHOUSE_DSN": self.dsn,
            "WARDEN_TOPIC_PREFIX": self.prefix,
            "WARDEN_APP_ID": f"warden-{self.prefix}",
            "WARDEN_PARTITIONS": str(self.partitions),
            "WARDEN_WEB_PORT": str(web_port),
            "WARDEN_DATA_DIR": str(self.workdir / f"worker-{web_port}"),
            "WARDEN_ROLE": role,
            # Each deployment reads its own OTLP topic, never the shared default `otlp_spans`.
            "WARDEN_OTLP_TOPICS": json.dumps([self.topic("otlp_spans")]),
            "WARDEN_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            # A killed worker's partitions move after 15 s, not the default 30: kill -9 tests
            # wait on failover, and 15 s still outlasts a busy machine's event-loop stalls.
            "WARDEN_KAFKA_SESSION_TIMEOUT_S": "15",
            "WARDEN_KAFKA_HEARTBEAT_INTERVAL_S": "1",
            "WARDEN_REDACTION_KEY": os.environ.get("WARDEN_REDACTION_KEY", "test-pseudonym-key-0123456789abcdef"),
            **extra,
        }

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def worker(self, role: str = "all", extra: dict[str, str] | None = None) -> WorkerProcess:
        port = free_port()
        worker = WorkerProcess(self.env(port, role, extra), port, self.workdir / f"worker-{port}.log")
        self.workers.append(worker)
        return worker

    def stop_all(self, timeout: float = 15.0) -> None:
        """Stop every worker this deployment started (the fixture's finalizer: every path):
        SIGTERM to all at once, then kill -9 whichever has not exited within ``timeout``."""
        running = [w for w in self.workers if w.alive]
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        for worker in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
            worker.kill()  # a no-op for one that exited; forgets it either way


def without_embedding_drift(config_dir: Path) -> None:
    """Turn embedding drift off in ``config_dir``'s detectors.yaml (in place; the scalar,
    cost and ownership detectors stay as they are)."""
    path = config_dir / "detectors.yaml"
    config = yaml.safe_load(path.read_text())
    embedding = config.setdefault("drift", {}).setdefault("embedding", {})
    if embedding.get("enabled", True):
        embedding["enabled"] = False
        path.write_text(yaml.safe_dump(config, sort_keys=False))


# Every worker process started and not yet seen to exit: tests/conftest.py fails a test that
# leaves one running, and kills it.
LIVE_WORKERS: set[WorkerProcess] = set()


class WorkerProcess:
    """A ``warden`` process serving ``/healthz`` on ``web_port``: ``warden worker`` unless
    ``command`` names another (``("otlp", "serve", "--port", port)``)."""

    def __init__(self, env: dict[str, str], web_port: int, log_path: Path,
                 command: tuple[str, ...] = ("worker",)):
        self.env = env
        self.web_port = web_port
        self.log_path = log_path
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, stall_s: float = 120.0) -> WorkerProcess:
        """Start and wait until it serves. It fails when the process stops making progress
        (no CPU time used for ``stall_s``: a busy machine makes a start slow, not wrong). A
        worker that does not come up is killed before the error is raised."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", *self.command], cwd=REPO,
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        LIVE_WORKERS.add(self)
        try:
            cpu, since = -1.0, time.monotonic()
            while time.monotonic() - since < stall_s:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    self.get("/healthz")
                    return self
                except OSError:
                    time.sleep(0.5)
                if self.cpu_seconds() > cpu:
                    cpu, since = self.cpu_seconds(), time.monotonic()
            raise TimeoutError(f"worker not serving and idle for {stall_s}s:\n{self.log_tail()}")
        except BaseException:
            self.kill()
            raise

    def cpu_seconds(self) -> float:
        """CPU time the process has used (user + system), 0 once it has gone."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split() if self.proc else []
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0
        except (OSError, IndexError, ValueError):
            return 0.0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=timeout) as resp:
            return bytes(resp.read())

    def sql(self, query: str) -> list[dict[str, object]]:
        body = self.get("/sql?" + urllib.parse.urlencode({"q": query}), timeout=60)
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def scalar(self, query: str) -> object:
        rows = self.sql(query)
        return next(iter(rows[0].values())) if rows else None

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            LIVE_WORKERS.discard(self)
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            LIVE_WORKERS.discard(self)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no flush, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        LIVE_WORKERS.discard(self)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

