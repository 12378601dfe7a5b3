"""Drift detectors: embedding drift (MMD² + centroid shift + novelty count) and scalar drift (river).

Pure: vectors and numbers in, ``detectors.findings.Finding`` out. See ``docs/DRIFT.md``.
"""

from typing import TYPE_CHECKING

from detectors.drift.centroid import CentroidShiftMonitor
from detectors.drift.config import (
    CentroidConfig,
    DriftConfig,
    EmbeddingDriftConfig,
    EncoderConfig,
    NoveltyConfig,
    ReferenceConfig,
    SamplingConfig,
    ScalarDriftConfig,
    SignalConfig,
)
from detectors.drift.embedding import EmbeddingDriftDetector
from detectors.drift.novelty import NoveltyMonitor
from detectors.drift.sampling import RiskSampler
from detectors.drift.scalar import ScalarDrift, ScalarDriftMonitor
from detectors.drift.scan import StreamDriftScan

if TYPE_CHECKING:
    from detectors.drift.mmd import MMDPermutationTest, MMDResult

__all__ = [
    "CentroidConfig",
    "CentroidShiftMonitor",
    "DriftConfig",
    "EmbeddingDriftConfig",
    "EmbeddingDriftDetector",
    "EncoderConfig",
    "MMDPermutationTest",
    "MMDResult",
    "NoveltyConfig",
    "NoveltyMonitor",
    "ReferenceConfig",
    "RiskSampler",
    "SamplingConfig",
    "ScalarDrift",
    "ScalarDriftConfig",
    "ScalarDriftMonitor",
    "SignalConfig",
    "StreamDriftScan",
]


def __getattr__(name: str) -> object:
    # The MMD test runs on torch: imported on first use, so a worker without embedding drift
    # never loads torch (about 10 CPU seconds of start-up on a small machine).
    if name in ("MMDPermutationTest", "MMDResult"):
        from detectors.drift import mmd

        return getattr(mmd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
