"""Replay recorded traces through the worker's detectors, in order, without Kafka.

``warden replay`` and the notebooks drive :class:`Replay`: every line of a JSON-lines file
is validated like the govern agent validates a raw record (``streams.ingest.decode_trace``),
then, in chunks of ``chunk`` traces (the agent's batch size):

* ``streams.governor.Governor``: redaction, completion leaks and the per-(route, model)
  scope detectors (error rate, unowned changes, versions, components), with the same
  ``checkpoint`` per chunk and ``advance(newest, touched)`` the agent does;
* ``streams.economics.Economics`` over the usage records of the chunk (budgets, runs, cost
  regressions); open agent runs are closed at the end (``CostGovernor.flush``);
* drift: :class:`DriftScope` per (route, model): embedding drift per text field and the
  scalar river monitors. The trace → drift values mapping lives here (``drift_texts``,
  ``scalar_values``, ``risk_class``) until the worker runs drift too.

Per-batch traffic summaries (``breaker.traffic``) are not findings and are left out.
Scope state goes through a plain dict, exactly as it goes through the Faust table.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from detectors.config import DetectorsConfig, load_detectors_config
from detectors.drift import DriftConfig, EmbeddingDriftDetector, RiskSampler, ScalarDriftMonitor
from detectors.findings import Finding
from detectors.ownership import looks_like_refusal
from detectors.redaction.policy import RedactionPolicy
from detectors.redaction.redactor import Redactor
from streams.breaking import TRAFFIC
from streams.config import CONFIG_DIR, WardenSettings
from streams.economics import Economics
from streams.governor import Governor
from streams.ingest import RejectedTrace, decode_trace
from streams.records import ChangeEvent, InferenceTrace, TraceStatus
from streams.redaction import POLICY_FILE
from streams.values import completion_text, cost_sample, cost_sample_record, prompt_text

CHUNK = 500  # the govern agent's batch size (streams.app.GOVERN_BATCH)
CLASSIFICATION_RISK = {"public": "low", "internal": "medium", "confidential": "high", "restricted": "high"}
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
                 embeddings: bool = True):
        self.drift, self.version = drift, version
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
                                            e.half_precision)
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


# -- the replay -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayError:
    """A line that was not replayed: 1-based line number, machine-readable kind, reason."""

    line: int
    error_kind: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "error_kind": self.error_kind, "reason": self.reason}


@dataclass
class ReplayBatch:
    """What one chunk produced: finding records (``Finding.to_dict()`` + ``config_version``),
    the redacted traces (when kept) and the lines that were skipped."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    redacted: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ReplayError] = field(default_factory=list)
    traces: int = 0


def resolve_config_dir(path: str | Path | None) -> Path:
    """``--config`` as the directory the loaders want: a directory as is, a file
    (``detectors.yaml``) by its parent; default ``deploy/config``."""
    p = Path(path) if path is not None else CONFIG_DIR
    if p.is_file():
        return p.parent
    if not p.is_dir():
        raise FileNotFoundError(f"--config {p} is neither a config directory nor a detectors.yaml file;"
                                " pass deploy/config or a copy of it")
    return p


def load_drift_config(config_dir: Path) -> DetectorsConfig:
    path = config_dir / "detectors.yaml"
    return load_detectors_config(path) if path.is_file() else DetectorsConfig(version="builtin-defaults")


def build_redactor(config_dir: Path, settings: WardenSettings, key: bytes | None = None) -> Redactor:
    """The worker's redactor; without a configured key, a random one for this run (pseudonyms
    then differ from stored ones; findings never contain them)."""
    policy = RedactionPolicy.load(config_dir / POLICY_FILE)
    configured = settings.pseudonym_key.get_secret_value().encode() if settings.pseudonym_key else None
    return Redactor(policy, key or configured or policy.resolve_key() or secrets.token_bytes(32))


class Replay:
    """The worker's detectors over an ordered sequence of recorded traces.

    Parameters
    ----------
    config_dir
        Directory with the versioned config files (``deploy/config`` or a copy).
    encoder
        Sentence encoder for embedding drift (default: the one ``drift.encoder`` names,
        built on first use).
    embeddings
        False skips embedding drift (no encoder is loaded); scalar drift still runs.
    keep_redacted
        Keep the redacted traces in each batch (for writing them to ClickHouse).
    chunk
        Traces per batch, as the govern agent takes them.
    """

    def __init__(self, config_dir: str | Path | None = None, *, encoder: Encoder | None = None,
                 embeddings: bool = True, keep_redacted: bool = False, chunk: int = CHUNK,
                 redaction_key: bytes | None = None, changes: Sequence[ChangeEvent] = ()):
        self.config_dir = resolve_config_dir(config_dir)
        settings = WardenSettings(config_dir=self.config_dir)
        self.governor = Governor.from_settings(settings, build_redactor(self.config_dir, settings, redaction_key))
        self.economics = Economics.from_settings(settings)
        detectors = load_drift_config(self.config_dir)
        self.drift = TraceDrift(detectors.drift_or_default(), detectors.version, encoder=encoder,
                                embeddings=embeddings)
        self.keep_redacted, self.chunk = keep_redacted, chunk
        self.states: dict[str, Any] = {}  # the worker's scope-state table
        self.cost_states: dict[str, Any] = {}  # the worker's economics-state table
        self.governor.add_changes(list(changes))
        self.economics.add_changes(list(changes))
        self._started = False

    def record(self, finding: Finding) -> dict[str, Any]:
        """``Finding.to_dict()`` plus ``config_version``, as ``Wiring.finding_record`` does."""
        out = finding.to_dict()
        out["config_version"] = str(finding.evidence.get("config_version", self.governor.config.version))
        return out

    def _start(self, first: InferenceTrace) -> None:
        # The worker learns versions for learn_s from its start; replay from the first trace.
        self.governor.context.learn_until = (first.timestamp.timestamp()
                                             + self.governor.config.ownership.versions.learn_s)
        self._started = True

    def process(self, traces: Sequence[tuple[int, InferenceTrace]]) -> ReplayBatch:
        """One chunk of ``(line, trace)`` pairs, in order."""
        batch = ReplayBatch()
        if not traces:
            return batch
        if not self._started:
            self._start(traces[0][1])
        vectors = self.drift.vectors([t for _, t in traces])
        found: list[Finding] = []
        touched: set[str] = set()
        usage: list[dict[str, Any]] = []
        newest = 0.0
        for (line, trace), trace_vectors in zip(traces, vectors, strict=True):
            try:
                out = self.governor.govern(trace, self.states)
                drift = self.drift.observe(trace, trace_vectors)
            except Exception as exc:  # a detector bug must not stop the replay (nor the worker)
                batch.errors.append(ReplayError(line, "processing_error", f"{type(exc).__name__}: {exc}"))
                continue
            found += out.findings + drift
            touched.add(trace.partition_key)
            newest = max(newest, trace.timestamp.timestamp())
            usage.append(cost_sample_record(cost_sample(trace)))
            batch.traces += 1
            if self.keep_redacted:
                batch.redacted.append(out.redacted)
        found += self.governor.advance(newest, touched)
        states, _traffic = self.governor.checkpoint(touched)  # traffic summaries are not findings
        self.states.update(states)
        found += self.economics.update(usage, self.cost_states)
        batch.findings = [self.record(f) for f in found if f.kind != TRAFFIC]
        return batch

    def finish(self) -> list[dict[str, Any]]:
        """End of input: close the agent runs still open (their cost findings)."""
        governor = self.economics.governor(self.cost_states)
        return [self.record(f) for f in governor.flush(list(self.economics.events))]

    def run(self, lines: Iterable[str | bytes]) -> Iterator[ReplayBatch]:
        """Replay JSON lines (blank lines skipped); one batch per ``chunk`` valid traces,
        then a last one with the end-of-input findings."""
        pending: list[tuple[int, InferenceTrace]] = []
        errors: list[ReplayError] = []
        for number, line in enumerate(lines, start=1):
            raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
            if not raw.strip():
                continue
            try:
                pending.append((number, decode_trace(raw.strip())))
            except RejectedTrace as rejection:
                errors.append(ReplayError(number, rejection.kind, rejection.reason[:500]))
            if len(pending) >= self.chunk:
                yield self._batch(pending, errors)
                pending, errors = [], []
        last = self._batch(pending, errors)
        last.findings += self.finish()
        yield last

    def _batch(self, pending: list[tuple[int, InferenceTrace]], errors: list[ReplayError]) -> ReplayBatch:
        batch = self.process(pending)
        batch.errors = errors + batch.errors
        return batch


def replay_file(path: str | Path, config_dir: str | Path | None = None, **options: Any) -> ReplayBatch:
    """Replay a whole file into one :class:`ReplayBatch` (tests, notebooks)."""
    total = ReplayBatch()
    with Path(path).open("rb") as source:
        for batch in Replay(config_dir, **options).run(source):
            total.findings += batch.findings
            total.redacted += batch.redacted
            total.errors += batch.errors
            total.traces += batch.traces
    return total
