"""Migrations for a ClickHouse cluster: ``warden schema apply --cluster NAME``.

The numbered migrations are written for one node. On a cluster each statement is
rewritten, not maintained twice:

* ``CREATE TABLE x (...) ENGINE = <Kind>MergeTree(args)`` becomes a replicated local table
  ``x_local ON CLUSTER NAME`` with ``Replicated<Kind>MergeTree('/clickhouse/tables/{shard}/
  {database}/x', '{replica}', args)`` plus ``x ON CLUSTER NAME AS x_local ENGINE =
  Distributed(NAME, '<database>', 'x_local', <sharding key>)``. Writers and readers keep
  using ``x``; nothing else in Warden changes.
* The sharding key is a function of the table's ORDER BY columns, so every copy of a
  record (same dedup key) lands on the same shard and ReplacingMergeTree / FINAL still
  collapse it there. Trace-like tables shard by ``cityHash64(trace_id)`` so one agent run
  lives on one shard.
* Materialized views are created on every node and read/write the *local* tables: each
  shard rolls up what it stores, and the ``-Merge`` views over the Distributed tables
  combine the shards' partial states.
* Plain views and ``ALTER``s get ``ON CLUSTER``; an ``ALTER`` that changes columns is run on
  the Distributed table too, so its structure follows.
* Access statements (``CREATE ROLE``, ``GRANT``) pass unchanged: deploy/clickhouse keeps
  users and roles in replicated access storage (Keeper), so they reach every node.

Anything else raises :class:`ClusterRewriteError`, so a future migration cannot silently
create a single-node object on a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Preferred sharding keys (must use only ORDER BY columns, see module docstring); other
# tables shard by a hash of their whole ORDER BY tuple.
SHARDING_KEYS = {
    "traces": "cityHash64(trace_id)",
    "tool_calls": "cityHash64(trace_id)",
    "findings": "cityHash64(finding_id)",
    "alerts": "cityHash64(alert_id)",
    "breaker_events": "cityHash64(target)",
    "change_events": "cityHash64(component_kind, component_id)",
    "audit_log": "cityHash64(partition)",
    "audit_checkpoints": "cityHash64(partition)",
}

_CREATE_TABLE = re.compile(r"^CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s*(\(.*)$", re.S | re.I)
_ENGINE = re.compile(r"ENGINE\s*=\s*(\w*MergeTree)\s*(?:\(([^()]*)\))?", re.I)
_ORDER_BY = re.compile(r"ORDER\s+BY\s+(\([^()]*\)|\w+)", re.I)
_MATERIALIZED = re.compile(
    r"^CREATE\s+MATERIALIZED\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s+TO\s+(\w+)\s+AS\s+(.*)$", re.S | re.I)
_VIEW = re.compile(r"^CREATE\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s+(AS\s+.*)$", re.S | re.I)
_ALTER = re.compile(r"^ALTER\s+TABLE\s+(\w+)\s+(.*)$", re.S | re.I)
_COLUMN_CHANGE = re.compile(r"^(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR)\s+COLUMN\b", re.I)
_SOURCE = re.compile(r"\b(FROM|JOIN)\s+(\w+)\b", re.I)
_CODEC = re.compile(r"\s*CODEC\((?:[^()]|\([^()]*\))*\)", re.I)
_ACCESS = re.compile(r"^(CREATE\s+(ROLE|USER|SETTINGS\s+PROFILE|ROW\s+POLICY|QUOTA)|GRANT|REVOKE)\b", re.I)


class ClusterRewriteError(ValueError):
    """A migration statement that has no cluster form; the message names it and the fix."""


def local_name(table: str) -> str:
    return f"{table}_local"


def check_identifier(kind: str, name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ClusterRewriteError(
            f"{kind} {name!r} is not a plain identifier (letters, digits, underscore); "
            "rename it in the server configuration (remote_servers) or the DSN")
    return name


def created_tables(statements: Iterable[str]) -> set[str]:
    """Names of the tables (not views) that ``CREATE TABLE`` statements create."""
    return {m.group(2) for s in statements if (m := _CREATE_TABLE.match(s.strip()))}


def order_by(statement: str) -> str:
    match = _ORDER_BY.search(statement)
    if not match:
        raise ClusterRewriteError(f"no ORDER BY in {statement[:80]!r}: a MergeTree table needs one")
    return match.group(1)


def sharding_key(table: str, statement: str) -> str:
    if table in SHARDING_KEYS:
        return SHARDING_KEYS[table]
    key = order_by(statement)
    return f"cityHash64{key}" if key.startswith("(") else f"cityHash64({key})"


def replicated_engine(table: str, engine: str, args: str | None) -> str:
    path = f"'/clickhouse/tables/{{shard}}/{{database}}/{table}'"
    extra = f", {args.strip()}" if args and args.strip() else ""
    return f"ENGINE = Replicated{engine}({path}, '{{replica}}'{extra})"


def _rewrite_create_table(match: re.Match[str], cluster: str, database: str) -> list[str]:
    if_not_exists, table, rest = match.group(1) or "", match.group(2), match.group(3)
    engine = _ENGINE.search(rest)
    if engine is None or engine.group(1).lower().startswith("replicated"):
        raise ClusterRewriteError(
            f"table {table}: only non-replicated *MergeTree engines can be rewritten for a cluster "
            f"(found {rest[rest.upper().find('ENGINE'):][:60]!r})")
    local = local_name(table)
    body = rest[: engine.start()] + replicated_engine(table, engine.group(1), engine.group(2)) + rest[engine.end():]
    return [
        f"CREATE TABLE {if_not_exists}{local} ON CLUSTER {cluster} {body}",
        f"CREATE TABLE {if_not_exists}{table} ON CLUSTER {cluster} AS {local} "
        f"ENGINE = Distributed({cluster}, '{database}', '{local}', {sharding_key(table, rest)})",
    ]


def _to_local_sources(select: str, tables: set[str]) -> str:
    return _SOURCE.sub(lambda m: f"{m.group(1)} {local_name(m.group(2))}" if m.group(2) in tables
                       else m.group(0), select)


def rewrite_statement(statement: str, cluster: str, database: str, tables: set[str]) -> list[str]:
    """The cluster form of one statement (one or two statements)."""
    check_identifier("cluster", cluster)
    check_identifier("database", database)
    s = statement.strip()
    if m := _CREATE_TABLE.match(s):
        return _rewrite_create_table(m, cluster, database)
    if m := _MATERIALIZED.match(s):
        target = m.group(3)
        if target not in tables:
            raise ClusterRewriteError(f"materialized view {m.group(2)} writes to {target}, which no "
                                      "migration creates with CREATE TABLE")
        return [f"CREATE MATERIALIZED VIEW {m.group(1) or ''}{m.group(2)} ON CLUSTER {cluster} "
                f"TO {local_name(target)} AS {_to_local_sources(m.group(4), tables)}"]
    if m := _VIEW.match(s):
        return [f"CREATE VIEW {m.group(1) or ''}{m.group(2)} ON CLUSTER {cluster} {m.group(3)}"]
    if m := _ALTER.match(s):
        name, action = m.group(1), m.group(2)
        if name not in tables:  # a view: ON CLUSTER, same name everywhere
            return [f"ALTER TABLE {name} ON CLUSTER {cluster} {action}"]
        out = [f"ALTER TABLE {local_name(name)} ON CLUSTER {cluster} {action}"]
        if _COLUMN_CHANGE.match(action.strip()):
            out.append(f"ALTER TABLE {name} ON CLUSTER {cluster} {_CODEC.sub('', action)}")
        return out
    if _ACCESS.match(s):
        return [s]
    raise ClusterRewriteError(
        f"no cluster form for {s[:80]!r}: sinks/cluster.py rewrites CREATE TABLE, CREATE "
        "[MATERIALIZED] VIEW, ALTER TABLE and access statements; extend it for this one")


def rewrite_statements(statements: Iterable[str], cluster: str, database: str,
                       tables: set[str]) -> list[str]:
    return [out for s in statements for out in rewrite_statement(s, cluster, database, tables)]


def ledger_ddl(cluster: str) -> str:
    """The migrations ledger replicated to every node of every shard (one Keeper path with
    no ``{shard}``), so any node knows what was applied."""
    check_identifier("cluster", cluster)
    return f"""
CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER {cluster}
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3),
    cluster String DEFAULT ''
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{{database}}/schema_migrations',
                                      '{{shard}}-{{replica}}')
ORDER BY version
"""
