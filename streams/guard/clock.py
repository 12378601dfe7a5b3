"""Producer event time, bounded by the worker's clock before it drives anything.

Cooldowns, windows, TTLs and ClickHouse's daily partitions all run on event time, which a
producer chooses. A trace dated 2100 with a leaked token would keep its route's breaker
open for decades (the cooldown ends at ``at + cooldown``, the breaker's timer runs on the
worker's clock); a trace dated 1970 would reopen nothing (its cooldown ended long ago), land
in a partition past its TTL and be dropped at the next merge.

So every event time is clamped into ``[received - max_age_s, received + skew_s]``:
``skew_s`` (``WARDEN_EVENT_TIME_SKEW_S``, 300 s) allows for clock skew between producers
and workers, ``max_age_s`` (``WARDEN_EVENT_TIME_MAX_AGE_S``, 7 days) for late backfill. A
clamped trace keeps the time it reported in ``metadata["warden.reported_timestamp"]``, and
the worker counts it (``warden_event_time_clamped_total``).

The breaker decides on the worker's clock itself (:func:`decision_time`): a finding is
never later than now, so a cooldown never outlasts its configured length.

>>> bounds = EventTimeBounds(skew_s=300.0, max_age_s=3600.0)
>>> bounds.clamp(4102444800.0, received=10_000.0)   # 2100-01-01
(10300.0, 'future')
>>> bounds.clamp(0.0, received=10_000.0)
(6400.0, 'past')
>>> bounds.clamp(9_000.0, received=10_000.0)
(9000.0, None)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from streams.records import MAX_METADATA_KEYS, InferenceTrace

REPORTED = "warden.reported_timestamp"
Direction = Literal["future", "past"]


@dataclass(frozen=True, slots=True)
class EventTimeBounds:
    skew_s: float = 300.0
    max_age_s: float = 7 * 86_400.0

    def clamp(self, at: float, *, received: float) -> tuple[float, Direction | None]:
        """``at`` (epoch seconds) clamped into the bounds around ``received``, and which
        bound it crossed (None when inside). A non-finite ``at`` counts as the far future."""
        if not math.isfinite(at) or at > received + self.skew_s:
            return received + self.skew_s, "future"
        if at < received - self.max_age_s:
            return received - self.max_age_s, "past"
        return at, None


def clamp_trace_time(trace: InferenceTrace, bounds: EventTimeBounds, *, received: float) -> Direction | None:
    """Clamp ``trace.timestamp`` in place, recording the reported time; the direction
    when it was clamped."""
    at, direction = bounds.clamp(trace.timestamp.timestamp(), received=received)
    if direction is None:
        return None
    # Metadata is bounded (MAX_METADATA_KEYS): a full map loses the forensic note, never the clamp.
    if len(trace.metadata) < MAX_METADATA_KEYS or REPORTED in trace.metadata:
        trace.metadata[REPORTED] = trace.timestamp.isoformat()
    trace.timestamp = datetime.fromtimestamp(at, UTC)
    return direction


def decision_time(at: float, bounds: EventTimeBounds, *, now: float) -> tuple[float, Direction | None]:
    """The time a breaker decision about a finding dated ``at`` is made at: never after the
    worker's ``now`` (no skew here: the breaker's timer reads ``now``, so a finding from
    ahead of it would lengthen the cooldown) and never older than ``max_age_s``.

    >>> decision_time(4102444800.0, EventTimeBounds(), now=1000.0)
    (1000.0, 'future')
    """
    if not math.isfinite(at) or at > now:
        return now, "future"
    if at < now - bounds.max_age_s:
        return now - bounds.max_age_s, "past"
    return at, None
