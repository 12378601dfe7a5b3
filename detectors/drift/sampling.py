"""Deterministic per-risk-class sampling of items for the encoder."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping


class RiskSampler:
    """Decide whether an item is encoded, by risk class, reproducibly.

    An item is kept when a hash of ``salt + item_id`` (uniform in [0, 1)) falls below its
    class's rate, so a replay of the same traces keeps exactly the same items, and a trace's
    prompt and completion are kept or dropped together.

    Parameters
    ----------
    rates
        Risk class → share of items kept, in [0, 1].
    default_rate
        Share for classes not in ``rates``.
    salt
        Changes which items are picked without changing how many.

    Examples
    --------
    >>> sampler = RiskSampler({"low": 0.1, "high": 1.0})
    >>> sampler.keep("trace-42", "high")
    True
    >>> kept = sum(sampler.keep(f"t{i}", "low") for i in range(10_000))
    >>> 850 < kept < 1150
    True
    >>> sampler.keep("t7", "low") == RiskSampler({"low": 0.1}).keep("t7", "low")
    True
    """

    def __init__(
        self, rates: Mapping[str, float], default_rate: float = 1.0, salt: str = "warden-drift"
    ) -> None:
        for risk, rate in {**rates, "<default>": default_rate}.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"sampling rate for {risk!r} is {rate}; it must be in [0, 1]")
        self.rates = dict(rates)
        self.default_rate = default_rate
        self.salt = salt

    def rate(self, risk_class: str | None) -> float:
        """The keep rate for ``risk_class`` (``None`` → default)."""
        if risk_class is None:
            return self.default_rate
        return self.rates.get(risk_class, self.default_rate)

    def keep(self, item_id: str, risk_class: str | None = None) -> bool:
        """Whether to encode this item."""
        rate = self.rate(risk_class)
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        digest = hashlib.blake2b(f"{self.salt}:{item_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < rate
