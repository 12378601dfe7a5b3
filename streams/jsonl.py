"""JSON lines of ``{"text": ...}`` records, as the text-level CLIs read them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO


def text_records(source: TextIO, bad: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, record)`` for every object with a string ``text``; blank lines
    are skipped and the numbers (1-based) of other lines are appended to ``bad``."""
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad.append(number)
            continue
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            bad.append(number)
            continue
        yield number, record
