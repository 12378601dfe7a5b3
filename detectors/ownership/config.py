"""Settings of the ownership detectors: the ``ownership:`` section of the detector config.

Every field has a default, so ``OwnershipSettings()`` is a working configuration. The
section is versioned with the file it lives in; ``version`` is stored in every finding.

>>> s = OwnershipSettings.from_mapping({"ownership": {"versions": {"grace_s": 900}}})
>>> s.versions.grace_s, s.change.settle_s
(900.0, 120.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SeverityName = Literal["info", "warning", "critical"]

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class _Strict(BaseModel):
    # A typo in a config key must fail loudly, not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeanShiftSettings(_Strict):
    """Two-sided CUSUM on batch means of a continuous signal (log scale)."""

    warmup: int = Field(default=300, ge=30, description="samples that form the baseline before testing")
    batch: int = Field(default=25, ge=1, description="samples averaged per CUSUM step")
    k: float = Field(default=0.5, gt=0, description="allowance, in standard errors of a batch mean")
    h: float = Field(default=10.0, gt=0, description="decision threshold, in standard errors")
    clip: float = Field(default=4.0, gt=0, description="winsorize single samples at +/- clip sd")
    memory: int = Field(default=5000, ge=100, description="effective samples of the adaptive baseline")
    memory_s: float | None = Field(default=None, gt=0, description="and at most this much event time, "
                                   "so a low-traffic route still follows a daily cycle")
    min_scale: float = Field(default=0.02, gt=0, description="floor of the per-sample sd (log units)")


class RateShiftSettings(_Strict):
    """Two-sided Bernoulli CUSUM on a rate (errors, refusals)."""

    warmup: int = Field(default=300, ge=30)
    ratio: float = Field(default=2.0, gt=1, description="alternative rate = baseline * ratio (or / ratio)")
    min_shift: float = Field(default=0.03, gt=0, lt=1, description="alternative is at least this far away")
    h: float = Field(default=12.0, gt=0, description="threshold on the log-likelihood ratio (nats)")
    memory: int = Field(default=5000, ge=100)


class MixShiftSettings(_Strict):
    """Windowed G-test of a categorical mix (finish reasons, tool calls) against its baseline."""

    warmup: int = Field(default=300, ge=30)
    window: int = Field(default=200, ge=20)
    alpha: float = Field(default=1e-6, gt=0, lt=1, description="p-value below which the mix moved")
    min_tv: float = Field(default=0.15, gt=0, le=1, description="and total-variation distance at least")
    memory: int = Field(default=5000, ge=100)
    max_categories: int = Field(default=24, ge=2, le=256)


class CentroidShiftSettings(_Strict):
    """Cosine distance of window centroids of completion embeddings from the baseline."""

    warmup: int = Field(default=128, ge=16, description="embeddings that form the baseline centroid")
    window: int = Field(default=64, ge=8)
    ratio: float = Field(default=3.0, gt=1, description="alarm when distance > ratio * its null mean")
    consecutive: int = Field(default=2, ge=1, description="windows in a row above the ratio")
    null_windows: int = Field(default=4, ge=1, description="windows that learn the null mean first")
    memory: int = Field(default=2000, ge=64)


class SeverityRules(_Strict):
    """How severe an unowned behaviour change is, by which and how many signals moved."""

    default: SeverityName = "warning"
    critical_if_signals_at_least: int = Field(default=3, ge=1)
    critical_signals: tuple[str, ...] = ("error_rate", "refusal_rate")
    info_only_signals: tuple[str, ...] = ("latency", "ttft")
    identity_change_at_least: SeverityName = Field(
        default="warning", description="floor when a serving or component version changed unregistered")
    count_also_moving: bool = Field(
        default=True, description="signals with partial evidence at emission count for severity")
    owned: SeverityName = "info"


class ChangeSettings(_Strict):
    """``UnownedChangeDetector``: behaviour fingerprint, change points, attribution."""

    signals: tuple[str, ...] = (
        "output_tokens",
        "latency",
        "ttft",
        "error_rate",
        "refusal_rate",
        "finish_reasons",
        "tool_calls",
        "embedding_centroid",
    )
    mean_shift: MeanShiftSettings = MeanShiftSettings()
    # Latency follows load, which has a daily cycle: a shorter memory tracks it without lag,
    # and a wider allowance ignores what is left (serving changes move latency a lot).
    latency_shift: MeanShiftSettings = MeanShiftSettings(memory=1500, memory_s=900.0, k=0.75)
    rate_shift: RateShiftSettings = RateShiftSettings()
    mix_shift: MixShiftSettings = MixShiftSettings()
    centroid_shift: CentroidShiftSettings = CentroidShiftSettings()
    settle_s: float = Field(
        default=120.0, ge=0, description="after the first signal fires, wait this long (event time) "
        "for other signals and for late ledger events, then emit one finding",
    )
    lookback_s: float = Field(default=3600.0, ge=0, description="ledger events this long before the "
                              "change point may explain it")
    explaining_kinds: tuple[str, ...] = (
        "model", "deployment", "prompt", "guardrail_policy", "retrieval_index", "toolset",
        "routing_config",
    )
    identity_min_tv: float = Field(default=0.3, gt=0, le=1, description="an identity field (fingerprint, "
                                   "prompt version ...) changed when its recent mix is this far")
    identity_fast_samples: int = Field(default=50, ge=5, description="memory of the recent identity mix")
    severity: SeverityRules = SeverityRules()


_WATCHED_FIELDS: dict[str, SeverityName] = {
    "prompt": "warning",
    "guardrail_policy": "warning",
    "retrieval_index": "warning",
    "toolset": "warning",
    "model_version": "warning",
    "deployment": "warning",
    # Providers rotate fingerprints routinely; a new one alone is worth a note, not a page.
    "system_fingerprint": "info",
}


class VersionSettings(_Strict):
    """``VersionWatcher``: versions seen in traffic that the ledger does not know."""

    learn_s: float = Field(default=3600.0, ge=0, description="versions seen this long after the watcher "
                           "starts are the baseline, not changes")
    grace_s: float = Field(default=600.0, ge=0, description="a change event may arrive this long (event "
                           "time) after the version is first seen in traffic")
    lookback_s: float = Field(default=3600.0, ge=0, description="a serving change (model, deployment, "
                              "routing) this long before a new provider identity explains it")
    fields: dict[str, SeverityName] = Field(
        default_factory=lambda: dict(_WATCHED_FIELDS),
        description="identity fields watched, with the severity of an unregistered version",
    )
    max_versions: int = Field(default=4096, ge=16)


class ComponentSettings(_Strict):
    """``UnownedComponentTracker``: components with no owner in the registry."""

    kinds: tuple[str, ...] = (
        "route", "application", "model", "deployment", "prompt", "guardrail_policy",
        "retrieval_index", "toolset",
    )
    severity: SeverityName = "warning"
    max_components: int = Field(default=10_000, ge=16)


class LedgerSettings(_Strict):
    """``ChangeLedger``: how much of the change topic stays indexed."""

    retention_s: float = Field(default=30 * 86400.0, gt=0)
    max_entries: int = Field(default=20_000, ge=16)
    max_versions: int = Field(default=100_000, ge=16, description="registered (kind, id, version) "
                              "remembered after their entries expire")


class OwnershipSettings(_Strict):
    """The whole ``ownership:`` section."""

    version: str = "1"
    registry_path: str = "deploy/config/owners.yaml"
    components: ComponentSettings = ComponentSettings()
    versions: VersionSettings = VersionSettings()
    change: ChangeSettings = ChangeSettings()
    ledger: LedgerSettings = LedgerSettings()
    breaker_min_severity: SeverityName = Field(
        default="critical", description="unowned changes at or above this feed the breaker")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> OwnershipSettings:
        """Build from a parsed config; accepts the file root (with ``ownership:``) or the section."""
        data = dict(data or {})
        section = data.get("ownership", data)
        if "ownership" in data and "version" in data and "version" not in section:
            section = {**section, "version": str(data["version"])}
        try:
            return cls.model_validate(section)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "ownership." + ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{where}: {first['msg']} (fix that key in the config)") from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> OwnershipSettings:
        """Load the ``ownership:`` section of a YAML file (missing section = defaults)."""
        return cls.from_mapping(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
