"""ClickHouse through clickhouse-connect, one code path for the embedded engine and a server.

The DSN picks the engine: ``chdb:///path`` opens clickhouse-connect's embedded chDB
backend (one process owns it), ``http(s)://user:pass@host:8123/db`` talks to a server.

Writes follow the sink contract in docs/ARCHITECTURE.md: the caller hands over a batch,
``insert`` returns only once it is durable (or raises), the caller commits Kafka offsets
afterwards. Retries resend the same ``insert_deduplication_token`` so a batch whose
first attempt did land is not stored twice, and every table deduplicates on the record's
own id as a second line of defence (a batch re-cut differently after a restart).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
import structlog
from clickhouse_connect.driver.client import Client

log = structlog.get_logger("warden.sink")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class SinkError(RuntimeError):
    """ClickHouse could not be reached or refused a write; the message says which and why."""


def open_client(dsn: str, settings: dict[str, Any] | None = None) -> Client:
    """Open a clickhouse-connect client for ``chdb:///path`` or ``http(s)://...``."""
    scheme = urlparse(dsn).scheme
    if scheme == "chdb":
        path = dsn[len("chdb://"):]
        if path:
            Path(path).mkdir(parents=True, exist_ok=True)
    elif scheme not in ("http", "https", "clickhouse", "clickhouses"):
        raise SinkError(
            f"unsupported ClickHouse DSN scheme {scheme!r}: use chdb:///path for the embedded "
            "engine or http(s)://user:password@host:8123/database for a server"
        )
    try:
        return clickhouse_connect.get_client(dsn=dsn, settings=settings or None)
    except Exception as exc:
        raise SinkError(f"cannot open ClickHouse at {redact_dsn(dsn)}: {exc}") from exc


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for logs and errors."""
    parsed = urlparse(dsn)
    if parsed.password:
        return dsn.replace(f":{parsed.password}@", ":***@")
    return dsn


class ClickHouseStore:
    """One client, serialised: chDB's embedded session is not safe for concurrent use, and
    a server client gains nothing from interleaving our small number of large inserts."""

    def __init__(self, dsn: str, *, retry_backoff_s: float = 0.5, max_backoff_s: float = 10.0,
                 outage_file: Path | None = None):
        self.dsn = dsn
        # Chaos hook for the fault suite: while this file exists the store behaves as if
        # ClickHouse were unreachable. An embedded engine cannot be taken away from its
        # own process any other way; with a server, stop the server instead.
        self.outage_file = outage_file
        self._client = open_client(dsn)
        self._lock = threading.Lock()
        # Analysts get their own session with ClickHouse's readonly=2 (reads and per-query
        # limits; no INSERT, no DDL). A separate session because chDB keeps SET values on
        # the session, and readonly cannot be lifted once set.
        self._readonly_client: Client | None = None
        self._readonly_lock = threading.Lock()
        self.retry_backoff_s = retry_backoff_s
        self.max_backoff_s = max_backoff_s
        self.rows_written = 0
        self.write_failures = 0

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    @contextmanager
    def client(self) -> Iterator[Client]:
        with self._lock:
            yield self._client

    def migrate(self) -> list[str]:
        from sinks.migrations_runner import apply_migrations

        with self.client() as client:
            return apply_migrations(client)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               *, dedup_token: str | None = None) -> None:
        """Insert once; raises ``SinkError`` on failure (the caller decides to retry)."""
        if not rows:
            return
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        if self.outage_file is not None and self.outage_file.exists():
            self.write_failures += 1
            raise SinkError(f"insert of {len(rows)} rows into {table} failed: ClickHouse unreachable "
                            f"(outage simulated by {self.outage_file})")
        try:
            with self.client() as client:
                client.insert(table, rows, column_names=list(columns), settings=settings)
        except Exception as exc:
            self.write_failures += 1
            raise SinkError(f"insert of {len(rows)} rows into {table} failed: {exc}") from exc
        self.rows_written += len(rows)

    def insert_until_durable(self, table: str, columns: Sequence[str],
                             rows: Sequence[Sequence[Any]], *, dedup_token: str | None = None,
                             should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Retry with capped exponential back-off until the batch is stored.

        Returns False only if ``should_stop()`` turned true first: then the batch was not
        stored, the caller must not commit its offsets, and Kafka replays it.
        """
        delay = self.retry_backoff_s
        while True:
            try:
                self.insert(table, columns, rows, dedup_token=dedup_token)
                return True
            except SinkError as exc:
                log.warning("sink_write_failed", table=table, rows=len(rows), retry_in_s=delay,
                            error=str(exc)[:300])
                if should_stop():
                    return False
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)

    def query_readonly(self, sql: str, *, fmt: str = "JSONEachRow", max_rows: int = 10_000,
                       timeout_s: int = 30) -> bytes:
        """Run analyst SQL in a session with ClickHouse's own ``readonly=2`` (not string checks)."""
        settings = {"max_result_rows": max_rows, "result_overflow_mode": "break",
                    "max_execution_time": timeout_s}
        with self._readonly_lock:
            if self._readonly_client is None:
                self._readonly_client = open_client(self.dsn, {"readonly": 2})
            # chDB runs one query at a time per engine; share the writer's lock so an
            # analyst query never interleaves with a batch insert.
            with self._lock:
                return self._readonly_client.raw_query(sql, settings=settings, fmt=fmt)

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self.client() as client:
            return [tuple(row) for row in client.query(sql, parameters=parameters).result_rows]

    def command(self, sql: str) -> Any:
        with self.client() as client:
            return client.command(sql)

    def close(self) -> None:
        # Closing a dead connection is not worth a crash at shutdown.
        with self._lock, contextlib.suppress(Exception):
            self._client.close()
            if self._readonly_client is not None:
                self._readonly_client.close()


def batch_token(table: str, keys: Sequence[str]) -> str:
    """Deduplication token for a batch: the same rows in the same order → the same token."""
    digest = hashlib.sha256(table.encode())
    for key in keys:
        digest.update(b"\0")
        digest.update(key.encode())
    return digest.hexdigest()
