"""MMD² permutation test: exact against a brute-force loop, calibrated, same on every device."""

from __future__ import annotations

import numpy as np
import torch

from detectors.drift.mmd import MMDPermutationTest


def brute_force(test: MMDPermutationTest, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Alibi-style: one full pass over the pooled kernel matrix per permutation."""
    n, m = len(x), len(y)
    pooled = torch.tensor(np.vstack([x, y]), dtype=torch.float32)
    k = test.kernel(pooled, pooled).double()
    k.fill_diagonal_(0.0)

    def mmd2(xi: torch.Tensor, yi: torch.Tensor) -> float:
        return float(k[xi][:, xi].sum() / (n * (n - 1)) + k[yi][:, yi].sum() / (m * (m - 1))
                     - 2 * k[xi][:, yi].mean())

    observed = mmd2(torch.arange(n), torch.arange(n, n + m))
    exceed = 0
    for perm in test._permutations(m):
        rest = torch.ones(n + m, dtype=torch.bool)
        rest[perm] = False
        exceed += mmd2(torch.arange(n + m)[rest], perm) >= observed
    return observed, (1 + exceed) / (1 + test.n_permutations)


def test_statistic_and_p_value_equal_the_brute_force_loop() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 6)), rng.normal(0.15, 1.0, size=(30, 6))
    test = MMDPermutationTest(x, n_permutations=200, chunk_size=64)
    result = test.test(y)
    observed, p_value = brute_force(test, x, y)
    assert abs(result.mmd2 - observed) < 1e-6
    assert result.p_value == p_value
    assert result.n_permutations == 200 and result.n_reference == 120 and result.n_current == 30


def test_p_values_are_calibrated_under_no_drift() -> None:
    rng = np.random.default_rng(1)
    test = MMDPermutationTest(rng.normal(size=(300, 5)), n_permutations=200, seed=3)
    p = np.array([test.test(rng.normal(size=(40, 5))).p_value for _ in range(200)])
    assert 0.03 <= np.mean(p <= 0.1) <= 0.18  # nominal 0.1, binomial sd 0.02
    assert 0.35 <= np.mean(p) <= 0.65


def test_early_stop_reaches_the_same_decision_as_the_full_run() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(200, 4))
    full = MMDPermutationTest(ref, n_permutations=1000, alpha=None)
    early = MMDPermutationTest(ref, n_permutations=1000, alpha=0.002, chunk_size=100)
    for shift in (0.0, 0.0, 0.3, 0.6, 1.0):
        y = rng.normal(shift, 1.0, size=(40, 4))
        a, b = full.test(y), early.test(y)
        assert (a.p_value <= 0.002) == (b.p_value <= 0.002)
        assert a.mmd2 == b.mmd2
    assert early.test(rng.normal(size=(40, 4))).n_permutations < 1000


def test_critical_value_separates_rejections() -> None:
    rng = np.random.default_rng(4)
    test = MMDPermutationTest(rng.normal(size=(200, 4)), n_permutations=999, alpha=0.01)
    result = test.test(rng.normal(0.8, 1.0, size=(40, 4)))
    assert result.p_value <= 0.01 and result.mmd2 > result.critical_value


def test_moved_items_are_the_shifted_ones() -> None:
    rng = np.random.default_rng(5)
    test = MMDPermutationTest(rng.normal(size=(300, 4)), n_permutations=100)
    y = rng.normal(size=(40, 4))
    y[:6] = rng.normal(3.0, 0.3, size=(6, 4))  # a new, tight topic: six items
    result = test.test(y, top_k=6)
    assert set(result.moved) == set(range(6))


def test_cpu_and_gpu_give_the_same_scores() -> None:
    # Same code, another device: every available device must agree with the CPU.
    rng = np.random.default_rng(6)
    ref, cur = rng.normal(size=(400, 16)), rng.normal(0.1, 1.0, size=(80, 16))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = [MMDPermutationTest(ref, n_permutations=500, device=d).test(cur) for d in devices]
    results.append(MMDPermutationTest(ref, n_permutations=500, device="cpu", chunk_size=500).test(cur))
    for other in results[1:]:
        assert abs(other.mmd2 - results[0].mmd2) < 1e-5
        assert abs(other.p_value - results[0].p_value) <= 3 / 501  # ties may flip in float32
