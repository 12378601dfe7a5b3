"""``warden replay`` (streams/replay.py, streams/cli_replay.py) over loadgen traffic with
incidents: the findings equal what the detectors produce when fed the same traces
directly, incidents show up as their findings, bad lines are reported and skipped.

One recorded file is replayed once per module (about 15 s on 2 cores); embeddings come from
a deterministic stand-in encoder (topic vector + per-text noise), so no model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from detectors.breaker import load_policy
from detectors.cost import load_cost_policy, load_price_catalog
from detectors.cost.governor import CostGovernor
from detectors.drift import ScalarDriftMonitor
from detectors.error_rate import ErrorRateDetector
from streams.cli_replay import register
from streams.config import CONFIG_DIR
from streams.loadgen import LoadPlan, make_trace
from streams.records import InferenceTrace, TraceStatus
from streams.replay import (
    DriftScope,
    Replay,
    ReplayBatch,
    replay_file,
    resolve_config_dir,
    scalar_values,
)
from streams.values import cost_sample

COUNT = 6000
RATE = 20.0  # traces per second of event time
START = datetime(2025, 6, 15, tzinfo=UTC)
INCIDENTS = ["error_burst@0.2:0.1", "cost@0.55:0.45", "drift@0.6:0.4"]
BAD_LINES = {3: "{not json", 10: '"a string"', 20: '{"schema_version": 1, "trace_id": 42}',
             30: '{"schema_version": 9}'}


class TopicEncoder:
    """Stand-in sentence encoder: the text's topic (the text before ' #') fixes the mean,
    the full text adds small noise, so paraphrases of one topic sit close together."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for text in texts:
            topic = np.random.default_rng(_seed(text.split(" #")[0])).normal(size=16)
            noise = np.random.default_rng(_seed(text)).normal(size=16)
            v = topic + 0.6 * noise
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def loadgen_traces(count: int) -> list[dict[str, Any]]:
    plan = LoadPlan.build(count=count, rate=RATE, routes=3, trace_kb=1.0, incidents=INCIDENTS, seed=3)
    rng = random.Random(3)
    traces = []
    for i in range(count):
        trace = make_trace(plan, i, rng, START + timedelta(seconds=i / RATE))
        # loadgen repeats six prompts; real prompts are all different
        trace["input_messages"][-1]["content"] += f" #{i}"
        traces.append(trace)
    return traces


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/config with a drift section sized for a short recording."""
    target = tmp_path_factory.mktemp("config")
    shutil.copytree(CONFIG_DIR, target, dirs_exist_ok=True)
    doc = yaml.safe_load((target / "detectors.yaml").read_text())
    doc["version"] = "test-replay.1"
    doc["drift"]["sampling"]["rates"] = {"low": 1.0, "medium": 1.0, "high": 1.0}
    doc["drift"]["embedding"].update(fields=["prompt"], reference={"mode": "fixed", "size": 200},
                                     window_size=50, test_every=50, expected_run_length=20_000,
                                     realert_after=400)
    (target / "detectors.yaml").write_text(yaml.safe_dump(doc))
    return target


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[InferenceTrace]]:
    path = tmp_path_factory.mktemp("rec") / "traces.jsonl"
    traces = loadgen_traces(COUNT)
    lines = [json.dumps(t) for t in traces]
    for at in sorted(BAD_LINES):  # 1-based line numbers in the final file
        lines.insert(at - 1, BAD_LINES[at])
    lines.insert(40, "")  # blank lines are skipped, not errors
    path.write_text("\n".join(lines) + "\n")
    return path, [InferenceTrace.model_validate(t) for t in traces]


@pytest.fixture(scope="module")
def replayed(recording: tuple[Path, list[InferenceTrace]], config_dir: Path) -> ReplayBatch:
    return replay_file(recording[0], config_dir, encoder=TopicEncoder())


def of_kind(batch: ReplayBatch, prefix: str) -> list[dict[str, Any]]:
    return [f for f in batch.findings if f["kind"].startswith(prefix)]


def test_every_valid_line_is_replayed_and_bad_ones_reported(replayed: ReplayBatch) -> None:
    assert replayed.traces == COUNT
    assert {e.line: e.error_kind for e in replayed.errors} == {
        3: "malformed_json", 10: "wrong_type", 20: "schema_violation", 30: "unsupported_schema_version"}
    assert all(e.reason for e in replayed.errors)


def test_error_burst_gives_the_error_rate_findings_of_the_detector(
        replayed: ReplayBatch, recording: tuple[Path, list[InferenceTrace]], config_dir: Path) -> None:
    policy = load_policy(config_dir / "breaker-policy.yaml")
    direct: dict[str, ErrorRateDetector] = {}
    expected = []
    for trace in recording[1]:
        subject = {"route": trace.route, "model": trace.request_model}
        det = direct.setdefault(trace.partition_key,
                                ErrorRateDetector(policy.error_rate_for(subject), subject))
        finding = det.update(trace.status == TraceStatus.error, trace.timestamp.timestamp())
        if finding is not None:
            expected.append(finding.finding_id)
    got = of_kind(replayed, "error_rate.")
    assert [f["finding_id"] for f in got] == expected
    high = [f for f in got if f["kind"] == "error_rate.high"]
    assert high and high[0]["subject"] == {"route": "support-chat", "model": "gpt-4o-mini"}
    assert high[0]["severity"] == "critical" and high[0]["config_version"] == policy.version


def test_cost_incident_gives_the_cost_findings_of_the_governor(
        replayed: ReplayBatch, recording: tuple[Path, list[InferenceTrace]], config_dir: Path) -> None:
    governor = CostGovernor(load_price_catalog(config_dir / "prices.yaml"),
                            load_cost_policy(config_dir / "budgets.yaml"))
    expected = [f.finding_id for t in recording[1] for f in governor.update(cost_sample(t))]
    expected += [f.finding_id for f in governor.flush()]
    got = of_kind(replayed, "cost.")
    assert sorted(f["finding_id"] for f in got) == sorted(expected)
    regressions = [f for f in got if f["kind"] == "cost.regression"]
    assert regressions, "the 60% prompt growth on checkout-assistant was not found"
    assert {f["subject"]["route"] for f in regressions} == {"checkout-assistant"}
    assert all(f["evidence"]["driver"] == "input_tokens" for f in regressions)
    incident_at = (START + timedelta(seconds=0.55 * COUNT / RATE)).timestamp()
    assert all(f["at"] >= incident_at for f in regressions)


def test_scalar_drift_findings_equal_the_monitors_fed_directly(
        replayed: ReplayBatch, recording: tuple[Path, list[InferenceTrace]], config_dir: Path) -> None:
    replay = Replay(config_dir, embeddings=False)
    drift = replay.drift.drift
    monitors: dict[str, ScalarDriftMonitor] = {}
    expected = []
    for trace in recording[1]:
        mon = monitors.setdefault(trace.partition_key, ScalarDriftMonitor(
            drift.scalar, {"route": trace.route, "model": trace.request_model}, "test-replay.1"))
        expected += [f.finding_id for f in mon.update(scalar_values(trace), trace.timestamp.timestamp())]
    got = of_kind(replayed, "drift.scalar")
    assert sorted(f["finding_id"] for f in got) == sorted(expected)
    signals = {(f["subject"]["route"], f["subject"]["signal"]) for f in got}
    assert ("support-chat", "error") in signals  # the error burst
    assert all(f["config_version"] == "test-replay.1" for f in got)


def test_topic_shift_gives_embedding_drift_on_that_route_only(replayed: ReplayBatch) -> None:
    got = of_kind(replayed, "drift.embedding")
    shift_at = (START + timedelta(seconds=0.6 * COUNT / RATE)).timestamp()
    assert {f["subject"]["route"] for f in got} == {"code-review"}
    assert all(f["subject"]["field"] == "prompt" and f["at"] >= shift_at for f in got)


def test_drift_scope_state_round_trip_continues_identically(
        recording: tuple[Path, list[InferenceTrace]], config_dir: Path) -> None:
    replay = Replay(config_dir, encoder=TopicEncoder())
    traces = [t for t in recording[1] if t.partition_key == "code-review|gpt-4o-mini"]
    vectors = replay.drift.vectors(traces)
    drift = replay.drift.drift
    first = DriftScope({"route": "code-review", "model": "gpt-4o-mini"}, drift, "v")
    half = len(traces) * 2 // 3
    for trace, vec in zip(traces[:half], vectors[:half], strict=True):
        first.observe(trace, vec)
    restored = DriftScope.from_state(json.loads(json.dumps(first.to_state())), drift)
    rest = list(zip(traces[half:], vectors[half:], strict=True))
    assert [f.finding_id for t, v in rest for f in first.observe(t, v)] == \
        [f.finding_id for t, v in rest for f in restored.observe(t, v)]


def test_config_accepts_the_directory_or_its_detectors_yaml(config_dir: Path, tmp_path: Path) -> None:
    assert resolve_config_dir(config_dir) == config_dir
    assert resolve_config_dir(config_dir / "detectors.yaml") == config_dir
    with pytest.raises(FileNotFoundError, match="--config"):
        resolve_config_dir(tmp_path / "missing")


def test_cli_writes_json_lines_and_reports_bad_lines_on_stderr(config_dir: Path, tmp_path: Path) -> None:
    traces = loadgen_traces(400)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([json.dumps(t).encode() for t in traces[:200]] + [b"\xff\xfe", b"[]"]
                                + [json.dumps(t).encode() for t in traces[200:]]) + b"\n")
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a Typer with one command would make `replay` the root
    out = tmp_path / "findings.jsonl"
    result = CliRunner().invoke(app, ["replay", "--input", str(path), "--config",
                                      str(config_dir / "detectors.yaml"), "--output", str(out),
                                      "--no-embeddings", "--summary"])
    assert result.exit_code == 1, result.output  # bad lines were skipped
    errors = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(e.get("line"), e.get("error_kind")) for e in errors[:-1]] == [(201, "invalid_utf8"), (202, "wrong_type")]
    assert errors[-1] == {"traces": 400, "findings": errors[-1]["findings"], "skipped_lines": 2}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == errors[-1]["findings"]
    assert all({"finding_id", "kind", "subject", "at", "config_version"} <= r.keys() for r in records)


def test_cli_stdout_and_exit_zero_on_a_clean_file(config_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in loadgen_traces(300)))
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["replay", "-i", str(path), "--config", str(config_dir), "--no-embeddings"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    for line in result.stdout.splitlines():
        assert json.loads(line)["kind"]
    bad = CliRunner().invoke(app, ["replay", "-i", str(path), "--config", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "--config" in bad.stderr


def test_traffic_summaries_are_not_findings(replayed: ReplayBatch) -> None:
    kinds: defaultdict[str, int] = defaultdict(int)
    for f in replayed.findings:
        kinds[f["kind"]] += 1
    assert "breaker.traffic" not in kinds
