"""Migrations apply once, re-apply as a no-op, refuse edited files; retention is idempotent."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sinks.clickhouse import ClickHouseStore
from sinks.migrations_runner import (
    MIGRATIONS_DIR,
    SERVER_VERSION_OFFSET,
    MigrationError,
    apply_migrations,
    apply_schema,
    discover_all,
)
from sinks.retention import (
    DATA_CLASSES,
    RetentionError,
    RetentionSettings,
    apply_retention,
    current_ttls,
)
from streams.cli import app
from tests.test_schema_support import fresh_store

SCHEMA_SNAPSHOT = ("SELECT name, create_table_query FROM system.tables "
                   "WHERE database = currentDatabase() ORDER BY name")


def test_migrations_apply_twice_without_change(tmp_path: Path) -> None:
    with fresh_store(tmp_path) as store:
        schema = store.query_rows(SCHEMA_SNAPSHOT)
        ledger = store.query_rows("SELECT version, name, checksum, cluster FROM schema_migrations FINAL ORDER BY version")
        assert store.migrate() == []
        assert apply_schema(store).applied == []
        assert store.query_rows(SCHEMA_SNAPSHOT) == schema
        assert store.query_rows(
            "SELECT version, name, checksum, cluster FROM schema_migrations ORDER BY version") == ledger
    expected = [m.version for m in discover_all(server=False)]
    assert [row[0] for row in ledger] == expected
    names = {row[0] for row in schema}
    assert {"traces", "tool_calls", "owners", "traces_per_minute", "findings_per_minute",
            "traces_per_minute_v", "findings_per_minute_v", "analyst_traces", "owners_current"} <= names


def test_server_only_migrations_are_skipped_on_the_embedded_engine(tmp_path: Path) -> None:
    assert any(m.version > SERVER_VERSION_OFFSET for m in discover_all(server=True))
    with fresh_store(tmp_path) as store:
        versions = [int(v) for (v,) in store.query_rows("SELECT version FROM schema_migrations")]
        assert max(versions) < SERVER_VERSION_OFFSET
        # chDB has no access management: the server file would fail, which is why it is separate.
        with store.client() as client, pytest.raises(Exception, match="ACCESS_DENIED|access|Access"):
            client.command("CREATE ROLE IF NOT EXISTS warden_analyst")


def test_editing_an_applied_migration_is_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    store = ClickHouseStore(f"chdb://{tmp_path}/ch")
    try:
        with store.client() as client:
            assert apply_migrations(client, directory)
            target = directory / "003_rollups.sql"
            target.write_text(target.read_text() + "\n-- edited\n")
            with pytest.raises(MigrationError, match="003_rollups changed after it was applied"):
                apply_migrations(client, directory)
    finally:
        store.close()


def test_a_single_node_schema_refuses_pending_cluster_migrations(tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    store = ClickHouseStore(f"chdb://{tmp_path}/ch")
    try:
        with store.client() as client:
            apply_migrations(client, directory)
            (directory / "099_later.sql").write_text("CREATE VIEW IF NOT EXISTS later AS SELECT 1")
            # ledger says single node, the call says cluster: refused before any DDL runs
            client.command("ALTER TABLE schema_migrations UPDATE cluster = 'c1' WHERE 1 SETTINGS mutations_sync = 1")
            with pytest.raises(MigrationError, match="--cluster c1"):
                apply_migrations(client, directory, server=False)
            assert not client.query("EXISTS TABLE later").result_rows[0][0]
            with pytest.raises(MigrationError, match="needs a ClickHouse server"):
                apply_migrations(client, directory, cluster="c1")
    finally:
        store.close()


def test_default_retention_matches_the_migrations_and_changes_idempotently(tmp_path: Path) -> None:
    with fresh_store(tmp_path) as store, store.client() as client:
        assert apply_retention(client, RetentionSettings()) == []  # migrations already set defaults
        longer = RetentionSettings().with_overrides(["traces_days=90", "audit_years=7"])
        ran = apply_retention(client, longer)
        assert {re.search(r"ALTER TABLE (\w+)", s).group(1) for s in ran} == {  # type: ignore[union-attr]
            "traces", "tool_calls", "breaker_events", "change_events", "audit_log"} & set(current_ttls(
                client, [dc.table for dc in DATA_CLASSES]))
        assert apply_retention(client, longer) == []
        ttls = current_ttls(client, ["traces", "tool_calls", "change_events", "findings"])
        assert ttls["traces"] == ttls["tool_calls"] == "toDateTime(timestamp) + toIntervalDay(90)"
        assert ttls["change_events"] == "toDateTime(at) + toIntervalYear(7)"
        assert ttls["findings"] == "toDateTime(at) + toIntervalDay(365)"


def test_retention_skips_tables_that_do_not_exist(tmp_path: Path) -> None:
    store = ClickHouseStore(f"chdb://{tmp_path}/ch")
    try:
        with store.client() as client:
            client.command("CREATE TABLE traces (timestamp DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY timestamp")
            assert apply_retention(client, RetentionSettings()) == [
                "ALTER TABLE traces MODIFY TTL toDateTime(timestamp) + INTERVAL 30 DAY"]
    finally:
        store.close()


def test_retention_settings_errors_name_the_field_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(RetentionError, match="traces_day.*traces_days"):
        RetentionSettings().with_overrides(["traces_day=3"])
    with pytest.raises(RetentionError, match="CLASS=N"):
        RetentionSettings().with_overrides(["traces_days"])
    with pytest.raises(RetentionError, match="audit_years"):
        RetentionSettings().with_overrides(["audit_years=0"])
    path = tmp_path / "retention.yaml"
    path.write_text("version: '2025-01'\nretention:\n  traces_days: 14\n")
    loaded = RetentionSettings.from_yaml(path)
    assert (loaded.traces_days, loaded.version, loaded.findings_days) == (14, "2025-01", 365)


def test_cli_schema_apply_with_retention_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_DSN", f"chdb://{tmp_path}/ch")
    retention = tmp_path / "retention.yaml"
    retention.write_text("retention:\n  dead_letters_days: 7\n")
    runner = CliRunner()
    first = runner.invoke(app, ["schema", "apply", "--retention", str(retention), "--ttl", "findings_days=400"])
    assert first.exit_code == 0, first.output
    assert "003_rollups" in first.output and "dead_letters MODIFY TTL" in first.output
    assert "findings MODIFY TTL" in first.output
    again = runner.invoke(app, ["schema", "apply", "--retention", str(retention), "--ttl", "findings_days=400"])
    assert again.exit_code == 0, again.output
    assert "schema is current" in again.output and "retention:" not in again.output
    bad = runner.invoke(app, ["schema", "apply", "--ttl", "traces_days=x"])
    assert bad.exit_code == 2
