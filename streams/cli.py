"""The ``warden`` command line (typer + rich)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streams.config import REPO_ROOT, WardenSettings

app = typer.Typer(help="Warden: governance over LLM inference telemetry.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
kafka_app = typer.Typer(help="The local Kafka broker (KRaft on 127.0.0.1: one node or a replicated cluster).",
                        no_args_is_help=True)
schema_app = typer.Typer(help="ClickHouse schema migrations.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts for SREs.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(schema_app, name="schema")
app.add_typer(alerts_app, name="alerts")
console = Console()
err = Console(stderr=True)

KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"


def settings() -> WardenSettings:
    return WardenSettings()


@app.command()
def worker(
    role: Annotated[str | None, typer.Option(
        help="all | govern (scales out) | sink (owns ClickHouse) | ingest (OTLP spans → raw topic) | drift (embedding and scalar drift"
             " only, e.g. on GPU nodes); default WARDEN_ROLE or all")] = None,
    web_port: Annotated[int | None, typer.Option(help="Faust web port (metrics, /sql)")] = None,
) -> None:
    """Run a Faust worker. Several workers with one app id share the partitions."""
    from streams.worker import run_worker

    overrides: dict[str, object] = {}
    if role is not None:
        if role not in ("all", "govern", "sink", "drift", "ingest"):
            raise typer.BadParameter(f"role {role!r}: use all, govern, sink, drift or ingest")
        overrides["role"] = role
    if web_port is not None:
        overrides["web_port"] = web_port
    from streams.query_endpoint import WebExposureError

    try:
        run_worker(settings().model_copy(update=overrides))
    except WebExposureError as exc:
        err.print(f"[red]refusing to start: {exc}[/red]")
        raise typer.Exit(2) from exc


BrokersOption = Annotated[int, typer.Option(
    min=1, max=9, help="nodes: 1, or a replicated cluster (3: topics with three replicas, "
                       "min.insync.replicas=2; docs/SCALING.md)")]


def _kafka_script(verb: str, brokers: int) -> int:
    import os

    if brokers == 1:
        return subprocess.call(["bash", str(KAFKA_SCRIPT), verb])
    env = {**os.environ, "KAFKA_BROKERS": str(brokers)}
    return subprocess.call(["bash", str(KAFKA_SCRIPT), f"cluster-{verb}"], env=env)


@kafka_app.command("up")
def kafka_up(brokers: BrokersOption = 1) -> None:
    """Resolve the Kafka jars with Maven if needed, start the broker (or a cluster of
    --brokers nodes), wait until ready."""
    import os

    from streams.kafka_cluster import ClusterNotReady, cluster_bootstrap, wait_for_brokers

    code = _kafka_script("up", brokers)
    if code or brokers == 1:
        raise typer.Exit(code)
    bootstrap = cluster_bootstrap(int(os.environ.get("KAFKA_PORT", "9092")), brokers)
    try:
        wait_for_brokers(bootstrap, brokers)
    except ClusterNotReady as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"{brokers} brokers registered. Point Warden at them:\n"
                  f"  export KAFKA_BOOTSTRAP={bootstrap}\n"
                  f"  export WARDEN_KAFKA_REPLICATION_FACTOR={min(brokers, 3)}")


@kafka_app.command("down")
def kafka_down(brokers: BrokersOption = 1) -> None:
    """Stop the local broker (or cluster)."""
    raise typer.Exit(_kafka_script("down", brokers))


@kafka_app.command("status")
def kafka_status(brokers: BrokersOption = 1) -> None:
    """Say whether the local broker (or each node of the cluster) is up."""
    raise typer.Exit(_kafka_script("status", brokers))


@kafka_app.command("acls")
def kafka_acls(
    serving: Annotated[str, typer.Option(help="the inference service's Kafka user: writes traces.raw only")],
    worker: Annotated[str, typer.Option(help="the workers' Kafka user: every Warden topic and its groups")],
    operator: Annotated[str, typer.Option(help="operators' Kafka user: writes overrides only")],
    apply: Annotated[bool, typer.Option(help="create them on the broker (log in as a super user); "
                                              "default: print them")] = False,
) -> None:
    """The ACLs of Warden's three principals for this topic prefix and app id
    (docs/SECURITY.md "Kafka ACLs"); printed, or created with --apply."""
    from streams.kafka_acls import AclSetupError, Principals, apply_acls, warden_grants

    s = settings()
    grants = warden_grants(s, Principals(serving=serving, worker=worker, operator=operator))
    print_rows([{"principal": f"User:{g.principal}", "resource": g.resource, "pattern": g.pattern, "name": g.name,
                 "operation": g.operation} for g in grants], title="ALLOW (everything else is denied)")
    if not apply:
        return
    try:
        count = apply_acls(s, [g.binding() for g in grants])
    except AclSetupError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"created {count} ACL bindings on {s.kafka_bootstrap}")


@schema_app.command("apply")
def schema_apply(
    cluster: Annotated[str | None, typer.Option(
        help="ClickHouse cluster (remote_servers name): Replicated local tables, Distributed tables, "
             "ON CLUSTER (docs/SCALING.md)")] = None,
    retention: Annotated[Path | None, typer.Option(
        help="YAML of TTLs per data class (sinks.retention.RetentionSettings)", exists=True,
        dir_okay=False)] = None,
    ttl: Annotated[list[str] | None, typer.Option(
        "--ttl", help="CLASS=N, e.g. traces_days=90 or audit_years=7 (repeatable; over --retention)")] = None,
) -> None:
    """Apply missing migrations (idempotent; recorded in schema_migrations), then retention
    when --retention or --ttl is given."""
    from sinks.clickhouse import ClickHouseStore
    from sinks.migrations_runner import MigrationError, apply_schema
    from sinks.retention import RetentionError

    store = ClickHouseStore(settings().clickhouse_dsn)
    try:
        report = apply_schema(store, cluster=cluster, retention_file=retention, ttl_overrides=ttl or [])
    except (MigrationError, RetentionError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    finally:
        store.close()
    applied = report.applied
    console.print(f"applied: {', '.join(applied) if applied else 'nothing, schema is current'}")
    for statement in report.retention:
        console.print(f"retention: {statement}")


def run_sql(query: str, fmt: str = "JSONEachRow", s: WardenSettings | None = None) -> bytes:
    """Read-only SQL: through a running worker's web server with an embedded engine,
    directly otherwise (a server DSN, or no worker holding the embedded engine). Either way
    the same rules apply (sinks.analyst_sql: one vetted statement, readonly=1, fixed limits)."""
    s = s or settings()
    if s.embedded_clickhouse:
        answer = _query_worker(s, query, fmt)
        if answer is not None:
            return answer
        # No worker owns the embedded engine: open it in this process.
    from sinks.analyst_sql import QueryRefused
    from sinks.clickhouse import ClickHouseStore, SinkError
    from streams.query_endpoint import analyst_limits, analyst_tables

    analyst_dsn = s.analyst_clickhouse_dsn.get_secret_value() if s.analyst_clickhouse_dsn else None
    store = ClickHouseStore(s.clickhouse_dsn, analyst_dsn=analyst_dsn, analyst_limits=analyst_limits(s),
                            analyst_tables=analyst_tables(s))
    try:
        return store.query_readonly(query, fmt=fmt)
    except (QueryRefused, SinkError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    finally:
        store.close()


def _query_worker(s: WardenSettings, query: str, fmt: str) -> bytes | None:
    """The worker's read-only /sql answer, or None when no worker is listening."""
    import ssl

    from streams.query_endpoint import WebExposureError, query_token

    try:
        token = query_token(s)
    except WebExposureError as exc:  # an unreadable token file or a short token
        raise typer.BadParameter(str(exc)) from exc
    scheme = "https" if s.web_tls_certfile else "http"
    url = f"{scheme}://{s.web_host}:{s.web_port}/sql?" + urllib.parse.urlencode({"format": fmt})
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # POST: the query stays out of access logs and proxies' URL logs.
    request = urllib.request.Request(url, data=query.encode(), headers=headers, method="POST")
    # A self-signed certificate is trusted when this host holds it (WARDEN_WEB_TLS_CERTFILE).
    context = ssl.create_default_context(cafile=str(s.web_tls_certfile)) if s.web_tls_certfile else None
    try:
        with urllib.request.urlopen(request, timeout=s.analyst_max_execution_s + 30, context=context) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read() or b"{}").get("error", str(exc))
        except ValueError:
            detail = str(exc)
        if exc.code == 401:
            detail += ": set WARDEN_QUERY_TOKEN (or WARDEN_QUERY_TOKEN_FILE) to the worker's query token"
        raise typer.BadParameter(detail) from exc
    except urllib.error.URLError:
        return None


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SELECT ... (read-only: ClickHouse readonly mode)")],
    output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
) -> None:
    """Query ClickHouse read-only, through the worker when it owns the embedded engine."""
    body = run_sql(query)
    rows = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    if output == "json":
        for row in rows:
            sys.stdout.write(json.dumps(row, default=str) + "\n")
        return
    print_rows(rows)


def print_rows(rows: Sequence[Mapping[str, object]], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    columns = list(rows[0].keys()) if rows else []
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in columns])
    console.print(table if rows else "(no rows)")


@alerts_app.command("tail")
def alerts_tail(
    severity: Annotated[str | None, typer.Option(help="info | warning | critical (and above)")] = None,
    route: Annotated[str | None, typer.Option(help="only this route")] = None,
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest alert")] = False,
    max_alerts: Annotated[int | None, typer.Option(help="stop after this many")] = None,
    idle_timeout: Annotated[float | None, typer.Option(help="stop after this many idle seconds")] = None,
) -> None:
    """Follow the alerts topic, pretty-printed and filtered."""
    from streams.alerts_tail import tail_alerts

    tail_alerts(settings(), console, severity=severity, route=route, from_beginning=from_beginning,
                max_alerts=max_alerts, idle_timeout_s=idle_timeout)


@alerts_app.command("forward")
def alerts_forward(
    url: Annotated[str, typer.Option(help="Alertmanager base URL, e.g. http://alertmanager:9093")],
    severity: Annotated[str, typer.Option(help="minimum severity to forward")] = "warning",
) -> None:
    """Forward alerts to an Alertmanager-compatible webhook (at least once)."""
    from streams.forwarder import forward_alerts

    forward_alerts(settings(), url, min_severity=severity)


@app.command()
def loadgen(
    rate: Annotated[float, typer.Option(help="traces per second")] = 500.0,
    count: Annotated[int, typer.Option(help="traces to send")] = 5000,
    routes: Annotated[int, typer.Option(help="number of routes")] = 4,
    trace_kb: Annotated[float, typer.Option(help="approximate size of one trace, KB")] = 2.0,
    incident: Annotated[list[str] | None, typer.Option(
        help="NAME[@START[:LENGTH]], repeatable: error_burst, pii, secret, malformed, cost, drift")] = None,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Publish synthetic traces at a rate, with injected incidents; shows a progress bar."""
    from streams.loadgen import LoadPlan, run_load

    plan = LoadPlan.build(count=count, rate=rate, routes=routes, trace_kb=trace_kb,
                          incidents=incident or [], seed=seed)
    stats = run_load(settings(), plan, console)
    console.print(stats)


@app.command()
def demo(
    count: Annotated[int, typer.Option(help="traces to send")] = 6000,
    rate: Annotated[float, typer.Option(help="traces per second")] = 600.0,
) -> None:
    """Start Kafka if needed, run a worker and load with incidents, print what was found."""
    from streams.demo import run_demo

    raise typer.Exit(run_demo(settings(), console, count=count, rate=rate))


@app.command()
def topics() -> None:
    """Create missing topics and list them with their contracts."""
    from streams.topics import ensure_topics, topic_specs

    s = settings()
    ensure_topics(s)
    print_rows([{"topic": s.topic(t.name), "record": t.record, "key": t.key, "compacted": t.compacted,
                 "retention_ms": t.retention_ms} for t in topic_specs(s)])


def _register_optional() -> None:
    """Command groups that live beside their detectors."""
    import importlib

    for module in ("streams.cli_redact", "streams.cli_drift", "streams.cli_replay", "streams.cli_sim", "streams.cli_change",
                   "streams.cli_breaker", "streams.cli_audit", "streams.otlp.cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(app)


_register_optional()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["app", "main", "run_sql", "Path"]
