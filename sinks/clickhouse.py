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

from sinks.analyst_sql import AnalystLimits, AnalystSession, same_user

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
                 outage_file: Path | None = None, analyst_dsn: str | None = None,
                 analyst_limits: AnalystLimits | None = None, analyst_tables: frozenset[str] | None = None):
        self.dsn = dsn
        # Chaos hook for the fault suite: while this file exists the store behaves as if
        # ClickHouse were unreachable. An embedded engine cannot be taken away from its
        # own process any other way; with a server, stop the server instead.
        self.outage_file = outage_file
        self._client = open_client(dsn)
        self._lock = threading.Lock()
        # Analysts get their own session (sinks.analyst_sql): vetted SQL, readonly=1 with fixed
        # limits, on the embedded engine's second handle or, with a server, the analyst user.
        self._analyst_dsn = analyst_dsn
        self._analyst_limits = analyst_limits
        self._analyst_tables = analyst_tables
        self._analyst: AnalystSession | None = None
        self._analyst_lock = threading.Lock()
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

    def reachable(self) -> bool:
        """Does ClickHouse answer now? Tells an outage (wait and retry the batch) from a
        refused batch (the batch's fault: retrying it would fail forever)."""
        if self.outage_file is not None and self.outage_file.exists():
            return False
        try:
            with self.client() as client:
                client.command("SELECT 1")
        except Exception:
            return False
        return True

    def analyst(self) -> AnalystSession:
        """The analysts' session (opened on first use, never the writer's handle)."""
        with self._analyst_lock:
            if self._analyst is None:
                self._analyst = AnalystSession(analyst_dsn(self.dsn, self._analyst_dsn), self._analyst_limits,
                                               tables=self._analyst_tables)
            return self._analyst

    def query_readonly(self, sql: str, *, fmt: str = "JSONEachRow", tag: str | None = None) -> bytes:
        """Analyst SQL: vetted by ClickHouse's parser, run with ``readonly=1`` and fixed limits
        on its own session, never under the writer's lock (sinks.analyst_sql). Raises
        ``QueryRefused`` for a statement analysts may not run."""
        return self.analyst().run(sql, fmt, tag)

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
        if self._analyst is not None:
            self._analyst.close()


def analyst_dsn(writer_dsn: str, analyst: str | None) -> str:
    """Where analysts' SQL goes: the embedded engine's own path, or a server's analyst user.

    With a server and no analyst DSN the writer's user is used (still vetted, read-only and
    limited), with a warning: a user holding only the ``warden_analyst`` role is the safer
    setup (docs/SECURITY.md, "Query port")."""
    if writer_dsn.startswith("chdb://"):
        return writer_dsn
    if analyst is None:
        log.warning("analyst_sql_as_writer", dsn=redact_dsn(writer_dsn),
                    fix="set WARDEN_ANALYST_CLICKHOUSE_DSN to a user with only the warden_analyst role")
        return writer_dsn
    if same_user(writer_dsn, analyst):
        raise SinkError("WARDEN_ANALYST_CLICKHOUSE_DSN logs in as the writer's user: give analysts "
                        "their own read-only user (docs/SECURITY.md, Query port)")
    return analyst


def batch_token(table: str, keys: Sequence[str]) -> str:
    """Deduplication token for a batch: the same rows in the same order → the same token."""
    digest = hashlib.sha256(table.encode())
    for key in keys:
        digest.update(b"\0")
        digest.update(key.encode())
    return digest.hexdigest()
