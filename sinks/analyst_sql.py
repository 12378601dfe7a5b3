"""Analyst SQL: ClickHouse's own parser decides what may run, ``readonly=1`` what it may touch.

An analyst query passes three gates, each ClickHouse's own machinery rather than string checks:

1. ``formatQuery`` parses the text as exactly one statement (it refuses ``SELECT 1; SELECT
   file(...)``) and prints it canonically; the canonical text is what runs, so what was
   checked is what executes.
2. ``EXPLAIN AST`` of that text must be a SELECT (or SHOW TABLES / DESCRIBE of a table),
   with no ``INTO OUTFILE``, ``FORMAT`` or ``SETTINGS`` clause, calling no function that
   reaches outside the database (``file``, ``url``, ``remote``, ``s3``, ``executable``, ...).
   The AST is needed because chDB is clickhouse-local: under ``readonly=1`` it still runs
   the scalar ``file('/etc/passwd')``, ``INTO OUTFILE`` and ``KILL QUERY`` (measured with
   chDB 4.4, ClickHouse 26.9; tests/test_security_query.py).
3. The query runs on its own session opened with the limits (time, rows, result bytes,
   memory) and then ``readonly=1``: from then on ClickHouse refuses ``SET``, a ``SETTINGS``
   clause and every table function, so no query can raise a limit.

The session is not the writer's: chDB runs queries of separate handles concurrently, so a
long analyst query never stalls an insert. Analyst queries run one at a time (one handle)
and can be cancelled from a second handle with ``KILL QUERY``, which the web endpoint does
when its client goes away.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import structlog
from clickhouse_connect.driver.client import Client

log = structlog.get_logger("warden.analyst_sql")

# Output formats an analyst may ask for. Not Template, Regexp, Protobuf or CapnProto: those
# read a schema or template file named by a setting.
ANALYST_FORMATS = frozenset({
    "JSONEachRow", "JSONCompactEachRow", "JSONStringsEachRow", "JSON", "JSONCompact", "JSONStrings",
    "TabSeparated", "TabSeparatedWithNames", "TabSeparatedWithNamesAndTypes", "TSV", "TSVWithNames",
    "TabSeparatedRaw", "CSV", "CSVWithNames", "CSVWithNamesAndTypes", "Pretty", "PrettyCompact",
    "PrettyCompactMonoBlock", "PrettySpace", "PrettyNoEscapes", "Vertical", "Markdown", "Values",
    "Parquet", "Arrow", "ArrowStream", "ORC", "RowBinary", "RowBinaryWithNames", "Native",
})

# Statements an analyst may run (root node of ClickHouse's AST).
ALLOWED_STATEMENTS = {"SelectWithUnionQuery": "SELECT", "ShowTables": "SHOW TABLES",
                      "DescribeQuery": "DESCRIBE"}

# Functions, scalar or table, that read or write outside the database or run programs.
# Lower case; ClickHouse resolves some names case-insensitively.
DENIED_FUNCTIONS = frozenset(name.lower() for name in (
    "file", "fileCluster", "url", "urlCluster", "remote", "remoteSecure", "cluster", "clusterAllReplicas",
    "s3", "s3Cluster", "gcs", "oss", "cosn", "hdfs", "hdfsCluster", "azureBlobStorage",
    "azureBlobStorageCluster", "executable", "executablePool", "mysql", "postgresql", "jdbc", "odbc",
    "mongodb", "redis", "sqlite", "arrowFlight", "arrowflight", "ytsaurus", "input", "dictionary",
    "iceberg", "icebergS3", "icebergAzure", "icebergHDFS", "icebergLocal", "icebergS3Cluster",
    "icebergAzureCluster", "icebergHDFSCluster", "deltaLake", "deltaLakeS3", "deltaLakeAzure",
    "deltaLakeLocal", "deltaLakeCluster", "hudi", "hudiCluster", "paimon", "merge", "loop",
    "catboostEvaluate", "filesystemAvailable", "filesystemCapacity", "filesystemUnreserved",
    "getServerSetting", "getMergeTreeSetting", "addressToLine", "addressToLineWithInlines",
    "addressToSymbol", "demangle", "kafka", "prometheusQuery", "prometheusQueryRange", "timeSeriesData",
    "timeSeriesMetrics", "timeSeriesTags", "mergeTreeIndex", "mergeTreeProjection", "mergeTreeAnalyzeIndexes",
))

_AST_LINE = re.compile(r"^( *)(\S+)(?: (.*))?$")
# EXPLAIN QUERY TREE names every table a SELECT reads once CTEs and aliases are resolved.
_TREE_TABLE = re.compile(r"\bTABLE id: \d+.*?, table_name: (\S+?)(?:,|$)", re.M)
_TREE_TABLE_FUNCTION = re.compile(r"\bTABLE_FUNCTION id: \d+.*?, table_function_name: (\S+?)(?:,|$)", re.M)
# Generators that read nothing, allowed when analysts are confined to their views.
HARMLESS_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generateSeries", "values"})
ANALYST_GRANTS = Path(__file__).with_name("migrations") / "server" / "001_analyst_role.sql"


def analyst_views() -> frozenset[str]:
    """What the ``warden_analyst`` role may read on a server, from its own migration: the
    same list confines the embedded engine's analysts when ``WARDEN_ANALYST_TABLES=views``."""
    return frozenset(re.findall(r"^GRANT SELECT ON (\w+) TO warden_analyst;", ANALYST_GRANTS.read_text(), re.M))


class QueryRefused(ValueError):
    """The analyst query is not allowed; the message says which rule and what to do instead."""


class ResultTooLarge(QueryRefused):
    """The answer is over the analyst limits. Nothing partial is returned: a cut answer
    looks like a complete one (a count, a distinct list, a scan for a value)."""


class AnalystBusy(RuntimeError):
    """Another analyst query holds the session longer than this one may wait."""


@dataclass(frozen=True)
class AnalystLimits:
    """What one analyst query may use. Set on the session before ``readonly=1``, so a query
    can neither raise them (``SETTINGS``) nor lift read-only mode."""

    max_execution_s: int = 30
    max_result_rows: int = 10_000
    max_result_bytes: int = 64 * 1024 * 1024
    max_memory_bytes: int = 1024 * 1024 * 1024

    def session_settings(self) -> dict[str, Any]:
        # Order matters: readonly last, once it is set nothing else may change.
        # "throw", not "break": break ends the answer silently at the limit (10,000 planted
        # traces came back as 4,918 rows with no sign that any were missing).
        return {"max_execution_time": self.max_execution_s, "max_result_rows": self.max_result_rows,
                "max_result_bytes": self.max_result_bytes, "result_overflow_mode": "throw",
                "max_memory_usage": self.max_memory_bytes, "readonly": 1}


@dataclass(frozen=True)
class AstNode:
    depth: int
    kind: str
    detail: str


def parse_explain_ast(text: str) -> list[AstNode]:
    """``EXPLAIN AST`` output (one node per line, indented one space per level) as nodes."""
    nodes = []
    for line in text.splitlines():
        match = _AST_LINE.match(line.rstrip("\n"))
        if match:
            nodes.append(AstNode(len(match.group(1)), match.group(2), match.group(3) or ""))
    return nodes


# The output format of the EXPLAIN itself: the client appends ``FORMAT`` to the text, and
# ClickHouse's parser attaches it to the explained SELECT as its last child.
EXPLAIN_FORMAT = "TabSeparatedRaw"


def judge_ast(nodes: list[AstNode]) -> None:
    """Raise ``QueryRefused`` unless the statement is one an analyst may run."""
    if nodes and nodes[-1].depth == 1 and (nodes[-1].kind, nodes[-1].detail) == ("Identifier", EXPLAIN_FORMAT):
        nodes = nodes[:-1]
    if not nodes:
        raise QueryRefused("empty query: write one SELECT statement")
    root = nodes[0].kind
    if root not in ALLOWED_STATEMENTS:
        raise QueryRefused(f"{root} is not allowed: analysts may run {', '.join(ALLOWED_STATEMENTS.values())} "
                           "(read-only; writes go through Warden's pipeline)")
    top_children = [n for n in nodes if n.depth == 1]
    # The statement's own output clauses are top-level children after its body: INTO OUTFILE
    # (and COMPRESSION) a Literal, FORMAT an Identifier, SETTINGS a Set. A SELECT's body is
    # its union list, a DESCRIBE's its table expression; SHOW TABLES has no body but may
    # name a database (an Identifier too: vet() tells it from FORMAT by parsing).
    body = 0 if root == "ShowTables" else 1
    for child in top_children[body:]:
        if child.kind == "Literal":
            raise QueryRefused("INTO OUTFILE is not allowed: the result comes back in the response")
        if child.kind == "Set":
            raise QueryRefused("SETTINGS is not allowed: the limits are fixed for analyst sessions")
        if child.kind == "Identifier" and (root != "ShowTables" or child is not top_children[0]):
            raise QueryRefused("a FORMAT clause is not allowed: ask for the format with format=")
        if child.kind != "Identifier":
            raise QueryRefused(f"clause {child.kind} is not allowed after the {ALLOWED_STATEMENTS[root]}")
    for node in nodes:
        if node.kind == "Set":
            raise QueryRefused("SETTINGS is not allowed: the limits are fixed for analyst sessions")
        if node.kind == "Function":
            name = node.detail.split(" ", 1)[0].strip("`\"").lower()
            if name in DENIED_FUNCTIONS:
                raise QueryRefused(f"function {name}() is not allowed: it reads or writes outside the "
                                   "database (files, URLs, other servers, programs)")


def check_format(fmt: str) -> str:
    if fmt not in ANALYST_FORMATS:
        raise QueryRefused(f"format {fmt!r} is not offered: use one of {', '.join(sorted(ANALYST_FORMATS))}")
    return fmt


class AnalystSession:
    """The analysts' own ClickHouse session: vetted SQL, fixed limits, cancellable.

    ``dsn`` is a ``chdb://`` path (the embedded engine the writer also opens: one engine per
    process, separate handles) or a server DSN of the analyst user, never the writer's.
    """

    def __init__(self, dsn: str, limits: AnalystLimits | None = None, *, wait_s: float | None = None,
                 tables: frozenset[str] | None = None):
        self.dsn = dsn
        self.limits = limits or AnalystLimits()
        # None: every table of the database; otherwise only these (and system.one).
        self.tables = tables
        # How long a query waits for the one before it; past that it is refused as busy.
        self.wait_s = self.limits.max_execution_s if wait_s is None else wait_s
        self._client: Client | None = None
        self._control: Client | None = None
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()

    def _clients(self) -> tuple[Client, Client]:
        from sinks.clickhouse import open_client

        with self._open_lock:
            if self._client is None or self._control is None:
                # Settings are applied one by one in this order (chDB: SET on the handle;
                # a server: parameters of every request), readonly last.
                self._client = open_client(self.dsn, self.limits.session_settings())
                # KILL QUERY runs from a second handle while the first one is busy.
                self._control = open_client(self.dsn, {"readonly": 1})
            return self._client, self._control

    def vet(self, sql: str) -> str:
        """The canonical single statement that will run, or ``QueryRefused``."""
        if not sql.strip():
            raise QueryRefused("empty query: pass q=SELECT ...")
        _, control = self._clients()
        try:
            canonical = control.raw_query("SELECT formatQuery({q:String})", parameters={"q": sql},
                                          fmt="TabSeparatedRaw").decode()
        except Exception as exc:
            raise QueryRefused(_first_line(exc)) from exc
        # TabSeparatedRaw ends the one row with a newline; a query's own newlines stay.
        canonical = canonical[:-1] if canonical.endswith("\n") else canonical
        try:
            # A statement takes one FORMAT clause: if adding ours does not parse, it brought
            # its own (the AST cannot tell `SHOW TABLES FORMAT CSV` from `SHOW TABLES FROM db`).
            control.raw_query("SELECT formatQuery({q:String})", parameters={"q": f"{canonical}\nFORMAT Null"},
                              fmt="TabSeparatedRaw")
        except Exception as exc:
            raise QueryRefused("a FORMAT clause is not allowed: ask for the format with format=") from exc
        try:
            ast = control.raw_query(f"EXPLAIN AST {canonical}", fmt=EXPLAIN_FORMAT).decode()
        except Exception as exc:
            raise QueryRefused(_first_line(exc)) from exc
        nodes = parse_explain_ast(ast)
        judge_ast(nodes)
        if self.tables is not None:
            self._confine(control, canonical, nodes, self.tables)
        return canonical

    @staticmethod
    def _confine(control: Client, canonical: str, nodes: list[AstNode], tables: frozenset[str]) -> None:
        """Refuse a query that reads a table outside ``tables``, however it names it."""
        if nodes[0].kind == "ShowTables":
            return
        if nodes[0].kind == "DescribeQuery":
            named = [n.detail for n in nodes if n.kind == "TableIdentifier"]
            if not named or any(name not in tables for name in named):
                raise QueryRefused(f"DESCRIBE is offered for the analyst views only: {', '.join(sorted(tables))}")
            return
        try:
            database = control.raw_query("SELECT currentDatabase()", fmt="TabSeparatedRaw").decode().strip()
            tree = control.raw_query(f"EXPLAIN QUERY TREE {canonical}", fmt=EXPLAIN_FORMAT).decode()
        except Exception as exc:
            raise QueryRefused(_first_line(exc)) from exc
        for name in _TREE_TABLE.findall(tree):
            db, _, table = name.rpartition(".")
            if name != "system.one" and not (db in ("", database) and table in tables):
                raise QueryRefused(f"table {name} is not one of the analyst views: {', '.join(sorted(tables))}")
        for function in _TREE_TABLE_FUNCTION.findall(tree):
            if function not in HARMLESS_TABLE_FUNCTIONS:
                raise QueryRefused(f"table function {function}() is not offered to analysts")

    def run(self, sql: str, fmt: str = "JSONEachRow", tag: str | None = None) -> bytes:
        """Vet and run one analyst query; ``tag`` names it for ``cancel``."""
        check_format(fmt)
        canonical = self.vet(sql)
        client, _ = self._clients()
        if not self._lock.acquire(timeout=self.wait_s):
            raise AnalystBusy(f"another analyst query has run for over {self.wait_s:.0f} s; try again")
        try:
            marked = f"/* warden-analyst:{tag} */ {canonical}" if tag else canonical
            try:
                return bytes(client.raw_query(marked, fmt=fmt))
            except Exception as exc:
                if "TOO_MANY_ROWS_OR_BYTES" in str(exc):
                    raise ResultTooLarge(self._too_large(exc)) from exc
                raise
        finally:
            self._lock.release()

    def _too_large(self, exc: BaseException) -> str:
        mib = self.limits.max_result_bytes / (1024 * 1024)
        return (f"the answer is over the analyst limits ({self.limits.max_result_rows:,} rows, {mib:g} MiB; "
                "WARDEN_ANALYST_MAX_RESULT_ROWS / _BYTES) and nothing partial is returned: aggregate, add a "
                f"LIMIT, or page with ORDER BY ... LIMIT n OFFSET k. ClickHouse said: {_first_line(exc)}")

    def cancel(self, tag: str) -> None:
        """Stop the query run with ``tag`` (the client went away); a no-op once it ended."""
        if not re.fullmatch(r"[0-9a-f]{8,64}", tag):
            raise ValueError("a cancel tag is hex")
        _, control = self._clients()
        prefix = f"/* warden-analyst:{tag} */"
        try:
            control.command(f"KILL QUERY WHERE startsWith(query, '{prefix}') ASYNC")
        except Exception:  # the query may have ended meanwhile; the time limit still holds
            log.warning("analyst_cancel_failed", tag=tag, exc_info=True)

    def close(self) -> None:
        for client in (self._client, self._control):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._client = self._control = None


def same_user(writer_dsn: str, analyst_dsn: str) -> bool:
    """Whether two server DSNs log in as the same ClickHouse user (``default`` when unnamed)."""
    a, b = urlparse(writer_dsn), urlparse(analyst_dsn)
    return (a.hostname, a.port, a.username or "default") == (b.hostname, b.port, b.username or "default")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:2000]
