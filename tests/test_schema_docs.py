"""Every ``sql`` block in docs/ANALYSTS.md runs, read-only, and returns rows on a small dataset."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from tests.test_schema_support import (
    fresh_store,
    governed_traces,
    insert_everything_else,
    insert_traces,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "ANALYSTS.md"


def documented_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)


def test_every_documented_query_runs_and_returns_rows(tmp_path: Path) -> None:
    queries = documented_queries()
    assert len(queries) >= 8
    with fresh_store(tmp_path) as store:
        insert_traces(store, governed_traces(400, minutes=90))
        insert_everything_else(store, datetime.now(UTC))
        for query in queries:
            body = store.query_readonly(query)  # the analysts' path: vetted, readonly=1 session
            rows = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            assert rows, f"no rows from documented query:\n{query}"


def test_the_documented_schema_names_every_table(tmp_path: Path) -> None:
    text = DOC.read_text()
    with fresh_store(tmp_path) as store:
        names = {row[0] for row in store.query_rows(
            "SELECT name FROM system.tables WHERE database = currentDatabase() "
            "AND engine NOT IN ('MaterializedView') AND name NOT IN ('schema_migrations', 'audit_checkpoints')")}
    missing = sorted(n for n in names if f"`{n}`" not in text and f"`{n}(_v)`" not in text
                     and f"`{n.removesuffix('_v')}(_v)`" not in text)
    assert not missing, f"docs/ANALYSTS.md does not mention {missing}"
