"""Forward alerts to an Alertmanager-compatible webhook (``POST /api/v2/alerts``).

A consumer group of its own, offsets committed only after the webhook accepted a batch,
so a restart or an unreachable Alertmanager delays alerts and never drops them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import structlog
from confluent_kafka import Consumer
from pydantic import ValidationError

from streams.alerts_tail import SEVERITY_RANK
from streams.config import WardenSettings
from streams.records import Alert

log = structlog.get_logger("warden.forwarder")


def alertmanager_payload(alert: Alert) -> dict[str, Any]:
    labels = {"alertname": alert.kind, "severity": alert.severity.value, "dedup_key": alert.dedup_key}
    labels.update({k: v for k, v in (("tenant", alert.tenant), ("route", alert.route), ("model", alert.model),
                                      ("owner", alert.owner)) if v})
    return {
        "labels": labels,
        "annotations": {"summary": alert.summary, "runbook_url": alert.runbook, "oncall": alert.oncall,
                        "count": str(alert.count)},
        "startsAt": alert.first_seen.isoformat(),
        "generatorURL": f"warden://alerts/{alert.alert_id}",
    }


def post_alerts(url: str, alerts: list[Alert], timeout_s: float = 10.0) -> None:
    body = json.dumps([alertmanager_payload(a) for a in alerts]).encode()
    request = urllib.request.Request(url.rstrip("/") + "/api/v2/alerts", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        if response.status >= 300:
            raise urllib.error.HTTPError(url, response.status, "rejected", response.headers, None)


def forward_alerts(settings: WardenSettings, url: str, *, min_severity: str = "warning",
                   max_batches: int | None = None, idle_timeout_s: float | None = None) -> int:
    """Run the forwarder; returns how many alerts were delivered (when it stops)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"{settings.app_id}-alert-forwarder",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         **settings.security.confluent()})
    consumer.subscribe([settings.topic("alerts.v1")])
    delivered = batches = 0
    last = time.monotonic()
    try:
        while max_batches is None or batches < max_batches:
            messages = consumer.consume(num_messages=100, timeout=0.5)
            if not messages:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    break
                continue
            last = time.monotonic()
            alerts = []
            for msg in messages:
                if msg.error():
                    continue
                try:
                    alert = Alert.model_validate(json.loads(msg.value() or b"null"))
                except (ValidationError, ValueError):
                    continue
                if SEVERITY_RANK[alert.severity.value] >= SEVERITY_RANK[min_severity]:
                    alerts.append(alert)
            delay = 0.5
            while alerts:
                try:
                    post_alerts(url, alerts)
                    break
                except (OSError, urllib.error.URLError) as exc:
                    log.warning("alertmanager_unreachable", url=url, retry_in_s=delay, error=str(exc)[:200])
                    time.sleep(delay)
                    delay = min(delay * 2, 30.0)
            consumer.commit(asynchronous=False)
            delivered += len(alerts)
            batches += 1
    finally:
        consumer.close()
    return delivered
