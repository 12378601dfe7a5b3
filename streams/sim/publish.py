"""Publish a simulated day to Kafka, event time compressed by ``speedup``.

Traces go out in timestamp order; trace ``i`` is due ``(t_i - start) / speedup`` seconds of
wall time after publishing began (``speedup=0``: as fast as the producer goes). Registered
changes of the day go to the change ledger first, as a CI pipeline would have published
them before the rollout.

Caveat (issue 19, not done here): the worker's detectors judge trace timestamps, but two of
its clocks are still wall time: the version watcher's learning period starts at the
worker's start, and the breaker dates decisions no later than the worker's clock. A day
published faster than real time is therefore judged like the day itself by ``warden
replay`` (``warden sim day``), not yet by the running worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from streams.config import WardenSettings
from streams.sim.day import SimDay


def aligned_start(hours: float, now: float | None = None) -> float:
    """A start for a day published now: in the past (the worker's event clock never runs
    ahead of wall time) and aligned to its own length (budget periods of ``hours`` then
    hold the whole day)."""
    length = hours * 3600
    now = time.time() if now is None else now
    return (now - length) // length * length


def publish_changes(settings: WardenSettings, day: SimDay) -> int:
    from streams.changes import ChangePublisher
    from streams.records import ChangeEvent

    changes = day.changes()
    if changes:
        publisher = ChangePublisher(settings)
        for change in changes:
            publisher.publish(ChangeEvent.model_validate(change))
    return len(changes)


def publish_day(settings: WardenSettings, day: SimDay, *, speedup: float, console: Console | None = None,
                on_progress: Callable[[int, float], None] | None = None,
                backlog: Callable[[], int] | None = None, max_backlog: int = 1000) -> dict[str, Any]:
    """Publish every trace of ``day``; returns counts and seconds. ``on_progress(sent,
    event_time)`` is called every 200 traces.

    With ``backlog`` (the worker's consumer lag), publishing pauses while more than
    ``max_backlog`` records wait, and the schedule moves on by the pause: a machine slower
    than ``speedup`` asks for then gets the whole day at the pace it keeps, instead of a
    backlog the drift stage sheds (and a test or demo that misses what it was shown)."""
    from streams.publisher import TracePublisher

    traces = day.traces()
    changes = publish_changes(settings, day)
    publisher = TracePublisher(settings.kafka_bootstrap, settings.topic("traces.raw.v1"), security=settings.security)
    progress = Progress(TextColumn("sim"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, disable=console is None, transient=False)
    started = time.monotonic()
    first = started
    with progress:
        task = progress.add_task("traces", total=len(traces))
        for i, trace in enumerate(traces):
            if speedup > 0:
                delay = started + (_epoch(trace["timestamp"]) - day.start) / speedup - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if backlog is not None and i % 200 == 0:
                started += _wait_for_backlog(backlog, max_backlog)
            publisher.publish(trace)
            if i % 200 == 0:
                progress.update(task, completed=i + 1)
                if on_progress is not None:
                    on_progress(i + 1, _epoch(trace["timestamp"]))
        progress.update(task, completed=len(traces))
    left = publisher.close()
    paused = started - first
    return {"valid": len(traces), "malformed": 0, "changes": changes, "undelivered": left,
            **publisher.stats.as_dict(), "seconds": round(time.monotonic() - first, 2),
            "paused_s": round(paused, 2)}


def _wait_for_backlog(backlog: Callable[[], int], limit: int, poll_s: float = 0.5,
                      stall_s: float = 300.0) -> float:
    """Seconds spent waiting until ``backlog()`` is at most ``limit`` (0 when it already is).
    Progress-based: it waits as long as the backlog keeps shrinking, and raises
    ``RuntimeError`` when it has not shrunk for ``stall_s``."""
    began = moved = time.monotonic()
    lowest = backlog()
    while lowest > limit:
        time.sleep(poll_s)
        now_waiting = backlog()
        if now_waiting < lowest:
            lowest, moved = now_waiting, time.monotonic()
        elif time.monotonic() - moved > stall_s:
            raise RuntimeError(f"the worker consumed nothing for {stall_s:.0f} s ({now_waiting} records waiting): "
                               "is it running? see its log")
    return time.monotonic() - began


def _epoch(iso: str) -> float:
    from streams.sim.day import _epoch as parse

    return parse(iso)
