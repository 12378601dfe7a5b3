"""The versioned price catalog (``deploy/config/prices.yaml``) and its lookup.

Each entry prices one provider's model (an exact name or a glob such as
``gpt-4o-mini-*``) per million tokens over ``[effective_from, effective_to)``. A new
entry for the same model is a price change, and the catalog turns it into a
:class:`~detectors.cost.values.ChangeEvent` so a cost regression can name it.
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from detectors.cost.values import ChangeEvent, TokenPrice
from detectors.yaml_config import load_yaml_model

_GLOB_CHARS = set("*?[")
_LOOKUP_CACHE_MAX = 4096


def _epoch(value: datetime | date | None) -> float | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class PriceEntry(BaseModel):
    """One price of one model over a period (US dollars per million tokens).

    ``cached_input_per_mtok`` defaults to the input price (no cache discount).
    ``cached_included_in_input`` says whether the provider counts cache reads inside
    ``input_tokens`` (OpenAI: yes; Anthropic: no).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    cached_included_in_input: bool = True
    effective_from: datetime | date
    effective_to: datetime | date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PriceEntry:
        start, end = _epoch(self.effective_from), _epoch(self.effective_to)
        if end is not None and start is not None and end <= start:
            raise ValueError(
                f"price entry {self.provider}/{self.model}: effective_to ({self.effective_to}) "
                f"must be after effective_from ({self.effective_from}); fix the dates"
            )
        return self

    @property
    def start_s(self) -> float:
        return _epoch(self.effective_from) or 0.0

    @property
    def end_s(self) -> float:
        end = _epoch(self.effective_to)
        return float("inf") if end is None else end

    @property
    def is_glob(self) -> bool:
        return any(c in _GLOB_CHARS for c in self.model)

    @property
    def key(self) -> str:
        """Stable id of this price: provider/model@effective_from."""
        return f"{self.provider}/{self.model}@{self.effective_from.isoformat()}"

    @property
    def price(self) -> TokenPrice:
        cached = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        return TokenPrice(self.input_per_mtok, self.output_per_mtok, cached)


class PriceCatalog(BaseModel):
    """All prices, versioned: ``version`` is stored with every cost finding.

    >>> cat = PriceCatalog.model_validate({"version": "p1", "currency": "USD", "entries": [
    ...     {"provider": "openai", "model": "gpt-4o", "input_per_mtok": 2.5,
    ...      "output_per_mtok": 10.0, "effective_from": "2024-01-01"},
    ...     {"provider": "openai", "model": "gpt-4o", "input_per_mtok": 3.0,
    ...      "output_per_mtok": 12.0, "effective_from": "2025-01-01"}]})
    >>> cat.lookup("openai", "gpt-4o", at=1_720_000_000).input_per_mtok   # mid-2024
    2.5
    >>> cat.lookup("openai", "gpt-4o", at=1_740_000_000).input_per_mtok   # 2025
    3.0
    >>> cat.lookup("openai", "o3", at=1_740_000_000) is None
    True
    """

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1)
    currency: str = "USD"
    entries: list[PriceEntry] = Field(default_factory=list)
    _cache: dict[tuple[str, str], list[int]] = PrivateAttr(default_factory=dict)
    _ends: dict[int, float] = PrivateAttr(default_factory=dict)  # implicit effective_to

    @field_validator("currency")
    @classmethod
    def _usd(cls, v: str) -> str:
        if v.upper() != "USD":
            raise ValueError(
                f"currency {v!r} is not supported: traces report cost_usd and budgets are in "
                "USD; convert the catalog's prices to USD"
            )
        return "USD"

    @model_validator(mode="after")
    def _no_overlap(self) -> PriceCatalog:
        """An open-ended entry ends where the next one of the same model starts; an explicit
        ``effective_to`` past the next start is a contradiction."""
        by_model: dict[tuple[str, str], list[int]] = {}
        for i, e in enumerate(self.entries):
            by_model.setdefault((e.provider, e.model), []).append(i)
        for (provider, model), idx in by_model.items():
            idx.sort(key=lambda i: self.entries[i].start_s)
            for i, j in zip(idx, idx[1:], strict=False):
                a, b = self.entries[i], self.entries[j]
                if b.start_s == a.start_s or (a.effective_to is not None and b.start_s < a.end_s):
                    raise ValueError(
                        f"price entries for {provider}/{model} overlap: {a.key} runs until "
                        f"{a.effective_to or 'forever'} and {b.key} starts before that; set the "
                        "older entry's effective_to at or before the newer effective_from"
                    )
                self._ends[i] = b.start_s
        return self

    def _candidates(self, provider: str, model: str) -> list[int]:
        key = (provider, model)
        found = self._cache.get(key)
        if found is None:
            es = self.entries
            exact = [i for i, e in enumerate(es) if e.provider == provider and e.model == model]
            globs = [
                i for i, e in enumerate(es)
                if e.provider == provider and e.is_glob and fnmatch.fnmatchcase(model, e.model)
            ]
            # Most specific glob first: the longest literal part wins.
            globs.sort(key=lambda i: -len(es[i].model.replace("*", "").replace("?", "")))
            found = exact + globs
            if len(self._cache) >= _LOOKUP_CACHE_MAX:
                self._cache.clear()
            self._cache[key] = found
        return found

    def lookup(self, provider: str, model: str, at: float) -> PriceEntry | None:
        """The entry pricing ``model`` at time ``at``: exact names before globs; else ``None``."""
        for i in self._candidates(provider, model):
            entry = self.entries[i]
            if entry.start_s <= at < min(entry.end_s, self._ends.get(i, float("inf"))):
                return entry
        return None

    def change_events(self) -> list[ChangeEvent]:
        """Every entry that replaces an earlier price of the same model, as a ledger event."""
        events = []
        seen: set[tuple[str, str]] = set()
        for e in sorted(self.entries, key=lambda e: e.start_s):
            if (e.provider, e.model) in seen:
                events.append(ChangeEvent("price", f"{e.provider}/{e.model}", self.version, e.start_s))
            seen.add((e.provider, e.model))
        return events


def load_price_catalog(path: str | Path) -> PriceCatalog:
    """Read and validate a price catalog YAML file; errors name the file and the field."""
    return load_yaml_model(path, PriceCatalog, "version, currency and entries")
