"""``warden alerts tail``: follow the alerts topic, filtered and pretty-printed."""

from __future__ import annotations

import json
import time

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from pydantic import ValidationError
from rich.console import Console

from streams.config import WardenSettings
from streams.records import Alert

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


def matches(alert: Alert, severity: str | None, route: str | None) -> bool:
    if severity and SEVERITY_RANK[alert.severity.value] < SEVERITY_RANK[severity]:
        return False
    return not (route and alert.route != route)


def render(alert: Alert) -> str:
    colour = STYLE[alert.severity.value]
    scope = "/".join(x for x in (alert.tenant, alert.route, alert.model) if x) or "-"
    owner = f" owner={alert.owner}" if alert.owner else ""
    return (f"[dim]{alert.last_seen:%H:%M:%S}[/] [{colour}]{alert.severity.value:8}[/] "
            f"[bold]{alert.kind}[/] {scope}{owner}: {alert.summary}")


def tail_alerts(settings: WardenSettings, console: Console, *, severity: str | None = None,
                route: str | None = None, from_beginning: bool = False, max_alerts: int | None = None,
                idle_timeout_s: float | None = None) -> int:
    if severity and severity not in SEVERITY_RANK:
        raise ValueError(f"severity {severity!r}: use info, warning or critical")
    topic = settings.topic("alerts.v1")
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"warden-tail-{time.time_ns()}",
                         "enable.auto.commit": False, **settings.security.confluent()})
    shown = 0
    try:
        partitions = consumer.list_topics(topic, timeout=15).topics[topic].partitions
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in partitions])
        last = time.monotonic()
        while max_alerts is None or shown < max_alerts:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    break
                continue
            last = time.monotonic()
            try:
                alert = Alert.model_validate(json.loads(msg.value() or b"null"))
            except (ValidationError, ValueError):
                continue
            if matches(alert, severity, route):
                console.print(render(alert), highlight=False)
                shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return shown
