"""River drift detectors' state as explicit, validated JSON (never pickle).

Drift state survives restarts in a Kafka changelog that any client with write access to the
topic could fill. ``pickle.loads`` on it would run whatever the writer chose, so each detector's
internals are written out field by field and read back through checks that a hostile value
can only fail (``InvalidDetectorState``), never turn into code:

* ``PageHinkley``: its running mean and four cumulative sums (plain floats).
* ``KSWIN`` (ours, detectors/drift/kswin.py): the window values, ring position and the PCG64
  generator's state (integers), so the random reference draw continues exactly.
* ``ADWIN``: river keeps it in Rust (``AdaptiveWindowing``), whose only state interface is a
  serde-bincode byte string. :func:`adwin_state` decodes that string into named fields
  (totals, variances and fill of every exponential bucket row) and :func:`restore_adwin`
  validates those fields and encodes them back, so the bytes handed to river are always
  ones this module built from checked numbers. The layout is river 0.26's
  (``rust_src/adwin.rs``); ``adwin_state`` re-encodes what it decoded and refuses to write a
  state that does not round-trip, so a river upgrade that changes the layout fails loudly
  in tests instead of writing garbage.

All three restore exactly: a detector restored from its state makes the same decisions
on the rest of a stream as one that never stopped.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
from river import drift

from detectors.drift.kswin import KSWIN

MAX_BUCKET_ROWS = 64  # ADWIN row i holds buckets of 2**i values: 64 rows outgrow any stream
MAX_WINDOW = 100_000  # KSWIN window values accepted from a state
# ADWIN's counters are i32 in Rust and only ever grow by one per update; a stored value near
# the limit would overflow a few updates later, so a state may hold at most 2**30.
MAX_COUNTER = 2**30
_HEX128 = re.compile(r"[0-9a-f]{1,32}")


class InvalidDetectorState(ValueError):
    """A stored detector state that does not pass validation: start the detector afresh."""


def describe(value: Any) -> str:
    """A short, safe rendering of a stored value for an error message: a hostile value may
    be megabytes long, and ``repr`` of an integer past 4300 digits raises."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return "a huge integer"
    if isinstance(value, str | int | float | bool | None):
        return repr(value)[:80]
    return f"a {type(value).__name__}"


def finite_float(value: Any, name: str) -> float:
    """``value`` as a finite float, else :class:`InvalidDetectorState` (bools, text, NaN,
    infinities and integers too large for a float included: JSON allows all of them)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidDetectorState(f"{name} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise InvalidDetectorState(f"{name} is out of range") from None
    if not math.isfinite(out):
        raise InvalidDetectorState(f"{name} must be finite, got {out}")
    return out


def bounded_int(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an integer in ``[low, high]``, else :class:`InvalidDetectorState`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidDetectorState(f"{name} must be an integer in [{low}, {high}], got {describe(value)}")
    return value


def _floats(values: Any, name: str, length: int) -> list[float]:
    if not isinstance(values, list) or len(values) != length:
        raise InvalidDetectorState(f"{name} must be a list of {length} numbers")
    return [finite_float(v, f"{name}[{i}]") for i, v in enumerate(values)]


def _same_params(kind: str, stored: Any, configured: dict[str, Any]) -> None:
    # A state is only ever loaded into a detector built from the same configuration (the
    # caller skips signals whose configuration changed), so a mismatch is corruption.
    if stored != configured:
        shown = {k: describe(v) for k, v in stored.items()} if isinstance(stored, dict) else describe(stored)
        raise InvalidDetectorState(f"{kind} state has params {str(shown)[:300]}, configured {configured}")


def _hex128(value: Any, name: str) -> int:
    # Digits only: int(text, 16) alone would also take a sign, "0x", "_" and spaces.
    if not isinstance(value, str) or _HEX128.fullmatch(value) is None:
        raise InvalidDetectorState(f"{name} must be 1 to 32 lowercase hex digits")
    return int(value, 16)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidDetectorState(f"{name} must be true or false")
    return value


# -- ADWIN ---------------------------------------------------------------------------------
# serde-bincode (v1, little endian, fixed-width integers, u64 lengths) of AdaptiveWindowing
# followed by the constructor arguments river keeps beside it.
_HEAD = struct.Struct("<di Q dd dddd iiii Q")
_TAIL = struct.Struct("<di Q ii")
_FIELDS = ("total", "variance", "width", "total_width")
_COUNTERS = ("n_buckets", "max_n_buckets", "tick", "n_detections")


def _adwin_params(det: drift.ADWIN) -> dict[str, Any]:
    return {"delta": det.delta, "clock": det.clock, "max_buckets": det.max_buckets,
            "min_window_length": det.min_window_length, "grace_period": det.grace_period}


def _decode_adwin(blob: bytes) -> dict[str, Any]:
    head = _HEAD.unpack_from(blob, 0)
    pos = _HEAD.size
    rows = []
    for _ in range(head[-1]):
        max_size, current = struct.unpack_from("<QQ", blob, pos)
        pos += 16
        columns = []
        for _column in range(2):
            (length,) = struct.unpack_from("<Q", blob, pos)
            columns.append(list(struct.unpack_from(f"<{length}d", blob, pos + 8)))
            pos += 8 + 8 * length
        rows.append({"max_size": max_size, "fill": current, "totals": columns[0], "variances": columns[1]})
    tail = _TAIL.unpack_from(blob, pos)
    if pos + _TAIL.size != len(blob):
        raise ValueError("river's ADWIN state has an unexpected layout (river upgraded?)")
    return {"head": head, "rows": rows, "tail": tail}


def _encode_adwin(head: tuple[Any, ...], rows: list[dict[str, Any]], tail: tuple[Any, ...]) -> bytes:
    parts = [_HEAD.pack(*head[:-1], len(rows))]
    for row in rows:
        parts.append(struct.pack("<QQ", row["max_size"], row["fill"]))
        for column in (row["totals"], row["variances"]):
            parts.append(struct.pack(f"<Q{len(column)}d", len(column), *column))
    parts.append(_TAIL.pack(*tail))
    return b"".join(parts)


def adwin_state(det: drift.ADWIN) -> dict[str, Any]:
    """ADWIN's window as named fields: sums, counters and every bucket row."""
    blob = det._helper.__getstate__()
    try:
        decoded = _decode_adwin(blob)
        same = _encode_adwin(decoded["head"], decoded["rows"], decoded["tail"]) == blob
    except (struct.error, ValueError):
        same = False
    if not same:
        # Our own detector's bytes: a mismatch is a river upgrade, never hostile input.
        raise RuntimeError("river's ADWIN state layout changed: update detectors/drift/river_state.py")
    head = decoded["head"]
    return {
        "params": _adwin_params(det),
        **dict(zip(_FIELDS, head[5:9], strict=True)),
        **dict(zip(_COUNTERS, head[9:13], strict=True)),
        "rows": [{"fill": r["fill"], "totals": r["totals"], "variances": r["variances"]}
                 for r in decoded["rows"]],
        "drift_detected": det.drift_detected,
    }


def restore_adwin(det: drift.ADWIN, state: Mapping[str, Any]) -> None:
    """Load ``adwin_state()`` output into ``det`` (built with the configured parameters).

    Every number is checked against what river's Rust code relies on without checking it
    itself (a panic there is not an ordinary Python exception and would stop the worker):
    each row has ``max_buckets + 1`` slots and at most ``max_buckets`` filled, no row of several
    is empty, the window width equals the values the buckets hold, and counters stay far
    from i32 overflow."""
    params = _adwin_params(det)
    _same_params("ADWIN", state.get("params"), params)
    values = [finite_float(state.get(name), name) for name in _FIELDS]
    counters = [bounded_int(state.get(name), name, 0, MAX_COUNTER) for name in _COUNTERS]
    drifted = _bool(state.get("drift_detected"), "drift_detected")
    raw_rows = state.get("rows")
    if not isinstance(raw_rows, list) or not 1 <= len(raw_rows) <= MAX_BUCKET_ROWS:
        raise InvalidDetectorState(f"ADWIN rows must be a list of 1 to {MAX_BUCKET_ROWS}")
    slots = det.max_buckets + 1
    rows, width = [], 0
    for i, row in enumerate(raw_rows):
        if not isinstance(row, Mapping):
            raise InvalidDetectorState(f"ADWIN rows[{i}] must be an object")
        # Only a fresh window has an empty row. river removes values from the last row and
        # pops it once empty; an empty row behind it would be removed from next, which
        # underflows an index in Rust (a panic, not a Python exception).
        least = 0 if len(raw_rows) == 1 else 1
        fill = bounded_int(row.get("fill"), f"rows[{i}].fill", least, det.max_buckets)
        rows.append({"max_size": det.max_buckets, "fill": fill,
                     "totals": _floats(row.get("totals"), f"rows[{i}].totals", slots),
                     "variances": _floats(row.get("variances"), f"rows[{i}].variances", slots)})
        width += fill * 2**i
    if width != values[2]:
        raise InvalidDetectorState(f"ADWIN width {values[2]} disagrees with its buckets ({width} values)")
    head = (params["delta"], params["clock"], params["max_buckets"], float(params["min_window_length"]),
            float(params["grace_period"]), *values, *counters, len(rows))
    tail = (params["delta"], params["clock"], params["max_buckets"], params["min_window_length"],
            params["grace_period"])
    # The bytes handed to river are built here from checked numbers, never taken from the state.
    det._helper.__setstate__(_encode_adwin(head, rows, tail))
    det._drift_detected = drifted


# -- Page-Hinkley --------------------------------------------------------------------------
_PH_SUMS = ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease")


def _ph_params(det: drift.PageHinkley) -> dict[str, Any]:
    return {"min_instances": det.min_instances, "delta": det.delta, "threshold": det.threshold,
            "alpha": det.alpha, "mode": det.mode}


def page_hinkley_state(det: drift.PageHinkley) -> dict[str, Any]:
    """Page-Hinkley's running mean (count and value) and its four cumulative sums."""
    sums = {name.lstrip("_"): getattr(det, name) for name in _PH_SUMS}
    # _min_increase starts at +inf (standard JSON has no infinity): null stands for it
    sums = {k: (None if math.isinf(v) else v) for k, v in sums.items()}
    return {"params": _ph_params(det), "mean_n": det._x_mean.n, "mean": det._x_mean._mean, **sums,
            "drift_detected": det.drift_detected}


def restore_page_hinkley(det: drift.PageHinkley, state: Mapping[str, Any]) -> None:
    """Load ``page_hinkley_state()`` output into ``det`` (built with the configured parameters)."""
    _same_params("PageHinkley", state.get("params"), _ph_params(det))
    mean_n = finite_float(state.get("mean_n"), "mean_n")
    if mean_n < 0:
        raise InvalidDetectorState("mean_n must not be negative")
    mean = finite_float(state.get("mean"), "mean")
    sums = {}
    for name in _PH_SUMS:
        raw = state.get(name.lstrip("_"))
        sums[name] = math.inf if raw is None and name == "_min_increase" else finite_float(raw, name.lstrip("_"))
    drifted = _bool(state.get("drift_detected"), "drift_detected")
    det._x_mean.n, det._x_mean._mean = mean_n, mean
    for name, value in sums.items():
        setattr(det, name, value)
    det._drift_detected = drifted


# -- KSWIN ---------------------------------------------------------------------------------
def _kswin_params(det: KSWIN) -> dict[str, Any]:
    return {"alpha": det.alpha, "window_size": det.window_size, "stat_size": det.stat_size}


def kswin_state(det: KSWIN) -> dict[str, Any]:
    """KSWIN's window (oldest first), item count and random generator state."""
    rng = det._rng.bit_generator.state
    return {"params": _kswin_params(det),
            "window": [float(x) for x in det._chronological()], "n": det.n,
            # 128-bit integers as hex text: other JSON readers keep only 53 bits of a number
            "rng": {"state": format(rng["state"]["state"], "x"), "inc": format(rng["state"]["inc"], "x"),
                    "has_uint32": rng["has_uint32"], "uinteger": rng["uinteger"]},
            "drift_detected": det.drift_detected}


def restore_kswin(det: KSWIN, state: Mapping[str, Any]) -> None:
    """Load ``kswin_state()`` output into ``det`` (built with the configured parameters)."""
    _same_params("KSWIN", state.get("params"), _kswin_params(det))
    window = state.get("window")
    if not isinstance(window, list) or len(window) > min(det.window_size, MAX_WINDOW):
        raise InvalidDetectorState(f"KSWIN window must be a list of at most {det.window_size} numbers")
    values = _floats(window, "window", len(window))
    n = bounded_int(state.get("n"), "n", len(values), 2**62)
    rng = state.get("rng")
    if not isinstance(rng, Mapping):
        raise InvalidDetectorState("KSWIN rng must be an object")
    # PCG64's 128-bit state and increment, and its buffered half word: numbers only
    bits = {"bit_generator": "PCG64",
            "state": {"state": _hex128(rng.get("state"), "rng.state"), "inc": _hex128(rng.get("inc"), "rng.inc")},
            "has_uint32": bounded_int(rng.get("has_uint32"), "rng.has_uint32", 0, 1),
            "uinteger": bounded_int(rng.get("uinteger"), "rng.uinteger", 0, 2**32 - 1)}
    drifted = _bool(state.get("drift_detected"), "drift_detected")
    generator = np.random.PCG64()
    try:
        generator.state = bits  # type: ignore[assignment]
    except (ValueError, TypeError, OverflowError) as exc:  # numpy's own checks, as a backstop
        raise InvalidDetectorState(f"KSWIN rng state refused: {exc}") from None
    det._rng = np.random.Generator(generator)
    det._buffer[:] = 0.0
    det._buffer[: len(values)] = values
    det._count, det._next = len(values), len(values) % det.window_size
    det.n, det._drift_detected = n, drifted


def detector_state(det: Any) -> dict[str, Any]:
    """The state of one of the supported detectors (ADWIN, PageHinkley, KSWIN)."""
    if isinstance(det, drift.ADWIN):
        return adwin_state(det)
    if isinstance(det, drift.PageHinkley):
        return page_hinkley_state(det)
    if isinstance(det, KSWIN):
        return kswin_state(det)
    raise TypeError(f"no JSON state for {type(det).__name__}")


def restore_detector(det: Any, state: Any) -> None:
    """Load ``detector_state()`` output into a freshly built detector of the same kind and
    parameters; raises :class:`InvalidDetectorState` (and leaves ``det`` usable afresh).

    Examples
    --------
    >>> import json
    >>> det = drift.ADWIN()
    >>> for x in [0.0, 1.0] * 100:
    ...     det.update(x)
    >>> copy = drift.ADWIN()
    >>> restore_detector(copy, json.loads(json.dumps(detector_state(det))))
    >>> (copy.width, copy.estimation) == (det.width, det.estimation)
    True
    >>> try:
    ...     restore_detector(drift.ADWIN(), {"params": "not ADWIN's"})
    ... except InvalidDetectorState as exc:
    ...     print(type(exc).__name__, isinstance(exc, ValueError))
    InvalidDetectorState True
    """
    if not isinstance(state, Mapping):
        raise InvalidDetectorState("detector state must be an object")
    if isinstance(det, drift.ADWIN):
        restore_adwin(det, state)
    elif isinstance(det, drift.PageHinkley):
        restore_page_hinkley(det, state)
    elif isinstance(det, KSWIN):
        restore_kswin(det, state)
    else:
        raise TypeError(f"no JSON state for {type(det).__name__}")
