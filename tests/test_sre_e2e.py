"""Issue 9, SREs' side, through the real pipeline: metrics, grouped alerts, the
Alertmanager forwarder and ``warden alerts tail``."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from streams.cli import app
from streams.config import WardenSettings
from streams.forwarder import forward_alerts
from streams.loadgen import malformed
from tests.pipeline_helpers import fast_config, publisher, trace_for, wait_for
from tests.worker_proc import Pipeline

pytestmark = pytest.mark.integration

SERIES = ["warden_traces_governed_total", "warden_dead_letters_total", "warden_findings_total",
          "warden_sink_rows_total", "warden_stage_seconds_bucket", "warden_consumer_lag", "warden_breaker_open"]


class _Alertmanager(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/api/v2/alerts"
        _Alertmanager.received.extend(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_metrics_grouped_alerts_forwarder_and_tail(pipeline: Pipeline, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    worker = pipeline.worker(extra={"WARDEN_CONFIG_DIR": str(fast_config(tmp_path))}).start()
    rng = random.Random(9)
    try:
        with publisher(pipeline) as pub:
            for _ in range(40):
                pub.publish(trace_for("support-chat", "gpt-4o-mini", error=False, rng=rng))
                pub.publish(trace_for("support-chat", "claude-3-5-haiku", error=False, rng=rng))
            for i in range(400):  # a long burst: the detector re-notifies, the alert is grouped
                pub.publish(trace_for("support-chat", "gpt-4o-mini", error=i % 5 != 0, rng=rng))
                if i % 100 == 0:
                    pub.publish_raw(malformed(i, rng), b"x")
                    pub.flush()
                    threading.Event().wait(2.5)
        wait_for(lambda: int(worker.scalar(
            "SELECT count() FROM findings FINAL WHERE kind = 'error_rate.high'")) >= 2, 90,
            "repeated error_rate.high findings", worker)
        alerts = "SELECT count() FROM alerts FINAL WHERE kind = 'error_rate.high'"
        wait_for(lambda: int(worker.scalar(alerts)) >= 1, 60, "the grouped alert stored", worker)  # trails its findings
        assert int(worker.scalar(alerts)) == 1

        metrics = worker.get("/metrics").decode()
        for series in SERIES:
            assert series in metrics, f"{series} missing from /metrics"
        assert 'warden_dead_letters_total{kind=' in metrics

        _Alertmanager.received = []
        server = HTTPServer(("127.0.0.1", 0), _Alertmanager)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            settings = WardenSettings(kafka_bootstrap=pipeline.bootstrap, topic_prefix=pipeline.prefix,
                                      app_id=f"warden-{pipeline.prefix}")
            sent = forward_alerts(settings, f"http://127.0.0.1:{server.server_port}", idle_timeout_s=5)
        finally:
            server.shutdown()
        assert sent >= 1 and len(_Alertmanager.received) == sent
        burst = [a for a in _Alertmanager.received if a["labels"]["alertname"] == "error_rate.high"]
        assert burst and burst[0]["labels"]["severity"] == "critical"
        assert burst[0]["labels"]["route"] == "support-chat" and burst[0]["annotations"]["summary"]

        for key, value in pipeline.env(0).items():
            if key.startswith(("WARDEN_", "KAFKA_")) and key != "WARDEN_WEB_PORT":
                monkeypatch.setenv(key, value)
        tail = CliRunner().invoke(app, ["alerts", "tail", "--from-beginning", "--severity", "critical",
                                        "--route", "support-chat", "--idle-timeout", "3"])
        assert tail.exit_code == 0, tail.output
        assert "error_rate.high" in tail.output and "support-chat" in tail.output
    finally:
        worker.stop()
