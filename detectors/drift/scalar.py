"""Online drift of per-trace scalars (latency, tokens, refusal/error/tool-call rates, finish
reasons) with river's detectors, one per signal, per (route, model).

Methods: ADWIN (Bifet & Gavaldà, "Learning from Time-Changing Data with Adaptive Windowing",
SDM 2007) for rates and means; Page-Hinkley (Page, "Continuous Inspection Schemes",
Biometrika 1954) for a sustained rise of a mean such as latency; KSWIN (Raab, Heusinger &
Schleif, "Reactive Soft Prototype Computing for Concept Drift Streams", Neurocomputing 2020)
for a change of a whole distribution such as token counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from river import drift

from detectors.drift.config import ScalarDriftConfig, SignalConfig
from detectors.drift.kswin import KSWIN
from detectors.drift.river_state import (
    InvalidDetectorState,
    bounded_int,
    describe,
    detector_state,
    finite_float,
    restore_detector,
)
from detectors.findings import Finding

# v2: detectors as explicit JSON fields (detectors/drift/river_state.py); v1 pickled them and
# is refused, so those scopes start afresh once after the upgrade.
STATE_VERSION = 2
DETECTOR = "ScalarDriftMonitor/1"
_METHODS: dict[str, Any] = {
    # KSWIN: river's parameters and decisions, its KS test in numpy (detectors/drift/kswin.py)
    "adwin": drift.ADWIN, "page_hinkley": drift.PageHinkley, "kswin": KSWIN,
}

Value = float | int | bool | str | None


class ScalarDrift:
    """One river detector on one numeric (or 0/1) signal, with a running mean for evidence.

    Examples
    --------
    >>> d = ScalarDrift("error", SignalConfig(method="adwin", params={"delta": 1e-5}))
    >>> [d.update(0.0) for _ in range(2000)].count(True)
    0
    >>> any(d.update(1.0 if i % 2 else 0.0) for i in range(2000))
    True
    """

    def __init__(self, name: str, config: SignalConfig) -> None:
        self.name = name
        self.config = config
        try:
            self.detector = _METHODS[config.method](**config.params)
        except TypeError as exc:
            raise ValueError(
                f"drift.scalar.signals.{name}.params {config.params} do not fit river's"
                f" {config.method}: {exc}"
            ) from None
        self.n = 0
        self.mean = 0.0  # running mean since the last drift, for evidence
        self.recent = 0.0  # EWMA over ~50 items: the level the signal moved to
        self.mean_before = float("nan")

    def update(self, value: float) -> bool:
        """Add one value; True when the river detector flags drift at it."""
        x = math.log1p(max(value, 0.0)) if self.config.transform == "log1p" else float(value)
        self.detector.update(x)
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.recent = x if self.n == 1 else self.recent + (x - self.recent) / 50.0
        if self.detector.drift_detected:
            after = getattr(self.detector, "estimation", self.recent)  # ADWIN: its new window
            self.mean_before, self.mean, self.recent, self.n = self.mean, after, after, 1
            return True
        return False


class ScalarDriftMonitor:
    """All scalar signals of one (route, model).

    Parameters
    ----------
    config
        The ``drift.scalar`` section (which signals, which river method, its parameters).
    subject
        Scope for findings, e.g. ``{"route": "chat", "model": "m"}``.
    config_version
        ``version:`` of the config file, stored in every finding's evidence.

    Per trace pass ``update({signal: value}, at)`` with the signals you have (missing or
    ``None`` ones are skipped): ``latency_ms`` (ms), ``input_tokens``, ``output_tokens``
    (counts), ``refusal``, ``error``, ``tool_call`` (bool) and ``finish_reason`` (str; one 0/1
    rate per configured category, others count as none of them).

    Examples
    --------
    >>> mon = ScalarDriftMonitor(subject={"route": "chat", "model": "m"})
    >>> quiet = [mon.update({"error": False, "finish_reason": "stop"}) for _ in range(3000)]
    >>> sum(map(len, quiet))
    0
    >>> found = [f for i in range(3000) for f in mon.update({"error": i % 3 == 0})]
    >>> found[0].kind, found[0].severity, found[0].subject["signal"]
    ('drift.scalar', 'critical', 'error')
    """

    def __init__(
        self,
        config: ScalarDriftConfig | None = None,
        subject: Mapping[str, str] | None = None,
        config_version: str = "",
    ) -> None:
        self.config = config or ScalarDriftConfig()
        self.subject = dict(subject or {})
        self.config_version = config_version
        self.detectors: dict[str, ScalarDrift] = {}
        for name, sig in self.config.signals.items():
            if sig.categories:
                for cat in sig.categories:
                    self.detectors[f"{name}={cat}"] = ScalarDrift(f"{name}={cat}", sig)
            else:
                self.detectors[name] = ScalarDrift(name, sig)

    def _values(self, values: Mapping[str, Value]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, sig in self.config.signals.items():
            raw = values.get(name)
            if raw is None:
                continue
            if sig.categories:
                for cat in sig.categories:
                    out[f"{name}={cat}"] = 1.0 if raw == cat else 0.0
            elif isinstance(raw, str):
                raise ValueError(f"signal {name!r} got text {raw!r}; configure categories for it")
            else:
                out[name] = float(raw)
        return out

    def update(self, values: Mapping[str, Value], at: float = 0.0) -> list[Finding]:
        """Add one trace's values; returns a ``drift.scalar`` finding per signal that drifted."""
        findings = []
        for key, x in self._values(values).items():
            det = self.detectors[key]
            if det.update(x):
                findings.append(self._finding(det, at))
        return findings

    def _finding(self, det: ScalarDrift, at: float) -> Finding:
        unit = "log1p(value)" if det.config.transform == "log1p" else "value"
        evidence = {
            "method": det.config.method,
            "params": dict(det.config.params),
            "mean_before": det.mean_before,
            "mean_after": det.mean,
            "unit": unit,
            "config_version": self.config_version,
        }
        return Finding(
            "drift.scalar",
            self.subject | {"signal": det.name},
            score=det.mean,
            threshold=det.mean_before,
            at=at,
            severity=det.config.severity,
            evidence=evidence,
            detector=DETECTOR,
        )

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state, a few KiB: every detector's internals as named numbers
        (detectors/drift/river_state.py), never pickle: the changelog it lives in is a Kafka
        topic, and whoever can write that must not be able to run code in the worker."""
        blobs = {
            # mean_before is NaN until the first drift: None in JSON (standard JSON has no NaN)
            k: {"n": d.n, "mean": d.mean, "recent": d.recent,
                "mean_before": d.mean_before if math.isfinite(d.mean_before) else None,
                "config": d.config.model_dump(mode="json"),
                "detector": detector_state(d.detector)}
            for k, d in self.detectors.items()
        }
        return {"v": STATE_VERSION, "subject": self.subject,
                "config_version": self.config_version, "signals": blobs}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: ScalarDriftConfig) -> ScalarDriftMonitor:
        """Rebuild from ``to_state()``; signals new or changed in ``config`` start fresh.

        Raises :class:`InvalidDetectorState` (a ``ValueError``), and nothing else, for a state
        of another version or one that fails validation; the caller starts the scope afresh.
        Nothing in ``state`` is executed: only checked numbers are loaded."""
        if not isinstance(state, Mapping) or state.get("v") != STATE_VERSION:
            found = describe(state.get("v")) if isinstance(state, Mapping) else describe(state)
            raise InvalidDetectorState(f"scalar drift state v={found}, expected {STATE_VERSION}")
        subject, signals = state.get("subject"), state.get("signals")
        if not isinstance(subject, dict) or not all(isinstance(v, str) for v in subject.values()):
            raise InvalidDetectorState("scalar drift state: subject must map names to text")
        if not isinstance(signals, dict):
            raise InvalidDetectorState("scalar drift state: signals must be an object")
        version = state.get("config_version", "")
        if not isinstance(version, str):
            raise InvalidDetectorState("scalar drift state: config_version must be text")
        mon = cls(config, subject, version)
        for key, blob in signals.items():
            det = mon.detectors.get(key)
            if det is None:
                continue  # signal removed from the configuration
            if not isinstance(blob, dict):
                raise InvalidDetectorState(f"scalar drift state: signal {key!r} must be an object")
            if blob.get("config") != det.config.model_dump(mode="json"):
                continue  # signal reconfigured: it starts afresh
            restore_detector(det.detector, blob.get("detector"))
            # n divides the running mean: a negative count would divide by zero later
            det.n = bounded_int(blob.get("n"), f"{key}.n", 0, 2**62)
            det.mean = finite_float(blob.get("mean"), f"{key}.mean")
            det.recent = finite_float(blob.get("recent"), f"{key}.recent")
            before = blob.get("mean_before")
            det.mean_before = float("nan") if before is None else finite_float(before, f"{key}.mean_before")
        return mon
