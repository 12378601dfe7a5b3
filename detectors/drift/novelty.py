"""Always-on novelty count: how many of the latest items have no close neighbour in the
reference.

An item's novelty is ``1 − max cos(x, r)`` over the reference. The reference's own
leave-one-out novelties fix a conformal cut ``τ`` (its ``k``-th largest value, ``k ≈ q(n+1)``),
so for a new item drawn like the reference ``P(novelty > τ) = π`` with ``π ~ Beta(k, n+1−k)``
over reference draws (Vovk et al., "Algorithmic Learning in a Random World", 2005). Given the
reference, the items of a window are independent, so the count ``C`` of items above ``τ``
among the latest ``w`` is exactly Beta-binomial(``w, k, n+1−k``) under no drift: its
threshold needs no normal approximation. A new topic (items far from everything seen) drives
``C`` up within a few dozen items; a shift among known topics moves it little, which is what
the centroid and MMD checks are for.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def leave_one_out_novelty(reference: np.ndarray, block: int = 1024) -> np.ndarray:
    """``1 − max_{j≠i} cos(r_i, r_j)`` for each reference row (rows need not be unit length)."""
    ref = _unit(reference)
    out = np.empty(len(ref))
    for start in range(0, len(ref), block):
        sims = ref[start : start + block] @ ref.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf
        out[start : start + block] = 1.0 - sims.max(axis=1)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class NoveltyMonitor:
    """Count of novel items among the latest ``window_size``, checked on every item.

    Parameters
    ----------
    reference
        ``(n, d)`` reference embeddings.
    window_size
        Items counted.
    quantile
        Share of reference items above the cut ``τ`` (the rate of "novel" items with no drift).
    alpha
        False-alarm probability per check (per item) with no drift.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> centers = rng.normal(size=(6, 32))
    >>> def topic(k, n): return centers[k] + 0.3 * rng.normal(size=(n, 32))
    >>> monitor = NoveltyMonitor(np.vstack([topic(k, 100) for k in range(5)]), 50, 0.05, 1e-5)
    >>> same_mix = rng.permutation(np.vstack([topic(k, 200) for k in range(5)]))
    >>> any(monitor.update(v)[0] for v in same_mix)
    False
    >>> hits = [monitor.update(v)[0] for v in topic(5, 40)]
    >>> hits.index(True) < 20
    True
    """

    def __init__(self, reference: np.ndarray, window_size: int = 100, quantile: float = 0.05,
                 alpha: float = 3e-6) -> None:
        self._reference = _unit(reference)
        n = len(self._reference)
        self.window_size = int(window_size)
        self.k = max(1, math.ceil(quantile * (n + 1)))
        loo = np.sort(leave_one_out_novelty(self._reference))[::-1]
        self.cut = float(loo[self.k - 1])
        self.null = stats.betabinom(self.window_size, self.k, n + 1 - self.k)
        # Smallest count c with P(C >= c) <= alpha.
        counts = np.arange(self.window_size + 2)
        tail = self.null.sf(counts - 1)
        over = np.flatnonzero(tail <= alpha)
        self.threshold = int(counts[over[0]]) if len(over) else self.window_size + 1
        self._flags = np.zeros(self.window_size, dtype=bool)
        self._count = 0
        self._seen = 0

    def novelty(self, vectors: np.ndarray) -> np.ndarray:
        """Novelty of each row of ``vectors`` (``(m, d)`` or ``(d,)``)."""
        sims = _unit(np.atleast_2d(vectors)) @ self._reference.T
        return 1.0 - sims.max(axis=1)

    def reset(self) -> None:
        """Forget the window."""
        self._flags[:] = False
        self._count = 0
        self._seen = 0

    def load_window(self, vectors: np.ndarray) -> None:
        """Refill the window from the latest items (oldest first), e.g. after a restore."""
        self.reset()
        for v in np.asarray(vectors)[-self.window_size :]:
            self.update(v)

    def update(self, vector: np.ndarray) -> tuple[bool, int]:
        """Add one item; returns ``(over_threshold, count)``."""
        flag = bool(self.novelty(vector)[0] > self.cut)
        slot = self._seen % self.window_size
        self._count += int(flag) - int(self._flags[slot])
        self._flags[slot] = flag
        self._seen += 1
        return self._count >= self.threshold, self._count

    @property
    def count(self) -> int:
        """Novel items among the latest ``window_size``."""
        return self._count

    def p_value(self, count: int) -> float:
        """``P(C >= count)`` with no drift."""
        return float(self.null.sf(count - 1))
