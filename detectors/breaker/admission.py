"""Pure admission rules a serving client applies locally: half-open sampling and staleness.

The BreakerClient (in ``streams/``) owns the connection; these functions own the
decision, so the rule is the same in the client, a test and a notebook.
"""

from __future__ import annotations

from typing import Literal

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
FailMode = Literal["open", "closed"]


def admit(state: str, probe_share: float, draw: float) -> bool:
    """Whether one request may pass a breaker in ``state``.

    Parameters
    ----------
    state
        ``"closed"``, ``"open"`` or ``"half_open"``.
    probe_share
        Share of traffic let through as probes while half-open, in [0, 1].
    draw
        A uniform random number in [0, 1) drawn by the caller per request (so the
        decision is local and testable).

    >>> admit("closed", 0.0, 0.99), admit("open", 1.0, 0.0)
    (True, False)
    >>> admit("half_open", 0.05, 0.01), admit("half_open", 0.05, 0.5)
    (True, False)
    """
    if state == CLOSED:
        return True
    if state == HALF_OPEN:
        return draw < probe_share
    if state == OPEN:
        return False
    raise ValueError(f"breaker state {state!r} unknown; expected closed, open or half_open")


def allow_when_stale(
    known_allow: bool, age_s: float, staleness_limit_s: float, fail_mode: FailMode
) -> bool:
    """What ``allow()`` answers given how old the client's view of the breaker is.

    Parameters
    ----------
    known_allow
        The answer from the last known state (e.g. :func:`admit`).
    age_s
        Seconds since the client last heard from the breaker topic (a negative age,
        from clock skew, counts as fresh).
    staleness_limit_s
        Past this age the last known state is no longer trusted.
    fail_mode
        ``"open"``: let traffic through past the limit (availability first);
        ``"closed"``: stop it (safety first).

    >>> allow_when_stale(False, age_s=5, staleness_limit_s=30, fail_mode="open")
    False
    >>> allow_when_stale(False, age_s=60, staleness_limit_s=30, fail_mode="open")
    True
    >>> allow_when_stale(True, age_s=60, staleness_limit_s=30, fail_mode="closed")
    False
    """
    if fail_mode not in ("open", "closed"):
        raise ValueError(f"fail_mode {fail_mode!r} unknown; use 'open' or 'closed'")
    if staleness_limit_s < 0:
        raise ValueError(f"staleness_limit_s {staleness_limit_s} is negative; use seconds >= 0")
    if age_s <= staleness_limit_s:
        return known_allow
    return fail_mode == "open"
