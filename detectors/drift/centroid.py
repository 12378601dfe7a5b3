"""Always-on centroid shift: the latest few embeddings' mean against the reference mean.

The statistic is ``D = ‖x̄_W − x̄_R‖²`` over a sliding window of ``w`` items, checked on every
item (an O(d) update). It is the linear-kernel MMD, the cheap companion of the RBF test, and
it moves as the cosine distance between the two centroids does (reported as evidence).

Threshold. With the window and the reference drawn from the same distribution,
``x̄_W − x̄_R ≈ N(0, Σ (1/w + 1/n))``, so ``D`` is a weighted sum of χ²₁ variables with weights
``λ_j (1/w + 1/n)`` (``λ_j`` the reference covariance eigenvalues). Its upper tail comes from
the Lugannani–Rice saddlepoint approximation (Kuonen, "Saddlepoint approximations for
distributions of quadratic forms in normal variables", Biometrika 86, 1999), which is accurate
far into the tail where moment matching is not. The threshold is the ``1 − alpha`` quantile,
with ``alpha`` per item; see ``docs/DRIFT.md`` for how ``alpha`` follows from the expected run
length.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats


def quadratic_form_sf(weights: np.ndarray, x: float) -> float:
    """``P(Σ w_j Z_j² > x)`` for i.i.d. standard normal ``Z_j`` (saddlepoint).

    >>> round(quadratic_form_sf(np.ones(4), 9.4877), 3)  # chi2(4) upper 5% point
    0.05
    """
    lam = np.asarray(weights, dtype=np.float64)
    lam = lam[lam > 1e-15 * lam.max()]
    mean, sd = lam.sum(), np.sqrt(2.0 * np.sum(lam**2))
    if x <= mean + 0.05 * sd:  # Lugannani–Rice is 0/0 at the mean; the body is near normal
        return float(stats.norm.sf((x - mean) / sd))
    s_max = 0.5 / lam.max()

    def k1(s: float) -> float:
        return float(np.sum(lam / (1.0 - 2.0 * lam * s))) - x

    s = optimize.brentq(k1, 0.0, s_max * (1.0 - 1e-12), xtol=1e-14)
    k0 = -0.5 * np.sum(np.log1p(-2.0 * lam * s))
    k2 = np.sum(2.0 * lam**2 / (1.0 - 2.0 * lam * s) ** 2)
    w = np.sqrt(max(2.0 * (s * x - k0), 1e-300))
    u = s * np.sqrt(k2)
    return float(min(max(stats.norm.sf(w) + stats.norm.pdf(w) * (1.0 / u - 1.0 / w), 0.0), 1.0))


def quadratic_form_isf(weights: np.ndarray, alpha: float) -> float:
    """The ``x`` with ``P(Σ w_j Z_j² > x) = alpha``.

    >>> round(quadratic_form_isf(np.ones(4), 0.05), 2)
    9.49
    """
    lam = np.asarray(weights, dtype=np.float64)
    if float(lam.max(initial=0.0)) <= 1e-12:
        # A reference with no spread (one repeated text): any distance at all is a shift.
        return 0.0
    lo = float(lam.sum())
    if quadratic_form_sf(lam, lo) <= alpha:
        raise ValueError(f"alpha={alpha} is not a tail probability; use alpha < 0.5")
    hi = lo + 10.0 * float(lam.max())
    while quadratic_form_sf(lam, hi) > alpha:
        hi = lo + 2.0 * (hi - lo)
    return float(optimize.brentq(lambda x: quadratic_form_sf(lam, x) - alpha, lo, hi, xtol=1e-12))


class CentroidShiftMonitor:
    """Sliding-window centroid shift against a reference, checked on every item.

    Parameters
    ----------
    reference
        ``(n, d)`` reference embeddings.
    window_size
        Items in the sliding window ``w``: smaller reacts faster to abrupt shifts, larger
        sees smaller ones.
    alpha
        False-alarm probability per check (per item) on a stable stream.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> monitor = CentroidShiftMonitor(rng.normal(size=(500, 16)), window_size=20, alpha=1e-5)
    >>> any(monitor.update(v)[0] for v in rng.normal(size=(300, 16)))
    False
    >>> [monitor.update(v)[0] for v in rng.normal(loc=1.0, size=(20, 16))][-1]
    True
    """

    def __init__(self, reference: np.ndarray, window_size: int = 40, alpha: float = 5e-6) -> None:
        ref = np.asarray(reference, dtype=np.float64)
        if ref.ndim != 2 or ref.shape[0] <= window_size:
            raise ValueError(
                f"reference must be (n, d) with n > window_size={window_size}, got {ref.shape}"
            )
        self.window_size = int(window_size)
        self.alpha = float(alpha)
        self.center = ref.mean(axis=0)
        eig = np.clip(np.linalg.eigvalsh(np.cov(ref, rowvar=False)), 0.0, None)
        self.weights = eig * (1.0 / window_size + 1.0 / ref.shape[0])
        self.threshold = quadratic_form_isf(self.weights, self.alpha)
        self._window = np.zeros((window_size, ref.shape[1]))
        self._sum = np.zeros(ref.shape[1])
        self._count = 0

    def reset(self) -> None:
        """Forget the window (after an alert, or a reference refresh)."""
        self._window[:] = 0.0
        self._sum[:] = 0.0
        self._count = 0

    def load_window(self, vectors: np.ndarray) -> None:
        """Refill the window from the latest items (oldest first), e.g. after a restore."""
        self.reset()
        for v in np.asarray(vectors, dtype=np.float64)[-self.window_size :]:
            self.update(v)

    def update(self, vector: np.ndarray) -> tuple[bool, float]:
        """Add one item; returns ``(over_threshold, D)`` (``D`` is 0 until the window is full)."""
        slot = self._count % self.window_size
        v = np.asarray(vector, dtype=np.float64)
        self._sum += v - self._window[slot]
        self._window[slot] = v
        self._count += 1
        if self._count < self.window_size:
            return False, 0.0
        if self._count % 4096 == 0:  # bound floating-point drift of the running sum
            self._sum = self._window.sum(axis=0)
        score = self.score()
        return score > self.threshold, score

    @property
    def full(self) -> bool:
        """Whether the window holds ``window_size`` items."""
        return self._count >= self.window_size

    def score(self) -> float:
        """Current ``D = ‖x̄_W − x̄_R‖²`` (meaningful once ``full``)."""
        diff = self._sum / self.window_size - self.center
        return float(diff @ diff)

    def p_value(self, score: float) -> float:
        """Null tail probability of a window statistic ``score``."""
        return quadratic_form_sf(self.weights, score)

    def cosine_distance(self) -> float:
        """``1 − cos`` between the window centroid and the reference centroid."""
        mean = self._sum / self.window_size
        denom = float(np.linalg.norm(mean) * np.linalg.norm(self.center)) or 1.0
        return float(1.0 - mean @ self.center / denom)
