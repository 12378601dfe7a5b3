"""The Grafana dashboard in deploy/ refers only to metrics the worker exports and to SQL
that runs on the migrated schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sinks.clickhouse import ClickHouseStore
from streams.metrics import WorkerMetrics

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "warden-dashboard.json"


def test_prometheus_panels_use_exported_metrics() -> None:
    metrics = WorkerMetrics()
    metrics.dead_letters.labels("x").inc()
    metrics.findings.labels("x").inc()
    metrics.rows_written.labels("traces").inc()
    metrics.sink_failures.labels("traces").inc()
    metrics.stage_seconds.labels("govern").observe(0.01)
    metrics.breaker_open.labels("t").set(1)
    metrics.consumer_lag.labels("t").set(1)
    exported = {s.name for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p["targets"] if "expr" in t]
    assert len(exprs) >= 8
    for expr in exprs:
        for name in re.findall(r"warden_[a-z_]+", expr):
            assert name in exported, f"{name} (in {expr!r}) is not exported by the worker"


def test_clickhouse_panels_run_on_the_schema(tmp_path: Path) -> None:
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    store.migrate()
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queries = [t["rawSql"] for p in panels for t in p["targets"] if "rawSql" in t]
    assert len(queries) >= 3
    for sql in queries:
        store.query_readonly(re.sub(r"\$__timeFilter\((\w+)\)", "1", sql))
    store.close()
