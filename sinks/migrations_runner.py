"""Versioned schema migrations: ``NNN_name.sql`` files applied in order, once each.

Applied versions are recorded in ``schema_migrations`` with a checksum; a migration
file edited after it was applied is an error (write a new migration instead).

* ``migrations/NNN_*.sql`` run everywhere (embedded chDB and a server).
* ``migrations/server/NNN_*.sql`` run only against a ClickHouse server (access
  management: roles and grants; chDB has none). They are recorded as version
  ``1000 + NNN``.
* With ``cluster=NAME`` every statement is rewritten by :mod:`sinks.cluster` (Replicated
  local tables, Distributed tables over them, ``ON CLUSTER``); the ledger itself is
  replicated to every node. A schema applied in one mode refuses to be continued in the
  other, so a worker's plain ``migrate()`` cannot add single-node tables to a cluster.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clickhouse_connect.driver.client import Client

from sinks.cluster import created_tables, ledger_ddl, rewrite_statements

if TYPE_CHECKING:
    from sinks.clickhouse import ClickHouseStore

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SERVER_DIR_NAME = "server"
SERVER_VERSION_OFFSET = 1000

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""
# Ledgers created before cluster support lack the column; '' means single node.
LEDGER_CLUSTER_COLUMN = "ALTER TABLE schema_migrations{on_cluster} ADD COLUMN IF NOT EXISTS cluster String DEFAULT ''"


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        if self.version >= SERVER_VERSION_OFFSET:
            return f"{SERVER_DIR_NAME}/{self.version - SERVER_VERSION_OFFSET:03d}_{self.name}"
        return f"{self.version:03d}_{self.name}"

    def statements(self) -> list[str]:
        body = "\n".join(line for line in self.sql.splitlines() if not line.strip().startswith("--"))
        return [stmt.strip() for stmt in body.split(";") if stmt.strip()]


def discover(directory: Path = MIGRATIONS_DIR, *, offset: int = 0) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("[0-9][0-9][0-9]_*.sql")):
        version = offset + int(path.name[:3])
        found.append(Migration(version, path.stem[4:], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {directory}: {versions}")
    return found


def discover_all(directory: Path = MIGRATIONS_DIR, *, server: bool) -> list[Migration]:
    """The numbered migrations, then (on a server) the server-only ones."""
    found = discover(directory)
    if server and (directory / SERVER_DIR_NAME).is_dir():
        found += discover(directory / SERVER_DIR_NAME, offset=SERVER_VERSION_OFFSET)
    return found


def is_embedded(client: Client) -> bool:
    """True for clickhouse-connect's chDB client (no access management, no cluster)."""
    return type(client).__name__.lower().startswith("chdb")


def apply_migrations(client: Client, directory: Path = MIGRATIONS_DIR, *, cluster: str | None = None,
                     server: bool | None = None) -> list[str]:
    """Apply what is missing; returns the names applied now (empty when up to date).

    ``server=None`` decides from the client (server-only files are skipped on chDB).
    """
    server = (not is_embedded(client)) if server is None else server
    if cluster and not server:
        raise MigrationError(f"--cluster {cluster} needs a ClickHouse server DSN; the embedded engine "
                             "(chdb://) is one node")
    client.command(ledger_ddl(cluster) if cluster else LEDGER_DDL)
    client.command(LEDGER_CLUSTER_COLUMN.format(on_cluster=f" ON CLUSTER {cluster}" if cluster else ""))
    applied = {int(v): (str(c), str(k)) for v, c, k in client.query(
        "SELECT version, checksum, cluster FROM schema_migrations FINAL").result_rows}
    migrations = discover_all(directory, server=server)
    pending = []
    for migration in migrations:
        if migration.version not in applied:
            pending.append(migration)
        elif applied[migration.version][0] != migration.checksum:
            raise MigrationError(
                f"migration {migration.label} changed after it was applied; "
                "add a new migration file instead of editing an applied one")
    modes = {k for _, k in applied.values()}
    if pending and modes and modes != {cluster or ""}:
        was = ", ".join(sorted(f"--cluster {m}" if m else "single node" for m in modes))
        raise MigrationError(
            f"schema was applied as {was}; apply the pending migrations the same way "
            f"(warden schema apply{' --cluster ' + next(iter(modes)) if next(iter(modes)) else ''})")
    tables = created_tables(s for m in migrations for s in m.statements())
    database = str(client.command("SELECT currentDatabase()")) if cluster else ""
    done = []
    for migration in pending:
        statements = migration.statements()
        if cluster:
            statements = rewrite_statements(statements, cluster, database, tables)
        for statement in statements:
            client.command(statement)
        client.insert("schema_migrations", [[migration.version, migration.name, migration.checksum, cluster or ""]],
                      column_names=["version", "name", "checksum", "cluster"])
        done.append(migration.label)
    return done


@dataclass
class SchemaReport:
    applied: list[str]
    retention: list[str] = field(default_factory=list)


def apply_schema(store: ClickHouseStore, *, cluster: str | None = None, retention_file: Path | None = None,
                 ttl_overrides: list[str] | None = None, directory: Path = MIGRATIONS_DIR) -> SchemaReport:
    """What ``warden schema apply`` does: migrations (server-only files on a server,
    rewritten for ``cluster``), then retention when a file or overrides were given."""
    from sinks.retention import RetentionSettings, apply_retention

    with store.client() as client:
        report = SchemaReport(apply_migrations(client, directory, cluster=cluster, server=not store.embedded))
        if retention_file is not None or ttl_overrides:
            settings: Any = (RetentionSettings.from_yaml(retention_file) if retention_file
                             else RetentionSettings())
            settings = settings.with_overrides(ttl_overrides or [])
            report.retention = apply_retention(client, settings, cluster=cluster)
    return report
