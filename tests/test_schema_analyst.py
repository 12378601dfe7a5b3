"""Analysts: read-only session, no pseudonym key anywhere, views without pseudonymised
columns, and every documented query runs."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sinks.clickhouse import ClickHouseStore
from sinks.migrations_runner import MIGRATIONS_DIR, SERVER_DIR_NAME
from tests.test_schema_support import (
    fresh_store,
    governed_traces,
    insert_everything_else,
    insert_traces,
)

REPO = Path(__file__).resolve().parents[1]
PSEUDONYM = r"\\[[A-Z_]+:[0-9a-f]+\\]"  # the policy's "[{entity}:{digest}]"
ANALYST_OBJECTS = {"analyst_traces", "analyst_tool_calls", "analyst_findings", "analyst_alerts",
                   "analyst_breaker_events", "analyst_change_events", "analyst_dead_letters",
                   "traces_per_minute", "findings_per_minute", "traces_per_minute_v", "findings_per_minute_v",
                   "owners", "owners_current"}


def tables_and_columns(store: ClickHouseStore, name_filter: str = "") -> dict[str, list[str]]:
    rows = store.query_rows(
        "SELECT table, name FROM system.columns WHERE database = currentDatabase() "
        f"AND type NOT LIKE 'AggregateFunction%' {name_filter} ORDER BY table, position")
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return found


def rows_containing(store: ClickHouseStore, table: str, columns: list[str], needle_condition: str) -> int:
    checks = " OR ".join(needle_condition.format(col=f"toString(`{c}`)") for c in columns)
    return int(store.query_rows(f"SELECT countIf({checks}) FROM `{table}`")[0][0])


def test_no_table_holds_the_pseudonym_key_and_analyst_views_hold_no_pseudonyms(tmp_path: Path) -> None:
    key = f"PLANTED-KEY-{secrets.token_hex(16)}".encode()
    forms = [key.decode(), key.hex(), base64.b64encode(key).decode(), key.hex().upper()]
    with fresh_store(tmp_path) as store:
        insert_traces(store, governed_traces(300, key=key))
        insert_everything_else(store, datetime.now(UTC))
        everything = tables_and_columns(store)
        assert {"traces", "tool_calls", "findings", "alerts", "owners", "dead_letters"} <= set(everything)
        key_check = " OR ".join(f"position({{col}}, '{form}') > 0" for form in forms)
        for table, columns in everything.items():
            assert rows_containing(store, table, columns, key_check) == 0, f"key material in {table}"
        # the key was used: pseudonyms made with it are in the raw tables...
        pseudonym_check = f"match({{col}}, '{PSEUDONYM}')"
        assert rows_containing(store, "traces", everything["traces"], pseudonym_check) > 0
        assert rows_containing(store, "tool_calls", everything["tool_calls"], pseudonym_check) > 0
        # ...and none of them reaches an analyst view
        for view in sorted(ANALYST_OBJECTS & set(everything)):
            assert rows_containing(store, view, everything[view], pseudonym_check) == 0, view
            assert store.query_rows(f"SELECT count() FROM {view}")[0][0] > 0, f"{view} is empty in this test"
        assert not {"principal", "roles", "input_messages", "output_messages", "metadata", "arguments",
                    "result", "error_message", "redaction_findings", "key"} & {
                        c for view in ANALYST_OBJECTS & set(everything) for c in everything[view]}


ANALYST_CANNOT = [
    "INSERT INTO traces (trace_id, span_id) VALUES ('x', 'y')",
    "INSERT INTO owners (kind, pattern) VALUES ('route', 'x')",
    "ALTER TABLE traces DELETE WHERE 1",
    "ALTER TABLE traces MODIFY TTL toDateTime(timestamp) + INTERVAL 1 DAY",
    "CREATE TABLE stolen ENGINE = MergeTree ORDER BY tuple() AS SELECT * FROM traces",
    "DROP TABLE analyst_traces",
    "TRUNCATE TABLE findings",
    "CREATE VIEW sneaky AS SELECT 1",
    "SELECT count() FROM traces SETTINGS readonly = 0",
]


def test_the_analyst_session_cannot_write_or_change_the_schema(tmp_path: Path) -> None:
    with fresh_store(tmp_path) as store:
        insert_traces(store, governed_traces(20))
        before = store.query_rows("SELECT count() FROM traces")
        for statement in ANALYST_CANNOT:
            with pytest.raises(Exception, match="readonly|READONLY|ACCESS_DENIED|not allowed"):
                store.query_readonly(statement)
        assert b'"count()":"20"' in store.query_readonly("SELECT count() FROM analyst_traces") or \
            b'"count()":20' in store.query_readonly("SELECT count() FROM analyst_traces")
        assert store.query_rows("SELECT count() FROM traces") == before
        assert store.query_rows("EXISTS TABLE analyst_traces")[0][0] == 1


def test_server_statements_only_create_the_role_and_grant_select_on_analyst_objects() -> None:
    text = "\n".join(p.read_text() for p in sorted((MIGRATIONS_DIR / SERVER_DIR_NAME).glob("*.sql")))
    body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    statements = [s.strip() for s in body.split(";") if s.strip()]
    granted, definer = set(), set()
    for statement in statements:
        if statement == "CREATE ROLE IF NOT EXISTS warden_analyst":
            continue
        if m := re.fullmatch(r"GRANT SELECT ON (\w+) TO warden_analyst", statement):
            granted.add(m.group(1))
        elif m := re.fullmatch(r"ALTER TABLE (\w+) MODIFY SQL SECURITY DEFINER", statement):
            definer.add(m.group(1))
        else:
            raise AssertionError(f"unexpected server statement: {statement}")
    assert granted == ANALYST_OBJECTS
    # every granted view runs with its definer's rights (the role has no grant on raw tables)
    assert definer == {o for o in ANALYST_OBJECTS if o not in ("traces_per_minute", "findings_per_minute", "owners")}
