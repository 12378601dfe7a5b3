"""Drift detectors: embedding drift (MMD² + centroid shift + novelty count) and scalar drift (river).

Pure: vectors and numbers in, ``detectors.findings.Finding`` out. See ``docs/DRIFT.md``.
"""

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
from detectors.drift.mmd import MMDPermutationTest, MMDResult
from detectors.drift.novelty import NoveltyMonitor
from detectors.drift.sampling import RiskSampler
from detectors.drift.scalar import ScalarDrift, ScalarDriftMonitor
from detectors.drift.scan import StreamDriftScan

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
