"""Run real ``warden worker`` processes in tests: start, wait until serving, stop or kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra import REPO, free_port


@dataclass
class Pipeline:
    """One isolated Warden deployment: its own topic prefix, app id, data dir and DSN."""

    bootstrap: str
    dsn: str
    workdir: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    partitions: int = 4

    def env(self, web_port: int, role: str = "all", extra: dict[str, str] | None = None) -> dict[str, str]:
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
            "WARDEN_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "WARDEN_REDACTION_KEY": os.environ.get("WARDEN_REDACTION_KEY", "test-pseudonym-key-0123456789abcdef"),
            **(extra or {}),
        }

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def worker(self, role: str = "all", extra: dict[str, str] | None = None) -> WorkerProcess:
        port = free_port()
        return WorkerProcess(self.env(port, role, extra), port, self.workdir / f"worker-{port}.log")


class WorkerProcess:
    def __init__(self, env: dict[str, str], web_port: int, log_path: Path):
        self.env = env
        self.web_port = web_port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_s: float = 120.0) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=REPO,
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.get("/healthz")
                return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"worker not serving within {wait_s}s:\n{self.log_tail()}")

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
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no flush, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

