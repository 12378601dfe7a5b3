"""Loader for the shared, versioned detector configuration (``deploy/config/detectors.yaml``).

One file, one ``version:`` string (stored with every finding), one optional section per
detector family. Sections this loader does not know yet are kept as plain data
(``extra="allow"``), so a worker that predates a section still loads the file.

>>> cfg = DetectorsConfig.model_validate({"version": "2024-06-01.1", "cost": {"x": 1}})
>>> cfg.version, cfg.drift is None, cfg.model_extra["cost"]
('2024-06-01.1', True, {'x': 1})
>>> cfg.drift_or_default().embedding.reference.size
1000
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from detectors.drift.config import DriftConfig

DEFAULT_PATH = Path("deploy/config/detectors.yaml")


class DetectorsConfig(BaseModel):
    """Top level of ``detectors.yaml``: ``version`` plus optional per-family sections."""

    model_config = ConfigDict(extra="allow", frozen=True)

    version: str = Field(min_length=1)
    drift: DriftConfig | None = None

    def drift_or_default(self) -> DriftConfig:
        """The ``drift:`` section, or all defaults when the file has none."""
        return self.drift if self.drift is not None else DriftConfig()


def load_detectors_config(path: str | Path = DEFAULT_PATH) -> DetectorsConfig:
    """Read and validate a detectors YAML file.

    Errors name the file and the offending field (pydantic's location path).
    """
    path = Path(path)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"detector config {path} not found; pass --config PATH") from None
    if not isinstance(raw, dict) or "version" not in raw:
        raise ValueError(f"{path}: top level must be a mapping with a 'version:' string")
    raw["version"] = str(raw["version"])
    try:
        return DetectorsConfig.model_validate(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def dump_detectors_config(config: DetectorsConfig) -> str:
    """YAML text for ``config`` (what a notebook writes for workers to load)."""
    data = config.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)
