"""Start a worker: open ClickHouse, apply migrations, create topics, run the Faust app."""

from __future__ import annotations

import gc
import time
from typing import Any

import structlog
import yaml

from sinks import tables
from sinks.clickhouse import ClickHouseStore, batch_token, redact_dsn
from sinks.owners import OWNERS, registry_records
from streams.app import create_app
from streams.breaking import BreakerDecider
from streams.config import WardenSettings
from streams.config_events import announce_config
from streams.governor import Governor
from streams.ledger import ChangeFollower
from streams.logs import configure_logging
from streams.query_endpoint import analyst_limits, analyst_tables, check_web_exposure
from streams.redaction import load_redactor
from streams.topics import ensure_topics
from streams.wiring import Wiring

log = structlog.get_logger("warden.worker")


def store_registry(store: ClickHouseStore, settings: WardenSettings) -> None:
    """The ownership registry as analysts see it (re-inserting one version is harmless)."""
    doc = yaml.safe_load((settings.config_dir / "owners.yaml").read_text()) or {}
    rows, keys = tables.rows_for(OWNERS, registry_records(doc, loaded_at=time.time()))
    store.insert_until_durable("owners", OWNERS.columns, rows, dedup_token=batch_token("owners", keys))


def build_wiring(settings: WardenSettings) -> Wiring:
    store = None
    if settings.role in ("all", "sink"):
        analyst_dsn = settings.analyst_clickhouse_dsn
        store = ClickHouseStore(settings.clickhouse_dsn, outage_file=settings.sink_outage_file,
                                analyst_dsn=analyst_dsn.get_secret_value() if analyst_dsn else None,
                                analyst_limits=analyst_limits(settings),
                                analyst_tables=analyst_tables(settings))
        applied = store.migrate()
        log.info("clickhouse_ready", dsn=redact_dsn(settings.clickhouse_dsn), migrations_applied=applied)
        store_registry(store, settings)
    governor = Governor.from_settings(settings, load_redactor(settings))
    decider = BreakerDecider.from_settings(settings)
    return Wiring(settings, governor, decider, store)


def faust_worker(app: Any, settings: WardenSettings) -> Any:
    import faust

    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner sets the root logger to DEBUG (so that every record turns it)
    # when the level is WARNING or above: every debug call in aiokafka then builds a record,
    # 7% of the event loop at 300 traces/s, for a spinner nobody sees in a service.
    worker.spinner = None
    return worker


def run_worker(settings: WardenSettings) -> None:
    configure_logging(settings.log_level)
    check_web_exposure(settings)  # before anything starts: never listen exposed without a token
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    created = ensure_topics(settings)
    if settings.role in ("all", "ingest"):
        from streams.otlp.agent import ensure_otlp_topics

        created += ensure_otlp_topics(settings)
    log.info("worker_starting", role=settings.role, kafka=settings.kafka_bootstrap, topics_created=created,
             web=f"http://{settings.web_host}:{settings.web_port}", web_bind=settings.web_bind)
    wiring = build_wiring(settings)
    if settings.role in ("all", "govern"):
        wiring.changes = ChangeFollower(settings).start()
        wiring.poll_changes()
        announce_config(settings, wiring.governor.context.ledger)
    app = create_app(settings, wiring)
    # Everything loaded so far (torch, the encoder, policies) lives as long as the worker:
    # out of the collector's sight, a full collection no longer walks millions of objects
    # and stops the event loop for 100+ ms (the breaker's p99 showed those pauses).
    gc.collect()
    gc.freeze()

    worker = faust_worker(app, settings)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _stop_sinks(app_: object, **_: object) -> None:
        # A sink stuck retrying an unreachable ClickHouse gives up so shutdown completes;
        # its batch stays uncommitted and Kafka replays it.
        wiring.stopping.set()

    try:
        worker.execute_from_commandline()
    finally:
        wiring.stopping.set()
        if wiring.changes is not None:
            wiring.changes.close()
        if wiring._store is not None:
            wiring._store.close()
