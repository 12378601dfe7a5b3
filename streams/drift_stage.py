"""Drift in the worker: trace → drift values, risk sampling, batched encoding, and one
``DriftScope`` per (route, model) (embedding drift per text field + scalar river monitors).

Shared by the ``drift`` agent (over the redacted topic, so the encoder's cost never slows
redaction or storage) and by ``warden replay``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import structlog

from detectors.drift import DriftConfig, EmbeddingDriftDetector, RiskSampler, ScalarDriftMonitor
from detectors.findings import Finding
from detectors.ownership import looks_like_refusal
from streams.cardinality import ScopeAdmission, ScopeLimits, held_scopes
from streams.metrics import METRICS
from streams.records import InferenceTrace, TraceStatus
from streams.values import completion_text, prompt_text

CLASSIFICATION_RISK = {"public": "low", "internal": "medium", "confidential": "high", "restricted": "high"}
log = structlog.get_logger("warden.drift")
TEXT_CACHE_MAX = 50_000  # distinct texts whose vectors are kept (templated traffic repeats itself)


class Encoder(Protocol):
    """Anything that turns texts into an ``(n, d)`` float array (``SentenceEncoder``)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


# -- trace → drift values ------------------------------------------------------------------
def risk_class(trace: InferenceTrace) -> str:
    """The sampling class of a trace: ``metadata["risk_class"]`` when the caller sets one,
    else from ``data_classification`` (public → low, internal → medium, confidential and
    restricted → high)."""
    return trace.metadata.get("risk_class") or CLASSIFICATION_RISK[trace.data_classification]


def drift_texts(trace: InferenceTrace, fields: Sequence[str]) -> dict[str, str]:
    """The texts embedding drift watches: ``prompt`` (the last user message) and
    ``completion`` (the assistant's messages); empty texts (failed calls) are left out."""
    texts = {"prompt": prompt_text(trace) if "prompt" in fields else "",
             "completion": completion_text(trace) if "completion" in fields else ""}
    return {name: text for name, text in texts.items() if text.strip()}


def scalar_values(trace: InferenceTrace) -> dict[str, float | bool | str | None]:
    """Per-trace values for ``ScalarDriftMonitor``.

    A failed call has no response, so its latency, output tokens, refusal and finish reason
    are left out: an error burst shows in ``error`` (and the error-rate detector), not as a
    drift of every response signal at once.
    """
    values: dict[str, float | bool | str | None] = {
        "input_tokens": trace.input_tokens, "error": trace.status == TraceStatus.error,
        "tool_call": bool(trace.tool_calls)}
    if trace.status == TraceStatus.ok:
        finish = trace.finish_reasons
        values.update(
            latency_ms=trace.latency_ms, output_tokens=trace.output_tokens,
            refusal="content_filter" in finish or looks_like_refusal(completion_text(trace)),
            finish_reason=finish[0] if finish else None)
    return values


class DriftScope:
    """Drift detectors of one (route, model): one ``EmbeddingDriftDetector`` per text field
    and one ``ScalarDriftMonitor``, with one serialisable state (like ``ScopeDetectors``).

    ``observe(trace, vectors)`` takes the trace's embeddings by field (only the sampled
    ones) and returns the findings.
    """

    def __init__(self, subject: Mapping[str, str], drift: DriftConfig, version: str, *,
                 embedding: Mapping[str, EmbeddingDriftDetector] | None = None,
                 scalar: ScalarDriftMonitor | None = None):
        self.subject = dict(subject)
        self.drift, self.version = drift, version
        self.embedding: dict[str, EmbeddingDriftDetector] = dict(embedding or {})
        self.scalar = scalar
        if scalar is None and drift.scalar.enabled:
            self.scalar = ScalarDriftMonitor(drift.scalar, self.subject, version)

    def observe(self, trace: InferenceTrace, vectors: Mapping[str, np.ndarray]) -> list[Finding]:
        at = trace.timestamp.timestamp()
        found: list[Finding] = []
        for name, vector in vectors.items():
            det = self.embedding.get(name)
            if det is None:
                det = self.embedding[name] = EmbeddingDriftDetector(
                    self.drift.embedding, self.subject | {"field": name}, self.version)
            finding = det.update(vector, f"{trace.trace_id}/{trace.span_id}", at)
            if finding is not None:
                found.append(finding)
        if self.scalar is not None:
            found += self.scalar.update(scalar_values(trace), at)
        return found

    def to_state(self) -> dict[str, Any]:
        return {"v": 1, "subject": self.subject, "version": self.version,
                "embedding": {k: d.to_state() for k, d in self.embedding.items()},
                "scalar": self.scalar.to_state() if self.scalar is not None else None}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], drift: DriftConfig) -> DriftScope:
        embedding = {k: EmbeddingDriftDetector.from_state(s, drift.embedding)
                     for k, s in state["embedding"].items()}
        scalar = (ScalarDriftMonitor.from_state(state["scalar"], drift.scalar)
                  if state.get("scalar") and drift.scalar.enabled else None)
        return cls(state["subject"], drift, state["version"], embedding=embedding, scalar=scalar)


class TraceDrift:
    """Drift over traces: sampling, batched encoding (with a cache of repeated texts) and
    one :class:`DriftScope` per (route, model)."""

    def __init__(self, drift: DriftConfig, version: str, *, encoder: Encoder | None = None,
                 embeddings: bool = True, torch_threads: int | None = None):
        self.drift, self.version = drift, version
        # Torch's intra-op threads for the encoder, set when it is built (in the thread that
        # encodes): torch itself loads only then, so a worker that never encodes never pays
        # its ~450 MB and ~10 CPU seconds.
        self.torch_threads = torch_threads
        self.embeddings = embeddings and drift.embedding.enabled
        s = drift.sampling
        self.sampler = RiskSampler(s.rates, s.default_rate, s.salt)
        self._encoder = encoder
        self._cache: dict[str, np.ndarray] = {}
        self.scopes: dict[str, DriftScope] = {}
        self.encoded = 0

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from detectors.embeddings import SentenceEncoder

            e = self.drift.encoder
            self._encoder = SentenceEncoder(e.model, e.device, e.batch_size, e.max_seq_length,
                                            e.half_precision, num_threads=self.torch_threads)
        return self._encoder

    def sampled_texts(self, trace: InferenceTrace) -> dict[str, str]:
        """The texts of ``trace`` to embed (none when the sampler skips the trace)."""
        if not self.embeddings or not self.sampler.keep(trace.trace_id, risk_class(trace)):
            return {}
        return drift_texts(trace, self.drift.embedding.fields)

    def vectors(self, traces: Sequence[InferenceTrace]) -> list[dict[str, np.ndarray]]:
        """Embeddings per trace and field, encoding each distinct new text once."""
        wanted = [self.sampled_texts(t) for t in traces]
        new = list(dict.fromkeys(x for w in wanted for x in w.values() if x not in self._cache))
        if new:
            if len(self._cache) + len(new) > TEXT_CACHE_MAX:
                self._cache.clear()
            self._cache.update(zip(new, self.encoder.encode(new), strict=True))
            self.encoded += len(new)
        return [{name: self._cache[text] for name, text in w.items()} for w in wanted]

    def observe(self, trace: InferenceTrace, vectors: Mapping[str, np.ndarray]) -> list[Finding]:
        key = trace.partition_key
        scope = self.scopes.get(key)
        if scope is None:
            scope = self.scopes[key] = DriftScope(
                {"route": trace.route, "model": trace.request_model}, self.drift, self.version)
        return scope.observe(trace, vectors)


class DriftStage:
    """The worker's drift stage over redacted traces: scopes loaded from and checkpointed
    to a table. The state holds embedding windows (hundreds of KB per scope), so it is
    written at most every ``checkpoint_s`` per scope, not every batch: a crash replays or
    skips up to that much drift evidence, which moves a statistical test by little and
    never loses a trace (the redacted topic is replayed from the committed offset)."""

    def __init__(self, drift: TraceDrift, checkpoint_s: float = 30.0, limits: ScopeLimits | None = None):
        self.drift = drift
        self.checkpoint_s = checkpoint_s
        self._saved_at: dict[str, float] = {}
        # Drift state is the largest per scope (embedding windows), and a drift worker may be
        # another process than govern, so it bounds its own scopes with the same caps
        # (streams/cardinality.py): traces the governor overflowed never reach it, and a scope
        # govern reclaimed later expires or gives its slot here too.
        limits = limits or ScopeLimits()
        # Only the total cap: the governor already applied the per-route and per-tenant ones.
        self.admission = ScopeAdmission(replace(limits, max_per_route=sys.maxsize, max_per_tenant=sys.maxsize))
        self._used_at: dict[str, float] = {}  # wall time of each in-memory scope's last trace
        self._swept_at = 0.0
        self._restored_len = -1
        self.removed: dict[str, str] = {}  # keys to delete from the table, and why

    def _load(self, trace: InferenceTrace, states: Mapping[str, Any]) -> None:
        key = trace.partition_key
        if key not in self.drift.scopes and states.get(key):
            try:
                self.drift.scopes[key] = DriftScope.from_state(states[key], self.drift.drift)
            except Exception as exc:
                # Whoever can write the drift-state changelog can put anything JSON there. The
                # scalar monitor refuses such a record with InvalidDetectorState (v1 pickled
                # state included); the scope's other parts fail with KeyError, TypeError and
                # the like. Either way one bad record costs that scope its history (observe()
                # starts it afresh), never the drift agent.
                METRICS.state_rejected.labels("drift-state").inc()
                log.warning("drift_state_rejected", scope=key[:200],
                            error=f"{type(exc).__name__}: {str(exc)[:200]}")

    def process(self, traces: Sequence[InferenceTrace], states: Mapping[str, Any],
                now: float) -> tuple[list[Finding], dict[str, Any]]:
        """Findings, and the scope states due for a checkpoint (the caller writes them:
        a Faust table may only be written from the event loop, and this runs in a thread)."""
        traces = [t for t in traces if self._admit(t, states, now)]
        for trace in traces:
            self._load(trace, states)
        found: list[Finding] = []
        for trace, vectors in zip(traces, self.drift.vectors(traces), strict=True):
            found += self.drift.observe(trace, vectors)
        due: dict[str, Any] = {}
        for key in {t.partition_key for t in traces}:
            self._used_at[key] = now
            if now - self._saved_at.get(key, 0.0) >= self.checkpoint_s:
                due[key] = self._state(key, now)
                self._saved_at[key] = now
        due.update(self._sweep(now))
        return found, due

    def _state(self, key: str, seen_at: float) -> dict[str, Any]:
        return {**self.drift.scopes[key].to_state(), "seen_at": seen_at}

    def _admit(self, trace: InferenceTrace, states: Mapping[str, Any], now: float) -> bool:
        if len(states) - len(self.removed) > len(self.admission) and len(states) != self._restored_len:
            self._restored_len = len(states)  # restored or gained: read once per change
            for key in self.admission.restore(held_scopes(states, set(self.removed), now)):
                self._drop(key, "trimmed")
        overflow, reclaimed = self.admission.admit(trace.partition_key, trace.route, trace.tenant, now, states)
        if reclaimed is not None:
            self._drop(reclaimed, "drift")
        return overflow is None

    def _drop(self, key: str, why: str) -> None:
        self.drift.scopes.pop(key, None)
        self._used_at.pop(key, None)
        self._saved_at.pop(key, None)
        self.removed[key] = why

    def take_removed(self) -> list[str]:
        """Keys whose drift state the caller deletes (a tombstone) with this batch."""
        out, self.removed = self.removed, {}
        for why in out.values():
            METRICS.scopes_removed.labels(why).inc()
        return list(out)

    def _sweep(self, now: float) -> dict[str, Any]:
        """Scopes unused for ``idle_s`` leave memory, each with a last checkpoint (the table
        holds them; ``_load`` decodes one again when its traffic returns); those unseen for
        ``ttl_s`` are deleted. At most every 10 s: the sweep walks every scope in memory."""
        if now - self._swept_at < min(self.admission.limits.idle_s, 10.0):
            return {}
        self._swept_at = now
        last: dict[str, Any] = {}
        for key in [k for k, at in self._used_at.items() if now - at >= self.admission.limits.idle_s]:
            if key in self.drift.scopes and self._saved_at.get(key, 0.0) < self._used_at[key]:
                last[key] = self._state(key, self._used_at[key])
            self.drift.scopes.pop(key, None)
            self._used_at.pop(key, None)
            self._saved_at.pop(key, None)
        for key in self.admission.expire(now):
            last.pop(key, None)
            self._drop(key, "drift")
        return last

    def forget(self) -> None:
        """After a rebalance: reload every scope from the table on next use."""
        self.drift.scopes.clear()
        self._saved_at.clear()
        self._used_at.clear()
        self.removed.clear()
