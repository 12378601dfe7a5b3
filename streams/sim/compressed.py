"""Detector settings for a compressed day (``warden sim day --hours H`` with H < 24, the
realistic-day tests).

A compressed day keeps real event-time semantics (windows, cooldowns and burn-rate
windows are seconds of event time, published faster with ``--speedup``) but has fewer
traces per route than a real day: ``SimDay(hours=6, scale=0.5)`` has ~1/8 of a day's
traces. Detectors that count samples before they judge get proportionally smaller
warm-ups, and embedding drift samples less of the low-risk traffic so a 2-core machine can
encode it in real time. Everything else stays at the production defaults of
``deploy/config``. Each override says which default it replaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DRIFT = {
    # default fields [prompt, completion]: the prompt is where a topic shift shows, and
    # encoding one field halves the encoder's work.
    "fields": ["prompt"],
    "reference": {"mode": "fixed", "size": 300},     # default 1000 items
    "window_size": 100,                               # default 200
    "test_every": 50,                                 # default 100
    "centroid": {"enabled": True, "window_size": 40, "budget_share": 0.2},
    "novelty": {"enabled": True, "window_size": 50, "quantile": 0.05, "budget_share": 0.3},
    "realert_after": 400,                             # default 1000
}
SAMPLING = {"rates": {"low": 0.05, "medium": 0.15, "high": 1.0}, "default_rate": 1.0,  # default 0.25/0.5/1.0
            "salt": "warden-drift"}
REGRESSION = {"warmup": 120, "half_life": 2000}      # default 500 / 5000 runs
OWNERSHIP: dict[str, Any] = {
    # default 3600 s: versions seen in the first hour of a worker are its baseline. A
    # compressed day's cycle is shorter, scaled like the day.
    "versions": {"learn_s": 1800.0},
}


def apply(config_dir: Path, hours: float) -> None:
    """Rewrite ``detectors.yaml`` and ``budgets.yaml`` of a copied config directory."""
    path = config_dir / "detectors.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["version"] = f"{doc['version']}+compressed-{hours:g}h"
    drift = doc.setdefault("drift", {})
    drift.setdefault("embedding", {}).update(DRIFT)
    drift["sampling"] = SAMPLING
    own = doc.setdefault("ownership", {})
    for section, values in OWNERSHIP.items():
        own.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    budgets = config_dir / "budgets.yaml"
    cost = yaml.safe_load(budgets.read_text())
    cost.setdefault("regression", {}).update(REGRESSION)
    cost["version"] = f"{cost['version']}+compressed"
    budgets.write_text(yaml.safe_dump(cost, sort_keys=False))
