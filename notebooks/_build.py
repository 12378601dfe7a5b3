"""Write the notebooks from the cell sources below (run after editing a cell):

    .venv/bin/python notebooks/_build.py

Notebooks are stored without outputs; tests/test_notebooks.py executes them.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are rendered to PNG and displayed with display()
import matplotlib.pyplot as plt
from IPython.display import Image, display

REPO = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").is_file())
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def show_figure(fig: plt.Figure, path: Path | None = None) -> None:
    """Render to PNG (Agg), display it, keep a copy at ``path``."""
    import io

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    if path is not None:
        path.write_bytes(buf.getvalue())
    display(Image(buf.getvalue()))
    plt.close(fig)'''

PARAMS_WORK = '''\
# parameters (papermill: `-p work_dir ...`)
work_dir = os.environ.get("WARDEN_NOTEBOOK_DIR", str(REPO / "var" / "notebooks"))'''


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text)


def code(text: str, *, parameters: bool = False) -> nbformat.NotebookNode:
    cell = new_code_cell(text)
    if parameters:
        cell.metadata["tags"] = ["parameters"]
    return cell


def traffic() -> list[nbformat.NotebookNode]:
    return [
        md("# 1. Traffic in ClickHouse\n\n"
           "Explores the tables a live pipeline writes (`traces`, `findings`) in the embedded engine "
           "(chDB). When the database under `work_dir` is empty, the notebook makes its own data: "
           "`streams.loadgen` traces with incidents (an error burst, PII, secrets, a cost rise, a few "
           "malformed records) are recorded to JSON lines, replayed through the worker's detectors with "
           "`streams.replay.Replay` (what `warden replay` runs), and the redacted traces and findings "
           "are inserted with the sink's row layouts (`sinks.tables`). A running `warden worker` writes "
           "the same rows to the same tables; point `dsn` at its database (stop the worker first: one "
           "process owns an embedded engine) or at a ClickHouse server."),
        code(SETUP),
        code(PARAMS_WORK + '\ndsn = None  # default: chdb:// under work_dir\ncount = 4000\nrate = 10.0  # traces per second of event time',
             parameters=True),
        code('''\
from sinks.clickhouse import ClickHouseStore

work = Path(work_dir)
work.mkdir(parents=True, exist_ok=True)
dsn = dsn or f"chdb://{work / 'clickhouse'}"
store = ClickHouseStore(dsn)
store.migrate()
stored = store.query_rows("SELECT count() FROM traces")[0][0]
print(f"{dsn}: {stored} traces stored")'''),
        md("## Build the data set (only when the database is empty)"),
        code('''\
import json
import random
from datetime import UTC, datetime, timedelta

from sinks import tables
from sinks.clickhouse import batch_token
from streams.loadgen import LoadPlan, make_trace, malformed
from streams.replay import Replay

INCIDENTS = ["error_burst@0.3:0.1", "pii@0.5:0.05", "secret@0.55:0.02", "cost@0.6:0.4"]


def record_traces(path: Path) -> None:
    """loadgen traffic ending now (the traces table keeps 30 days), plus a few broken lines."""
    plan = LoadPlan.build(count=count, rate=rate, routes=4, trace_kb=1.0, incidents=INCIDENTS, seed=11)
    rng = random.Random(11)
    start = datetime.now(UTC) - timedelta(seconds=count / rate)
    with path.open("wb") as out:
        for i in range(count):
            if i % 1000 == 500:
                out.write(malformed(i, rng) + b"\\n")
            out.write(json.dumps(make_trace(plan, i, rng, start + timedelta(seconds=i / rate))).encode() + b"\\n")


def store_batch(layout: tables.TableLayout, records: list[dict]) -> None:
    rows, keys = tables.rows_for(layout, records)
    store.insert(layout.table, layout.columns, rows, dedup_token=batch_token(layout.table, keys))


if stored == 0:
    recording = work / "traces.jsonl"
    record_traces(recording)
    replay = Replay(REPO / "deploy" / "config", embeddings=False, keep_redacted=True)
    skipped = []
    with recording.open("rb") as lines:
        for batch in replay.run(lines):
            store_batch(tables.TRACES, batch.redacted)
            store_batch(tables.FINDINGS, batch.findings)
            skipped += batch.errors
    print(f"recorded {count} traces to {recording}; skipped lines:")
    for error in skipped:
        print("  ", error.to_dict())'''),
        md("## Traffic by route and model"),
        code('''\
def show(sql: str) -> None:
    print(store.query_readonly(sql, fmt="PrettyCompactMonoBlock").decode())


show("""
SELECT route, model, count() AS requests, countIf(status = 'error') AS errors,
       round(quantile(0.5)(latency_ms)) AS p50_ms, round(quantile(0.95)(latency_ms)) AS p95_ms,
       round(quantile(0.99)(latency_ms)) AS p99_ms, round(sum(cost_usd), 4) AS cost_usd
FROM traces FINAL GROUP BY route, model ORDER BY route, model""")'''),
        code('''\
rows = store.query_rows("""
SELECT toStartOfMinute(timestamp) AS minute, route, count(), countIf(status = 'error'),
       sum(cost_usd) / count()
FROM traces FINAL GROUP BY minute, route ORDER BY minute, route""")
routes = sorted({r[1] for r in rows})
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8))
for route in routes:
    series = [r for r in rows if r[1] == route]
    minutes = [r[0] for r in series]
    ax1.plot(minutes, [r[3] / r[2] for r in series], marker=".", label=route)
    ax2.plot(minutes, [r[4] * 1e3 for r in series], marker=".", label=route)
ax1.set(title="error share per minute", ylabel="errors / requests")
ax2.set(title="mean cost per request", ylabel="USD per 1,000 requests")
for ax in (ax1, ax2):
    ax.tick_params(axis="x", rotation=30)
ax2.legend(fontsize=8)
show_figure(fig, work / "traffic.png")'''),
        md("## Latency distribution and redactions"),
        code('''\
latency = store.query_rows("SELECT model, latency_ms FROM traces FINAL")
fig, ax = plt.subplots(figsize=(6, 3.5))
for model in sorted({m for m, _ in latency}):
    ax.hist([x for m, x in latency if m == model], bins=40, alpha=0.6, label=model)
ax.set(title="latency", xlabel="ms", ylabel="requests")
ax.legend()
show_figure(fig)

show("""
SELECT entity, sum(n) AS found, count() AS traces
FROM traces FINAL ARRAY JOIN mapKeys(redaction_counts) AS entity, mapValues(redaction_counts) AS n
GROUP BY entity ORDER BY found DESC""")'''),
        md("## Findings"),
        code('''\
show("""
SELECT kind, severity, route, model, count() AS findings, min(at) AS first, any(config_version) AS config
FROM findings FINAL GROUP BY kind, severity, route, model ORDER BY first""")
kinds = {k for (k,) in store.query_rows("SELECT DISTINCT kind FROM findings FINAL")}
assert "error_rate.high" in kinds, "the error burst should have been found"
assert any(k.startswith("redaction.") for k in kinds), "the planted PII/secrets in completions"'''),
        code("store.close()"),
    ]


def drift_sweep() -> list[nbformat.NotebookNode]:
    return [
        md("# 2. Embedding drift: detection delay vs false alarms\n\n"
           "A small recorded set is built from the prompt corpus the project ships (`streams/sim/corpus`, "
           "written for Warden; ten domains, the category is the domain) as `InferenceTrace` JSON lines: a stable stream, and streams whose topic mix "
           "shifts at a known trace. Prompts are mapped to texts exactly as the replay maps them "
           "(`streams.replay.drift_texts`), encoded once with the configured sentence encoder (cached "
           "under `var/cache`), and replayed through `EmbeddingDriftDetector` for a few settings of "
           "`expected_run_length` (the false-alarm budget) and `window_size`. Each alarm is counted "
           "(`realert_after=1`)."),
        code(SETUP),
        code(PARAMS_WORK + '''
per_domain = 200  # 2,000 prompts: distinct messages of each of the ten domains
reference_size = 300
run_lengths = [300, 3_000, 30_000, 100_000]
test_every = 50
window_sizes = [50, 100]''', parameters=True),
        code('''\
import json
from datetime import UTC, datetime, timedelta

import numpy as np

from detectors.drift import EmbeddingDriftConfig, EmbeddingDriftDetector
from detectors.drift import scenarios as sc
from detectors.embeddings import SentenceEncoder, cached_encode
from streams.records import InferenceTrace
from streams.replay import drift_texts
from streams.sim.corpus import prompt_rows

work = Path(work_dir)
work.mkdir(parents=True, exist_ok=True)
rows = prompt_rows(per_domain)
pick = np.random.default_rng(2024).permutation(len(rows))
labels = [rows[i]["category"] for i in pick]
cats = sorted(set(labels))


def as_trace(i: int, prompt: str, at: datetime) -> dict:
    return {"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "timestamp": at.isoformat(),
            "tenant": "acme", "application": "assistant", "route": "support-chat", "provider": "openai",
            "request_model": "gpt-4o-mini", "input_messages": [{"role": "user", "content": prompt}],
            "output_messages": [{"role": "assistant", "content": "ok"}]}


# The recording: one trace per corpus prompt, written once and read back like any recording.
recording = work / "drift_traces.jsonl"
start = datetime(2025, 6, 15, tzinfo=UTC)
recording.write_text("".join(json.dumps(as_trace(k, rows[i]["prompt"], start + timedelta(seconds=k))) + "\\n"
                             for k, i in enumerate(pick)))
traces = [InferenceTrace.model_validate_json(line) for line in recording.read_text().splitlines()]
texts = [drift_texts(t, ["prompt"])["prompt"] for t in traces]
vectors = cached_encode(SentenceEncoder(device="cpu"), texts, REPO / "var" / "cache")
print(len(traces), "traces,", vectors.shape, "embeddings;", len(cats), "topics")'''),
        code('''\
n_before, n_after = reference_size + 300, 300
mix = sc.uniform_mix(cats)
streams = {
    "stable": sc.stable(labels, n_before + n_after, mix, seed=1),
    "new topics": sc.abrupt(labels, n_before, n_after, sc.uniform_mix(cats[:5]), sc.uniform_mix(cats[5:]), seed=2),
    "dominant topic": sc.abrupt(labels, n_before, n_after, mix, {**mix, cats[0]: 8.0}, seed=3),
}


def alarms(order: np.ndarray, cfg: EmbeddingDriftConfig) -> list[int]:
    det = EmbeddingDriftDetector(cfg, {"route": "support-chat", "model": "gpt-4o-mini", "field": "prompt"})
    return [p for p, item in enumerate(order)
            if det.update(vectors[item], traces[item].trace_id, traces[item].timestamp.timestamp())]


results = []
for erl in run_lengths:
    for window in window_sizes:
        cfg = EmbeddingDriftConfig(reference={"size": reference_size}, window_size=window, test_every=test_every,
                                   expected_run_length=erl, realert_after=1)
        monitored = len(streams["stable"].order) - reference_size
        false = len(alarms(streams["stable"].order, cfg))
        row = {"expected_run_length": erl, "window_size": window,
               "false_alarms_per_1k": 1000 * false / monitored}
        for name in ("new topics", "dominant topic"):
            s = streams[name]
            hits = alarms(s.order, cfg)
            after = [p - s.change_at for p in hits if p >= s.change_at]
            row["false_alarms_per_1k"] += 1000 * (len(hits) - len(after)) / (s.change_at - reference_size) / 3
            row[f"delay {name}"] = after[0] if after else None  # traces after the shift; None: missed
        results.append(row)
for row in results:
    print(row)'''),
        code('''\
fig, ax = plt.subplots(figsize=(7, 4))
for name, marker in (("new topics", "o"), ("dominant topic", "s")):
    for window in window_sizes:
        pts = [r for r in results if r["window_size"] == window and r[f"delay {name}"] is not None]
        ax.plot([r["false_alarms_per_1k"] for r in pts], [r[f"delay {name}"] for r in pts], marker=marker,
                label=f"{name}, window {window}")
        for r in pts:
            ax.annotate(f"ERL {r['expected_run_length']:.0e}", (r["false_alarms_per_1k"], r[f"delay {name}"]),
                        fontsize=7)
ax.set(xlabel="false alarms per 1,000 stable traces", ylabel="detection delay (traces after the shift)",
       title="embedding drift: delay vs false alarms")
ax.legend(fontsize=8)
show_figure(fig, work / "drift_sweep.png")'''),
        md("Choice: the largest run length that still detects both shifts, with the faster window "
           "among those; written to `drift_choice.json` for notebook 4 (the reference size stays what "
           "the config says: a longer reference only narrows the test). A stream this short measures "
           "false alarms coarsely; `bench/bench_drift.py` runs the long stable streams."),
        code('''\
detecting = [r for r in results if r["delay new topics"] is not None and r["delay dominant topic"] is not None]
assert detecting, "no setting detected both shifts"
best = max(detecting, key=lambda r: (r["expected_run_length"],
                                     -(r["delay new topics"] + r["delay dominant topic"])))
choice = {"expected_run_length": best["expected_run_length"], "window_size": best["window_size"],
          "test_every": test_every}
(work / "drift_choice.json").write_text(json.dumps(choice))
print("chosen:", choice)'''),
    ]


def cost_sweep() -> list[nbformat.NotebookNode]:
    return [
        md("# 3. Cost regressions: detection delay vs false alarms\n\n"
           "Synthetic routes from `detectors.cost.synthetic` (agent runs, heavy-tailed prompts, retries) "
           "with a known change point, replayed through `CostGovernor` (what `streams.economics` runs "
           "in the worker) for several in-control run lengths `arl0` of the CUSUM charts. False alarms "
           "are regressions on the stable route or before the change; delay is the event time from the "
           "change to the first regression."),
        code(SETUP),
        code(PARAMS_WORK + '''
arl0s = [1e3, 1e4, 1e5, 1e6, 1e7]
scenarios = ["prompt_growth", "agent_loop", "model_switch"]
seeds = [1, 2]
n_before, n_after = 2500, 1500''', parameters=True),
        code('''\
import json

from detectors.cost import load_cost_policy, synthetic
from detectors.cost.governor import CostGovernor

work = Path(work_dir)
work.mkdir(parents=True, exist_ok=True)
policy = load_cost_policy(REPO / "deploy" / "config" / "budgets.yaml")
streams = {(name, seed): synthetic.generate(name, n_before, n_after, seed=seed)
           for name in ["stable", *scenarios] for seed in seeds}


def regressions(stream: synthetic.SyntheticStream, arl0: float) -> list[float]:
    """Event times of cost.regression findings, relative to the change (seconds)."""
    tuned = policy.model_copy(update={"regression": policy.regression.model_copy(update={"arl0": arl0})})
    governor = CostGovernor(stream.catalog, tuned)
    found = [f for s in stream.samples for f in governor.update(s, stream.events)]
    found += governor.flush(stream.events)
    return [f.at - stream.change_at for f in found if f.kind == "cost.regression"]


results = []
for arl0 in arl0s:
    false, hours, delays = 0, 0.0, {}
    for (name, _seed), stream in streams.items():
        times = regressions(stream, arl0)
        span_h = (stream.samples[-1].at - stream.samples[0].at) / 3600
        if name == "stable":
            false, hours = false + len(times), hours + span_h
            continue
        false += sum(t < 0 for t in times)
        hours += (stream.change_at - stream.samples[0].at) / 3600
        after = [t for t in times if t >= 0]
        delays.setdefault(name, []).append(after[0] / 60 if after else None)
    results.append({"arl0": arl0, "false_alarms_per_day": 24 * false / hours,
                    **{f"delay {n} (min)": d for n, d in delays.items()}})
for row in results:
    print(row)'''),
        code('''\
fig, ax = plt.subplots(figsize=(7, 4))
for name in scenarios:
    pts = [(r["false_alarms_per_day"], sum(d for d in r[f"delay {name} (min)"] if d is not None)
            / max(1, sum(d is not None for d in r[f"delay {name} (min)"])), r["arl0"]) for r in results]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    for x, y, arl0 in pts:
        ax.annotate(f"{arl0:.0e}", (x, y), fontsize=7)
ax.set(xlabel="false alarms per day (1 call/s)", ylabel="mean delay to first regression (min)",
       title="cost regression: delay vs false alarms, by arl0")
ax.legend(fontsize=8)
show_figure(fig, work / "cost_sweep.png")'''),
        md("Choice: the smallest `arl0` with no false alarm in the sweep (the fastest quiet setting), "
           "written to `cost_choice.json` for notebook 4."),
        code('''\
quiet = [r for r in results if r["false_alarms_per_day"] == 0] or [results[-1]]
choice = {"arl0": min(r["arl0"] for r in quiet)}
(work / "cost_choice.json").write_text(json.dumps(choice))
print("chosen:", choice)'''),
    ]


def write_config() -> list[nbformat.NotebookNode]:
    return [
        md("# 4. Write the chosen settings to the versioned detector config\n\n"
           "Reads the choices of notebooks 2 and 3 (or the current values when they have not run), "
           "writes `detectors.yaml` (drift) and `budgets.yaml` (cost regression) with a bumped "
           "`version:` into `output_dir`, validates them with the loaders the worker uses, and shows "
           "the diff. By default `output_dir` is a copy under `work_dir`; set it to `deploy/config` "
           "to change the real configuration (then review and commit the diff)."),
        code(SETUP),
        code(PARAMS_WORK + '''
output_dir = None  # default: <work_dir>/config (a copy); REPO / "deploy" / "config" to update the real one
source_dir = str(REPO / "deploy" / "config")''', parameters=True),
        code('''\
import difflib
import json
import re
import shutil
from datetime import UTC, datetime

import yaml

from detectors.config import dump_detectors_config, load_detectors_config
from detectors.cost import load_cost_policy

work = Path(work_dir)
source = Path(source_dir)
target = Path(output_dir) if output_dir else work / "config"
target.mkdir(parents=True, exist_ok=True)
if target.resolve() != source.resolve():
    for path in source.glob("*.yaml"):
        shutil.copy(path, target / path.name)

drift_choice = json.loads((work / "drift_choice.json").read_text()) if (work / "drift_choice.json").exists() else {}
cost_choice = json.loads((work / "cost_choice.json").read_text()) if (work / "cost_choice.json").exists() else {}
print("drift:", drift_choice or "unchanged", "| cost:", cost_choice or "unchanged")


def bump(version: str) -> str:
    """[prefix]YYYY-MM-DD.N with today's date; N counts the versions of one day."""
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    m = re.fullmatch(r"(.*?)(\\d{4}-\\d{2}-\\d{2})?(?:\\.(\\d+))?", version)
    prefix, day, n = m.groups() if m else (version, None, None)
    prefix = prefix if day or not prefix else f"{prefix}-"
    return f"{prefix}{today}.{int(n) + 1 if day == today and n else 1}"


def show_diff(name: str, before: str, after: str) -> None:
    print("".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                       f"{source / name}", f"{target / name}")) or f"{name}: no change")'''),
        code('''\
old = load_detectors_config(source / "detectors.yaml")
drift = old.drift_or_default()
embedding = drift.embedding.model_copy(update=drift_choice)
new = old.model_copy(update={"version": bump(old.version),
                             "drift": drift.model_copy(update={"embedding": type(embedding).model_validate(embedding.model_dump())})})
(target / "detectors.yaml").write_text(dump_detectors_config(new))
loaded = load_detectors_config(target / "detectors.yaml")  # the worker's loader accepts it
assert loaded.version == new.version
show_diff("detectors.yaml", dump_detectors_config(old), dump_detectors_config(loaded))'''),
        code('''\
budgets_text = (source / "budgets.yaml").read_text()
doc = yaml.safe_load(budgets_text)
doc["version"] = bump(str(doc["version"]))
doc["regression"].update(cost_choice)
(target / "budgets.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
policy = load_cost_policy(target / "budgets.yaml")
assert policy.version == doc["version"]
show_diff("budgets.yaml", yaml.safe_dump(yaml.safe_load(budgets_text), sort_keys=False),
          (target / "budgets.yaml").read_text())
print("written to", target)'''),
    ]


NOTEBOOKS = {
    "01_traffic.ipynb": traffic,
    "02_drift_sweep.ipynb": drift_sweep,
    "03_cost_sweep.ipynb": cost_sweep,
    "04_write_config.ipynb": write_config,
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells())
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    main()
