"""Embedding drift per (route, model, field): RBF MMD² test plus always-on centroid shift."""

from __future__ import annotations

import base64
import hashlib
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from detectors.drift.centroid import CentroidShiftMonitor
from detectors.drift.config import EmbeddingDriftConfig
from detectors.drift.novelty import NoveltyMonitor
from detectors.embeddings import select_device
from detectors.findings import Finding

if TYPE_CHECKING:  # torch, which the MMD test runs on, loads with the first detector
    from detectors.drift.mmd import MMDPermutationTest, MMDResult

STATE_VERSION = 1
DETECTOR = "EmbeddingDriftDetector/1"


def encode_vectors(vectors: np.ndarray) -> dict[str, Any]:
    """``(n, d)`` array → JSON-safe dict (float16, base64)."""
    arr = np.ascontiguousarray(vectors, dtype=np.float16)
    return {"shape": list(arr.shape), "f16": base64.b64encode(arr.tobytes()).decode("ascii")}


def decode_vectors(blob: Mapping[str, Any]) -> np.ndarray:
    """Inverse of ``encode_vectors`` (float32 out)."""
    raw = np.frombuffer(base64.b64decode(blob["f16"]), dtype=np.float16)
    return raw.reshape(blob["shape"]).astype(np.float32)


class EmbeddingDriftDetector:
    """Drift of one embedding stream against a reference window.

    Three checks share a false-alarm budget of ``1 / expected_run_length`` alarms per stable
    item (``docs/DRIFT.md``): every ``test_every`` items, the unbiased MMD² (RBF kernel,
    median-heuristic bandwidth) between the reference and the latest ``window_size`` items with
    a permutation p-value (Gretton et al., JMLR 2012); on every item, the shift of the latest
    items' centroid (``CentroidShiftMonitor``) and the count of latest items with no close
    reference neighbour (``NoveltyMonitor``). After a finding the detector stays quiet for
    ``realert_after`` items, then reports again if drift persists.

    The reference is the first ``reference.size`` items (baseline) and changes only through
    ``refresh_reference``, an explicit action recorded in ``reference_history``. Vectors are
    rounded to float16 on entry so a detector restored by ``from_state`` behaves exactly
    like the one that saved it.

    Parameters
    ----------
    config
        The ``drift.embedding`` section.
    subject
        Scope for findings, e.g. ``{"route": "chat", "model": "m", "field": "prompt"}``.
    config_version
        ``version:`` of the config file, stored in every finding's evidence.

    Examples
    --------
    >>> from detectors.drift.config import EmbeddingDriftConfig, ReferenceConfig
    >>> cfg = EmbeddingDriftConfig(reference=ReferenceConfig(size=200), window_size=50,
    ...                            test_every=50, n_permutations=2000, expected_run_length=10_000)
    >>> det = EmbeddingDriftDetector(cfg, {"route": "chat", "model": "m", "field": "prompt"})
    >>> rng = np.random.default_rng(0)
    >>> stable = [det.update(v, f"id{i}") for i, v in enumerate(rng.normal(size=(400, 8)))]
    >>> any(stable)
    False
    >>> shifted = [det.update(v, f"s{i}") for i, v in enumerate(rng.normal(0.5, 1, (100, 8)))]
    >>> finding = next(f for f in shifted if f)
    >>> finding.kind, finding.evidence["test"] in {"mmd", "centroid"}, finding.severity
    ('drift.embedding', True, 'warning')
    """

    def __init__(
        self,
        config: EmbeddingDriftConfig | None = None,
        subject: Mapping[str, str] | None = None,
        config_version: str = "",
    ) -> None:
        self.config = config or EmbeddingDriftConfig()
        self.subject = dict(subject or {})
        self.config_version = config_version
        self.device = select_device(self.config.device)
        keep = max(self.config.window_size, self.config.centroid.window_size,
                   self.config.novelty.window_size)
        if self.config.reference.mode == "rolling":
            keep = max(keep, self.config.reference.size)
        self._recent: deque[tuple[np.ndarray, str]] = deque(maxlen=keep)
        self._baseline: list[tuple[np.ndarray, str]] = []
        self.reference: np.ndarray | None = None
        self.reference_id = ""
        self.reference_history: list[dict[str, Any]] = []
        self.position = 0  # items seen, baseline included
        self.since_reference = 0
        self.quiet_until = 0
        self.drift_detected = False
        self._mmd: MMDPermutationTest | None = None
        self._centroid: CentroidShiftMonitor | None = None
        self._novelty: NoveltyMonitor | None = None

    # -- reference -------------------------------------------------------------------------
    def _install_reference(self, vectors: np.ndarray, at: float, reason: str) -> None:
        ref = np.asarray(vectors, dtype=np.float16).astype(np.float32)
        self.reference = ref
        self.reference_id = hashlib.sha256(ref.tobytes()).hexdigest()[:16]
        self.reference_history.append(
            {"at": at, "reason": reason, "size": int(ref.shape[0]), "reference_id": self.reference_id}
        )
        self.since_reference = 0
        self._recent.clear()
        self._build_tests()

    def _build_tests(self) -> None:
        from detectors.drift.mmd import MMDPermutationTest

        cfg = self.config
        assert self.reference is not None
        self._mmd = MMDPermutationTest(
            self.reference,
            n_permutations=cfg.permutations,
            device=self.device,
            seed=cfg.seed,
            alpha=cfg.mmd_alpha,
        )
        self._centroid = None
        if cfg.centroid.enabled and cfg.centroid.budget_share > 0:
            self._centroid = CentroidShiftMonitor(
                self.reference, cfg.centroid.window_size, cfg.centroid_alpha
            )
        self._novelty = None
        if cfg.novelty.enabled and cfg.novelty.budget_share > 0:
            self._novelty = NoveltyMonitor(
                self.reference, cfg.novelty.window_size, cfg.novelty.quantile, cfg.novelty_alpha
            )

    def refresh_reference(
        self, at: float, reason: str, vectors: np.ndarray | None = None
    ) -> Finding:
        """Replace the reference: with ``vectors`` (a new baseline) or, in rolling mode, with
        the latest ``reference.size`` items. Returns an ``info`` finding recording it."""
        if vectors is None:
            if self.config.reference.mode != "rolling":
                raise ValueError(
                    "refresh_reference without vectors needs drift.embedding.reference.mode:"
                    " rolling; in fixed mode pass the new baseline's vectors"
                )
            if len(self._recent) < self.config.reference.size:
                raise ValueError(
                    f"only {len(self._recent)} recent items, reference.size="
                    f"{self.config.reference.size}: wait for more traffic or pass vectors"
                )
            vectors = np.stack([v for v, _ in self._recent])
        if len(vectors) <= max(self.config.window_size, self.config.centroid.window_size):
            raise ValueError(f"a reference needs more items than the windows, got {len(vectors)}")
        previous = self.reference_id
        self._install_reference(vectors, at, reason)
        self.quiet_until = self.position
        self.drift_detected = False
        return Finding(
            kind="drift.reference_refreshed",
            subject=self.subject,
            score=float(len(vectors)),
            threshold=0.0,
            at=at,
            severity="info",
            evidence={"reason": reason, "previous_reference_id": previous,
                      "reference_id": self.reference_id, "config_version": self.config_version},
            detector=DETECTOR,
        )

    # -- stream ----------------------------------------------------------------------------
    def update(self, vector: np.ndarray, item_id: str = "", at: float = 0.0) -> Finding | None:
        """Add one embedding (``(d,)``, any scale; unit length is what the encoder gives).

        Returns a ``drift.embedding`` finding when drift is declared at this item, else None.
        """
        v = np.asarray(vector, dtype=np.float16).astype(np.float32).reshape(-1)
        self.position += 1
        self.drift_detected = False
        if self.reference is None:
            self._baseline.append((v, item_id))
            if len(self._baseline) >= self.config.reference.size:
                self._install_reference(np.stack([b for b, _ in self._baseline]), at, "baseline")
                self._baseline = []
            return None
        self._recent.append((v, item_id))
        self.since_reference += 1
        centroid_hit, centroid_score = False, 0.0
        if self._centroid is not None:
            centroid_hit, centroid_score = self._centroid.update(v)
        novelty_hit, novelty_count = False, 0
        if self._novelty is not None:
            novelty_hit, novelty_count = self._novelty.update(v)
        if self.position <= self.quiet_until:
            return None
        finding = None
        if novelty_hit:
            finding = self._novelty_finding(novelty_count, at)
        elif centroid_hit:
            finding = self._centroid_finding(centroid_score, at)
        elif self._mmd_due():
            result = self._run_mmd()
            if result.p_value <= self.config.mmd_alpha:
                finding = self._mmd_finding(result, at)
        if finding is not None:
            self.drift_detected = True
            self.quiet_until = self.position + self.config.realert_after
        return finding

    def update_many(
        self, vectors: np.ndarray, item_ids: Sequence[str], ats: Sequence[float]
    ) -> list[Finding]:
        """``update`` over a batch in order; returns the findings raised."""
        found = (self.update(v, i, a) for v, i, a in zip(vectors, item_ids, ats, strict=True))
        return [f for f in found if f is not None]

    def _mmd_due(self) -> bool:
        cfg = self.config
        return (
            cfg.mmd_budget_share > 0
            and self.since_reference >= cfg.window_size
            and self.since_reference % cfg.test_every == 0
        )

    def _window(self, size: int) -> tuple[np.ndarray, list[str]]:
        items = list(self._recent)[-size:]
        return np.stack([v for v, _ in items]), [i for _, i in items]

    def _run_mmd(self) -> MMDResult:
        assert self._mmd is not None
        window, _ = self._window(self.config.window_size)
        return self._mmd.test(window, top_k=self.config.top_moved)

    def _evidence(self, test: str, window_size: int) -> dict[str, Any]:
        return {
            "test": test,
            "position": self.position - 1,
            "n_reference": int(self.reference.shape[0]) if self.reference is not None else 0,
            "n_current": window_size,
            "reference_id": self.reference_id,
            "config_version": self.config_version,
            "expected_run_length": self.config.expected_run_length,
        }

    def _centroid_finding(self, score: float, at: float) -> Finding:
        assert self._centroid is not None
        w = self.config.centroid.window_size
        _, ids = self._window(w)
        p = self._centroid.p_value(score)
        evidence = self._evidence("centroid", w) | {
            "p_value": p,
            "alpha": self.config.centroid_alpha,
            "centroid_cosine_distance": self._centroid.cosine_distance(),
            "unit": "squared Euclidean distance between centroids",
            "moved_ids": ids[-self.config.top_moved :] if self.config.top_moved else [],
        }
        return Finding("drift.embedding", self.subject, score, self._centroid.threshold, at,
                       severity="warning", evidence=evidence, detector=DETECTOR)

    def _novelty_finding(self, count: int, at: float) -> Finding:
        assert self._novelty is not None
        w = self._novelty.window_size
        vectors, ids = self._window(w)
        novel = self._novelty.novelty(vectors)
        order = np.argsort(-novel)[: self.config.top_moved]
        evidence = self._evidence("novelty", w) | {
            "p_value": self._novelty.p_value(count),
            "alpha": self.config.novelty_alpha,
            "novelty_cut": self._novelty.cut,
            "unit": "items with no reference neighbour above the cut, in the window",
            "moved_ids": [ids[i] for i in order],
        }
        return Finding("drift.embedding", self.subject, float(count), float(self._novelty.threshold),
                       at, severity="warning", evidence=evidence, detector=DETECTOR)

    def _mmd_finding(self, result: MMDResult, at: float) -> Finding:
        _, ids = self._window(self.config.window_size)
        centroid_over = False
        evidence = self._evidence("mmd", result.n_current) | {
            "p_value": result.p_value,
            "alpha": self.config.mmd_alpha,
            "n_permutations": result.n_permutations,
            "median_sq_distance": self._mmd.median_sq_distance if self._mmd else 0.0,
            "unit": "MMD^2, RBF kernel",
            "moved_ids": [ids[i] for i in result.moved],
        }
        if self._centroid is not None and self._centroid.full:
            centroid_over = self._centroid.score() > self._centroid.threshold
            evidence["centroid_cosine_distance"] = self._centroid.cosine_distance()
        severity = "critical" if centroid_over else "warning"
        return Finding("drift.embedding", self.subject, result.mmd2, result.critical_value, at,
                       severity=severity, evidence=evidence, detector=DETECTOR)

    # -- state -----------------------------------------------------------------------------
    def to_state(self, include_reference: bool = True) -> dict[str, Any]:
        """JSON-serialisable state. The reference (float16, ~0.75 MiB raw for 1000×384) can be
        left out and stored once per ``reference_id`` with ``reference_state()``."""
        recent = list(self._recent)
        state: dict[str, Any] = {
            "v": STATE_VERSION,
            "subject": self.subject,
            "config_version": self.config_version,
            "position": self.position,
            "since_reference": self.since_reference,
            "quiet_until": self.quiet_until,
            "reference_id": self.reference_id,
            "reference_history": self.reference_history,
            "recent": encode_vectors(np.stack([v for v, _ in recent])) if recent else None,
            "recent_ids": [i for _, i in recent],
            "baseline": encode_vectors(np.stack([v for v, _ in self._baseline])) if self._baseline else None,
            "baseline_ids": [i for _, i in self._baseline],
        }
        if include_reference:
            state["reference"] = self.reference_state()
        return state

    def reference_state(self) -> dict[str, Any] | None:
        """The reference alone (``None`` while the baseline is still being collected)."""
        return None if self.reference is None else encode_vectors(self.reference)

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        config: EmbeddingDriftConfig,
        reference: Mapping[str, Any] | None = None,
    ) -> EmbeddingDriftDetector:
        """Rebuild from ``to_state()``; pass ``reference`` if it was stored separately."""
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"embedding drift state v={state.get('v')}, expected {STATE_VERSION}")
        det = cls(config, state["subject"], state["config_version"])
        ref_blob = reference if reference is not None else state.get("reference")
        if state["reference_id"] and ref_blob is None:
            raise ValueError(f"state needs reference {state['reference_id']}: pass reference=")
        if ref_blob is not None:
            det.reference = decode_vectors(ref_blob)
            det.reference_id = state["reference_id"]
            det._build_tests()
        det.reference_history = list(state["reference_history"])
        det.position = int(state["position"])
        det.since_reference = int(state["since_reference"])
        det.quiet_until = int(state["quiet_until"])
        if state["baseline"] is not None:
            det._baseline = list(zip(decode_vectors(state["baseline"]), state["baseline_ids"], strict=True))
        if state["recent"] is not None:
            det._recent.extend(zip(decode_vectors(state["recent"]), state["recent_ids"], strict=True))
            recent = decode_vectors(state["recent"])
            if det._centroid is not None:
                det._centroid.load_window(recent[-det._centroid.window_size :])
            if det._novelty is not None:
                det._novelty.load_window(recent[-det._novelty.window_size :])
        return det
