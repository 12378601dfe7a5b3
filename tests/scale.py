"""How much traffic a test sends: one setting, two tiers, one copy of each test.

``WARDEN_TEST_SCALE`` picks the tier:

- ``ci`` (the default; ``make test``): small volumes, hundreds to a few thousand traces,
  so every kind of guarantee runs on every change within CI's budget;
- ``long`` (``make test-long``): production volumes (kill -9 five times over 50,000
  traces, ...) and the tests that only make sense there (marked ``long``).

A test asks ``volume(ci=..., long=...)`` and asserts the same properties at either size.
"""

from __future__ import annotations

import os

TIERS = ("ci", "long")
TIER = os.environ.get("WARDEN_TEST_SCALE", "ci").strip().lower() or "ci"
if TIER not in TIERS:
    raise RuntimeError(f"WARDEN_TEST_SCALE={TIER!r}: use one of {', '.join(TIERS)}")

LONG = TIER == "long"


def volume(*, ci: int, long: int) -> int:
    """The count for the current tier (traces, kills, rounds, ...)."""
    return long if LONG else ci


def seconds(*, ci: float, long: float) -> float:
    """A stretch of traffic time for the current tier (an outage's length, a soak's)."""
    return long if LONG else ci
