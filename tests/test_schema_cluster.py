"""``--cluster``: every migration rewritten to Replicated + Distributed + ON CLUSTER DDL that
ClickHouse parses, with golden checks; the runner's cluster path; the compose profile.

No cluster runs here (docs/SCALING.md says how to try one: docker compose --profile cluster).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sinks.clickhouse import ClickHouseStore
from sinks.cluster import (
    SHARDING_KEYS,
    ClusterRewriteError,
    created_tables,
    ledger_ddl,
    order_by,
    rewrite_statements,
)
from sinks.migrations_runner import SERVER_VERSION_OFFSET, Migration, apply_migrations, discover_all
from streams.cli import app

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = discover_all(server=True)
TABLES = created_tables(s for m in MIGRATIONS for s in m.statements())
ACCESS = re.compile(r"^(CREATE ROLE|GRANT|REVOKE)\b")


def rewritten(migration: Migration) -> list[str]:
    return rewrite_statements(migration.statements(), "warden", "warden", TABLES)


@pytest.fixture(scope="module")
def parser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseStore]:
    """ClickHouse's own parser (formatQuery in chDB): syntax only, no cluster needed."""
    store = ClickHouseStore(f"chdb://{tmp_path_factory.mktemp('parser')}/ch")
    yield store
    store.close()


def parses(store: ClickHouseStore, statement: str) -> str:
    return str(store.query_rows("SELECT formatQuery({q:String})", {"q": statement})[0][0])


@pytest.mark.parametrize("migration", MIGRATIONS, ids=[m.label for m in MIGRATIONS])
def test_every_migration_rewrites_to_cluster_ddl_that_parses(migration: Migration, parser: ClickHouseStore) -> None:
    statements = migration.statements()
    out = rewritten(migration)
    assert len(out) >= len(statements)
    for statement in out:
        parses(parser, statement)
        if not ACCESS.match(statement):
            assert " ON CLUSTER warden " in statement, statement[:120]
    for statement in statements:
        if m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", statement):
            local, distributed = rewrite_statements([statement], "warden", "warden", TABLES)
            table = m.group(1)
            assert local.startswith(f"CREATE TABLE IF NOT EXISTS {table}_local ON CLUSTER warden (")
            assert re.search(rf"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/{{shard}}/{{database}}/{table}', "
                             r"'\{replica\}'", local)
            assert re.fullmatch(
                rf"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER warden AS {table}_local "
                rf"ENGINE = Distributed\(warden, 'warden', '{table}_local', cityHash64\((.+)\)\)", distributed)
            # copies of a record share its dedup key (ORDER BY), hence its shard: ReplacingMergeTree still collapses them
            key_columns = re.search(r"cityHash64\((.+)\)\)$", distributed).group(1)  # type: ignore[union-attr]
            order_columns = {c.strip() for c in order_by(statement).strip("()").split(",")}
            assert {c.strip() for c in key_columns.split(",")} <= order_columns, (table, key_columns)
        if statement.startswith("CREATE MATERIALIZED VIEW"):
            (view,) = rewrite_statements([statement], "warden", "warden", TABLES)
            assert re.search(r" TO \w+_local AS ", view)
            for source in re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", view):
                assert source not in TABLES, f"a materialized view must read the local table, not {source}"


def test_golden_traces_and_agent_steps(parser: ClickHouseStore) -> None:
    by_label = {m.label: m for m in MIGRATIONS}
    core = rewritten(by_label["001_core_tables"])
    assert core[1] == ("CREATE TABLE IF NOT EXISTS traces ON CLUSTER warden AS traces_local "
                       "ENGINE = Distributed(warden, 'warden', 'traces_local', cityHash64(trace_id))")
    assert ("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/traces', '{replica}', "
            "ingested_at)") in core[0]
    assert "TTL toDateTime(timestamp) + INTERVAL 30 DAY" in core[0] and "CODEC(ZSTD(3))" in core[0]
    steps = rewritten(by_label["002_agent_steps_owners"])
    assert steps[:2] == [
        "ALTER TABLE traces_local ON CLUSTER warden ADD COLUMN IF NOT EXISTS refused UInt8 DEFAULT 0",
        "ALTER TABLE traces ON CLUSTER warden ADD COLUMN IF NOT EXISTS refused UInt8 DEFAULT 0"]
    mv = next(s for s in steps if s.startswith("CREATE MATERIALIZED VIEW"))
    assert mv.startswith("CREATE MATERIALIZED VIEW IF NOT EXISTS tool_calls_mv ON CLUSTER warden TO tool_calls_local AS")
    assert "FROM traces_local" in mv
    assert any(s.endswith("Distributed(warden, 'warden', 'tool_calls_local', cityHash64(trace_id))") for s in steps)
    rollups = rewritten(by_label["003_rollups"])
    assert any("ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/traces_per_minute', "
               "'{replica}')" in s for s in rollups)
    view = next(s for s in rollups if s.startswith("CREATE VIEW IF NOT EXISTS traces_per_minute_v"))
    assert "FROM traces_per_minute\n" in view  # finishing views read the Distributed table: all shards
    ttl = rewritten(by_label["004_retention_defaults"])
    assert ttl[0] == "ALTER TABLE findings_local ON CLUSTER warden MODIFY TTL toDateTime(at) + INTERVAL 365 DAY"
    assert len(ttl) == len(by_label["004_retention_defaults"].statements())  # TTL: local tables only
    server = rewritten(by_label["server/001_analyst_role"])
    assert "CREATE ROLE IF NOT EXISTS warden_analyst" in server  # replicated access storage: no ON CLUSTER
    assert "ALTER TABLE analyst_traces ON CLUSTER warden MODIFY SQL SECURITY DEFINER" in server
    assert "GRANT SELECT ON analyst_traces TO warden_analyst" in server
    parses(parser, ledger_ddl("warden"))
    assert set(SHARDING_KEYS) >= {"traces", "tool_calls", "findings", "alerts"}


def test_statements_without_a_cluster_form_are_refused() -> None:
    with pytest.raises(ClusterRewriteError, match="no cluster form"):
        rewrite_statements(["OPTIMIZE TABLE traces FINAL"], "warden", "warden", TABLES)
    with pytest.raises(ClusterRewriteError, match="only non-replicated"):
        rewrite_statements(["CREATE TABLE t (a UInt8) ENGINE = Memory"], "warden", "warden", TABLES)
    with pytest.raises(ClusterRewriteError, match="plain identifier"):
        rewrite_statements(["CREATE VIEW v AS SELECT 1"], "warden; DROP", "warden", TABLES)


class RecordingClient:
    """Stands in for a server client: records DDL, answers the ledger query."""

    def __init__(self, ledger: list[tuple[int, str, str]] | None = None):
        self.commands: list[str] = []
        self.inserted: list[list[Any]] = []
        self.ledger = ledger or []

    def command(self, sql: str) -> Any:
        self.commands.append(sql)
        return "warden" if sql == "SELECT currentDatabase()" else None

    def query(self, sql: str) -> Any:
        class Result:
            result_rows = self.ledger
        return Result()

    def insert(self, table: str, rows: list[list[Any]], column_names: list[str]) -> None:
        assert table == "schema_migrations" and column_names[-1] == "cluster"
        self.inserted.extend(rows)


def test_runner_applies_everything_on_cluster_and_records_the_mode() -> None:
    client = RecordingClient()
    applied = apply_migrations(client, cluster="warden")  # type: ignore[arg-type]
    assert applied == [m.label for m in MIGRATIONS]
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/schema_migrations'" in client.commands[0]
    assert client.commands[1].startswith("ALTER TABLE schema_migrations ON CLUSTER warden ADD COLUMN IF NOT EXISTS")
    ddl = [c for c in client.commands[2:] if c != "SELECT currentDatabase()"]
    assert ddl == [s for m in MIGRATIONS for s in rewritten(m)]
    assert {row[-1] for row in client.inserted} == {"warden"}
    assert any(row[0] > SERVER_VERSION_OFFSET for row in client.inserted)
    # a worker's plain migrate() against that cluster: nothing pending, nothing run
    done = RecordingClient([(row[0], row[2], row[3]) for row in client.inserted])
    assert apply_migrations(done) == []  # type: ignore[arg-type]
    assert not any("CREATE TABLE IF NOT EXISTS traces" in c for c in done.commands)


def test_compose_cluster_profile_refers_to_existing_files_and_a_real_command() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    cluster = {name: s for name, s in compose["services"].items() if "cluster" in s.get("profiles", [])}
    assert {"ch-keeper", "ch-shard1", "ch-shard2", "warden-cluster-schema"} <= set(cluster)
    for name, service in cluster.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                path = REPO / source
                assert path.is_file(), f"{name}: {source} missing"
                ET.parse(path)  # well-formed XML
        for dependency in service.get("depends_on", {}):
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"
    remote = ET.parse(REPO / "deploy/clickhouse/cluster.xml").getroot().find("remote_servers")
    assert remote is not None
    (cluster_el,) = list(remote)
    hosts = [r.findtext("host") for shard in cluster_el.findall("shard") for r in shard.findall("replica")]
    assert hosts == ["ch-shard1", "ch-shard2"] and set(hosts) <= set(cluster)
    for shard_number, host in enumerate(hosts, 1):
        mounted = [v.split(":")[0] for v in cluster[host]["volumes"] if "macros" in v]
        macros = ET.parse(REPO / mounted[0]).getroot().find("macros")
        assert macros is not None and macros.findtext("shard") == f"0{shard_number}"
        assert macros.findtext("replica") == host
    command = cluster["warden-cluster-schema"]["command"]
    assert command[:2] == ["schema", "apply"] and command[command.index("--cluster") + 1] == cluster_el.tag
    result = CliRunner().invoke(app, [*command[:2], "--help"])
    assert result.exit_code == 0 and "--cluster" in result.output
