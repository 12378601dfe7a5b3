"""Drift scenarios from a labelled corpus, for tests, benchmarks and notebooks.

Each builder returns the order in which to replay corpus items (indices into the corpus,
each used at most once) and where the change starts. Pure numpy; no data is read here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Scenario:
    """A replay order over corpus items and the position where drift begins (None: stable)."""

    name: str
    order: np.ndarray
    change_at: int | None


class _Pools:
    def __init__(self, labels: Sequence[str], rng: np.random.Generator) -> None:
        arr = np.asarray(labels)
        self.rng = rng
        self.pools = {c: list(rng.permutation(np.flatnonzero(arr == c))) for c in np.unique(arr)}

    def draw(self, mix: Mapping[str, float]) -> int:
        cats = [c for c, w in mix.items() if w > 0 and self.pools.get(c)]
        if not cats:
            raise ValueError(f"corpus exhausted for mix {dict(mix)}: use shorter scenarios")
        weights = np.array([mix[c] for c in cats], dtype=float)
        cat = cats[self.rng.choice(len(cats), p=weights / weights.sum())]
        return int(self.pools[cat].pop())


def uniform_mix(categories: Sequence[str]) -> dict[str, float]:
    """Equal weight on each category."""
    return {c: 1.0 for c in categories}


def stable(labels: Sequence[str], length: int, mix: Mapping[str, float], seed: int = 0) -> Scenario:
    """No shift: ``length`` items drawn from ``mix`` throughout.

    >>> s = stable(["a", "b"] * 50, 60, {"a": 1, "b": 1})
    >>> len(s.order), len(set(s.order.tolist())), s.change_at
    (60, 60, None)
    """
    pools = _Pools(labels, np.random.default_rng(seed))
    return Scenario("stable", np.array([pools.draw(mix) for _ in range(length)]), None)


def abrupt(
    labels: Sequence[str], n_before: int, n_after: int,
    before: Mapping[str, float], after: Mapping[str, float], seed: int = 0,
) -> Scenario:
    """Topic mix ``before`` for ``n_before`` items, then ``after`` at once.

    >>> s = abrupt(list("ab") * 50, 40, 20, {"a": 1}, {"b": 1})
    >>> s.change_at, {["a", "b"][i % 2] for i in s.order[40:]}
    (40, {'b'})
    """
    pools = _Pools(labels, np.random.default_rng(seed))
    order = [pools.draw(before) for _ in range(n_before)] + [pools.draw(after) for _ in range(n_after)]
    return Scenario("abrupt", np.array(order), n_before)


def gradual(
    labels: Sequence[str], n_before: int, n_ramp: int, n_after: int,
    before: Mapping[str, float], after: Mapping[str, float], seed: int = 0,
) -> Scenario:
    """``before`` mix, then a linear blend into ``after`` over ``n_ramp`` items, then ``after``.

    Each item comes from ``after`` with probability rising from 0 to 1 along the ramp.
    """
    rng = np.random.default_rng(seed)
    pools = _Pools(labels, rng)
    order = [pools.draw(before) for _ in range(n_before)]
    for i in range(n_ramp):
        order.append(pools.draw(after if rng.random() < (i + 1) / (n_ramp + 1) else before))
    order += [pools.draw(after) for _ in range(n_after)]
    return Scenario("gradual", np.array(order), n_before)
