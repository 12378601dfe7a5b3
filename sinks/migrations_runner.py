"""Versioned schema migrations: ``NNN_name.sql`` files applied in order, once each.

Applied versions are recorded in ``schema_migrations`` with a checksum; a migration
file edited after it was applied is an error (write a new migration instead).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

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

    def statements(self) -> list[str]:
        body = "\n".join(line for line in self.sql.splitlines() if not line.strip().startswith("--"))
        return [stmt.strip() for stmt in body.split(";") if stmt.strip()]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("[0-9][0-9][0-9]_*.sql")):
        version = int(path.name[:3])
        found.append(Migration(version, path.stem[4:], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {directory}: {versions}")
    return found


def apply_migrations(client: Client, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is missing; returns the names applied now (empty when up to date)."""
    client.command(LEDGER_DDL)
    applied = {
        int(v): c for v, c in client.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows
    }
    done = []
    for migration in discover(directory):
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:03d}_{migration.name} changed after it was applied; "
                    "add a new migration file instead of editing an applied one"
                )
            continue
        for statement in migration.statements():
            client.command(statement)
        client.insert("schema_migrations", [[migration.version, migration.name, migration.checksum]],
                      column_names=["version", "name", "checksum"])
        done.append(f"{migration.version:03d}_{migration.name}")
    return done
