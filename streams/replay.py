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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detectors.config import DetectorsConfig, load_detectors_config
from detectors.findings import Finding
from detectors.redaction.policy import RedactionPolicy
from detectors.redaction.redactor import Redactor
from streams.breaking import TRAFFIC
from streams.config import CONFIG_DIR, WardenSettings
from streams.drift_stage import (  # noqa: F401  (re-exported for notebooks and tests)
    CLASSIFICATION_RISK,
    DriftScope,
    Encoder,
    TraceDrift,
    drift_texts,
    risk_class,
    scalar_values,
)
from streams.economics import Economics
from streams.governor import Governor
from streams.ingest import RejectedTrace, decode_trace
from streams.records import ChangeEvent, InferenceTrace
from streams.redaction import POLICY_FILE, plugin_recognizers
from streams.values import cost_sample, cost_sample_record

CHUNK = 500  # the govern agent's batch size (streams.app.GOVERN_BATCH)

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
    return Redactor(policy, key or configured or policy.resolve_key() or secrets.token_bytes(32),
                    recognizers=plugin_recognizers(policy, ner=settings.ner))


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
        for key in self.governor.take_removed():  # what the worker deletes from its table
            self.states.pop(key, None)
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
