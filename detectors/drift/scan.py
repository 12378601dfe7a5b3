"""Text-level drift scan: ordered (stream, embedding) pairs in, detection records out.

The engine behind ``warden drift scan``: one ``EmbeddingDriftDetector`` per stream, fed in
input order; each detection becomes ``{"stream", "index", "score", "p_value", "detector"}``
where ``index`` is the 0-based input line at which drift was declared.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from detectors.drift.config import EmbeddingDriftConfig
from detectors.drift.embedding import EmbeddingDriftDetector


class StreamDriftScan:
    """Per-stream embedding drift over an ordered sequence of records.

    Feed it batches as they are encoded (``feed``); it keeps each stream's detector between
    batches, so the result does not depend on the batch size.

    Examples
    --------
    >>> from detectors.drift.config import ReferenceConfig
    >>> cfg = EmbeddingDriftConfig(reference=ReferenceConfig(size=100), window_size=20,
    ...                            test_every=20, n_permutations=2000, expected_run_length=10_000)
    >>> scan = StreamDriftScan(cfg)
    >>> rng = np.random.default_rng(3)
    >>> vectors = np.vstack([rng.normal(size=(300, 4)), rng.normal(2.0, 1.0, size=(60, 4))])
    >>> hits = list(scan.feed(["a"] * 360, vectors))
    >>> hits[0]["stream"], 300 <= hits[0]["index"] < 330, hits[0]["detector"] in {"mmd", "centroid"}
    ('a', True, True)
    """

    def __init__(self, config: EmbeddingDriftConfig | None = None, config_version: str = "") -> None:
        self.config = config or EmbeddingDriftConfig()
        self.config_version = config_version
        self.detectors: dict[str, EmbeddingDriftDetector] = {}
        self.index = 0

    def feed(
        self, streams: Sequence[str], vectors: np.ndarray, indices: Sequence[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Process the next records in input order; yields one dict per detection.

        ``indices`` are the records' input line numbers (0-based); by default records are
        numbered consecutively across calls.
        """
        if indices is None:
            indices = range(self.index, self.index + len(streams))
        for stream, vector, index in zip(streams, vectors, indices, strict=True):
            det = self.detectors.get(stream)
            if det is None:
                det = EmbeddingDriftDetector(self.config, {"stream": stream}, self.config_version)
                self.detectors[stream] = det
            finding = det.update(vector, item_id=str(index), at=float(index))
            if finding is not None:
                yield {
                    "stream": stream,
                    "index": int(index),
                    "score": float(finding.score),
                    "p_value": float(finding.evidence["p_value"]),
                    "detector": finding.evidence["test"],
                }
            self.index = int(index) + 1
