"""Loading a versioned file is a change: the worker registers what it loaded in the ledger.

A file already registered at the same version is not announced again, so restarts and
extra workers add nothing; a new version (or a new content hash under an old version,
which is a mistake worth seeing) is published once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import structlog
import yaml

from detectors.ownership import ChangeLedger
from streams.changes import ChangePublisher, config_load_event
from streams.config import WardenSettings
from streams.records import ChangeEvent, ComponentKind

log = structlog.get_logger("warden.worker")

CONFIG_FILES: dict[str, ComponentKind] = {
    "redaction-policy.yaml": ComponentKind.redaction_policy,
    "breaker-policy.yaml": ComponentKind.breaker_policy,
    "prices.yaml": ComponentKind.price_catalog,
    "budgets.yaml": ComponentKind.detector_config,
    "detectors.yaml": ComponentKind.detector_config,
    "owners.yaml": ComponentKind.ownership_registry,
    # Where OTLP spans' tenant and route come from: a new version can move traffic between routes.
    "otlp-mapping.yaml": ComponentKind.detector_config,
}


def loaded_config_events(config_dir: Path) -> list[ChangeEvent]:
    events = []
    for name, kind in CONFIG_FILES.items():
        path = config_dir / name
        if not path.is_file():
            continue
        raw = path.read_bytes()
        version = str((yaml.safe_load(raw) or {}).get("version", "unversioned"))
        digest = hashlib.sha256(raw).hexdigest()[:16]
        events.append(config_load_event(kind, path.stem, f"{version}+{digest}", digest))
    return events


def announce_config(settings: WardenSettings, ledger: ChangeLedger) -> list[ChangeEvent]:
    """Publish a change event for every config file whose version the ledger lacks."""
    fresh = [e for e in loaded_config_events(settings.config_dir)
             if not ledger.is_registered(str(e.component_kind), e.new_version, e.component_id)]
    if fresh:
        publisher = ChangePublisher(settings)
        for event in fresh:
            publisher.publish(event)
        log.info("config_registered", files=[f"{e.component_id}@{e.new_version}" for e in fresh])
    return fresh
