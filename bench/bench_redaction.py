"""Warden redaction vs Microsoft Presidio and detect-secrets: throughput and accuracy, one run.

Usage::

    python3 -m venv .venv-presidio && .venv-presidio/bin/pip install -r bench/requirements-presidio.txt
    python3 -m venv .venv-detect-secrets && .venv-detect-secrets/bin/pip install -r bench/requirements-detect-secrets.txt
    nice .venv/bin/python bench/bench_redaction.py [--quick]

The peers run in their own virtualenvs as subprocesses of this script (``--worker``),
on exactly the texts Warden gets; each tool times only its own analyse+replace calls.

* Presidio (presidio-analyzer + presidio-anonymizer) uses its predefined pattern
  recognizers on a blank spaCy English pipeline (no model download), default score
  threshold; anonymizer replaces with ``<ENTITY>``.
* detect-secrets 1.5.0 scans each text as a file (``SecretsCollection.scan_file``) with its
  default plugins and filters.

Throughput texts are 2 KB and 25 KB, in two corpora: ``dense`` (lines of the dev PII and
secret sets back to back: an entity every ~100 characters, Warden's worst case) and
``prompt`` (CLINC user prompts with one dev line in twenty, closer to real traffic).
Accuracy: precision/recall per shared entity type on ``../shared/data`` (scoring in
``redaction_eval.py``). Results: table on stdout, JSON in ``bench/results/bench_redaction.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "bench_redaction.json"
PEERS = {"presidio": ROOT / ".venv-presidio", "detect-secrets": ROOT / ".venv-detect-secrets"}
SIZES = {"2KB": 2048, "25KB": 25 * 1024}


# ----------------------------------------------------------------------------- peers (run in their venvs)
def _presidio_worker(job: dict[str, Any]) -> dict[str, Any]:
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_anonymizer import AnonymizerEngine

    # The e-mail recognizer calls tldextract, which would fetch the suffix list over the
    # network; use the snapshot bundled with the package instead.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    blank = spacy.blank("en")

    class BlankSpacy(SpacyNlpEngine):
        def __init__(self) -> None:
            super().__init__(models=[{"lang_code": "en", "model_name": "blank-en"}])
            self.nlp = {"en": blank}

        def load(self) -> None:  # nothing to download: the blank pipeline is built above
            return None

    engine = BlankSpacy()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=engine)
    analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])
    anonymizer = AnonymizerEngine()

    def run(text: str) -> list[tuple[str, int, int]]:
        found = analyzer.analyze(text, language="en")
        anonymizer.anonymize(text=text, analyzer_results=found)
        return [(r.entity_type, r.start, r.end) for r in found]

    return _time_and_predict(job, run)


def _detect_secrets_worker(job: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    # detect-secrets' normal mode scans files (``scan_line`` is its ad-hoc mode that reports
    # every word's entropy); each text is written to its own file first, outside the timing.
    tmp = Path(tempfile.mkdtemp(prefix="bench-ds-"))
    paths: dict[str, str] = {}

    def path_for(text: str) -> str:
        if text not in paths:
            p = tmp / f"t{len(paths)}.txt"
            p.write_text(text, encoding="utf-8")
            paths[text] = str(p)
        return paths[text]

    for texts in (*job["accuracy"].values(), *job["throughput"].values()):
        for text in texts:
            path_for(text)

    def run(text: str) -> list[tuple[str, int, int]]:
        collection = SecretsCollection()
        collection.scan_file(path_for(text))
        lines = text.split("\n")
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line) + 1)
        out: list[tuple[str, int, int]] = []
        for _, secret in collection:
            line = lines[secret.line_number - 1] if 0 < secret.line_number <= len(lines) else ""
            value = secret.secret_value or ""
            i = line.find(value) if value else -1
            if i >= 0:
                base = starts[secret.line_number - 1]
                out.append((secret.type, base + i, base + i + len(value)))
            elif line:  # value not recoverable: count the whole line as the finding
                base = starts[secret.line_number - 1]
                out.append((secret.type, base, base + len(line)))
        return out

    with default_settings():
        return _time_and_predict(job, run)


def _time_and_predict(job: dict[str, Any], run: Any) -> dict[str, Any]:
    predictions = {name: [run(t) for t in rows] for name, rows in job["accuracy"].items()}
    return {"predictions": predictions, "seconds": best_of(job, run)}


def best_of(job: dict[str, Any], run: Any) -> dict[str, float]:
    """Seconds per corpus, the best of ``job["repeat"]`` rounds (the machine is shared)."""
    timings: dict[str, float] = {}
    for key, texts in job["throughput"].items():
        run(texts[0])  # warm-up
        rounds = []
        for _ in range(job.get("repeat", 3)):
            t0 = time.perf_counter()
            for text in texts:
                run(text)
            rounds.append(time.perf_counter() - t0)
        timings[key] = min(rounds)
    return timings


# ----------------------------------------------------------------------------- corpora
def _rows(name: str, field: str = "text") -> list[str]:
    with (DATA / name).open(encoding="utf-8") as fh:
        return [json.loads(line)[field] for line in fh if line.strip()]


def build_corpora(quick: bool) -> dict[str, list[str]]:
    rng = random.Random(1234)
    dense_pool = _rows("pii_dev.jsonl") + _rows("secrets_dev.jsonl")
    prompts = _rows("prompts_dev.jsonl", "prompt")
    counts = {"2KB": 30 if quick else 120, "25KB": 4 if quick else 16}
    corpora: dict[str, list[str]] = {}
    for corpus in ("dense", "prompt"):
        for size_name, size in SIZES.items():
            texts = []
            for _ in range(counts[size_name]):
                parts, n = [], 0
                while n < size:
                    pool = dense_pool if corpus == "dense" or rng.random() < 0.05 else prompts
                    parts.append(rng.choice(pool))
                    n += len(parts[-1]) + 1
                texts.append("\n".join(parts)[:size])
            corpora[f"{corpus}/{size_name}"] = texts
    return corpora


# ----------------------------------------------------------------------------- driver
def run_peer(peer: str, job: dict[str, Any]) -> dict[str, Any] | None:
    python = PEERS[peer] / "bin" / "python"
    if not python.exists():
        print(f"!! {peer}: {python} missing; create it from bench/requirements-{peer}.txt", file=sys.stderr)
        return None
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [str(python), __file__, "--worker", peer], input=json.dumps(job), capture_output=True,
        text=True, env=env, check=False,
    )
    if proc.returncode != 0:
        print(f"!! {peer} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_warden(job: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from detectors.redaction import RedactionPolicy, Redactor, entity_category

    policy = RedactionPolicy.load(ROOT / "deploy" / "config" / "redaction-policy.yaml")
    redactor = Redactor(policy, key=b"bench-only-key-0123456789")

    def run(text: str) -> list[tuple[str, int, int]]:
        return [(f.entity, f.start, f.end) for f in redactor.redact(text).findings]

    out = _time_and_predict(job, run)
    # keep each set to its own category (see redaction_eval.warden_predictions)
    for name, category in (("pii", "pii"), ("secrets", "secret")):
        out["predictions"][name] = [
            [p for p in row if entity_category(p[0]) == category] for row in out["predictions"][name]
        ]
    traces = {k: [{"input_messages": [{"role": "user", "content": t}], "principal": "u-1"} for t in v]
              for k, v in job["throughput"].items()}
    by_trace = {id(tr["input_messages"][0]["content"]): tr for v in traces.values() for tr in v}
    out["trace_seconds"] = best_of(job, lambda text: redactor.redact_trace(by_trace[id(text)]))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=sorted(PEERS))
    parser.add_argument("--quick", action="store_true", help="fewer throughput texts")
    parser.add_argument("--repeat", type=int, default=3, help="timing rounds per corpus (best is kept)")
    args = parser.parse_args(argv)
    if args.worker:
        job = json.loads(sys.stdin.read())
        worker = _presidio_worker if args.worker == "presidio" else _detect_secrets_worker
        print(json.dumps(worker(job)))
        return

    sys.path.insert(0, str(ROOT / "bench"))
    import redaction_eval as ev

    pii_rows, secret_rows = ev.load_set("pii_dev.jsonl"), ev.load_set("secrets_dev.jsonl")
    corpora = build_corpora(args.quick)
    accuracy = {"pii": [r["text"] for r in pii_rows], "secrets": [r["text"] for r in secret_rows]}
    warden = run_warden({"accuracy": accuracy, "throughput": corpora, "repeat": args.repeat})
    presidio = run_peer("presidio", {"accuracy": {"pii": accuracy["pii"]}, "throughput": corpora,
                                     "repeat": args.repeat})
    secrets_job = {"accuracy": {"secrets": accuracy["secrets"]}, "repeat": args.repeat,
                   "throughput": {k: v for k, v in corpora.items() if k.startswith("dense")}}
    detect = run_peer("detect-secrets", secrets_job)
    report = summarise(ev, corpora, pii_rows, secret_rows, warden, presidio, detect)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {RESULTS}")


def _throughput(corpora: dict[str, list[str]], seconds: dict[str, float]) -> dict[str, dict[str, float]]:
    out = {}
    for key, secs in seconds.items():
        texts = corpora[key]
        mb = sum(len(t.encode()) for t in texts) / 1e6
        out[key] = {"MB_per_s": mb / secs, "traces_per_s": len(texts) / secs, "us_per_trace": secs / len(texts) * 1e6}
    return out


def summarise(ev: Any, corpora: dict[str, list[str]], pii_rows: list[dict[str, Any]],
              secret_rows: list[dict[str, Any]], warden: dict[str, Any],
              presidio: dict[str, Any] | None, detect: dict[str, Any] | None) -> dict[str, Any]:
    report: dict[str, Any] = {"throughput": {"warden": _throughput(corpora, warden["seconds"]),
                                             "warden_redact_trace": _throughput(corpora, warden["trace_seconds"])}}
    shared = ev.PII_TARGETS
    only_shared = [[p for p in row if p[0] in shared] for row in warden["predictions"]["pii"]]
    report["pii"] = {"warden": ev.score(pii_rows, only_shared, shared)}
    report["secrets"] = {"warden": ev.score(secret_rows, warden["predictions"]["secrets"], ev.SECRET_TARGETS, True)}
    report["secrets_by_type"] = {"warden": ev.score(secret_rows, warden["predictions"]["secrets"], ev.SECRET_TARGETS)}
    report["secrets_recall_by_gold_type"] = {
        "warden": ev.recall_by_gold_type(secret_rows, warden["predictions"]["secrets"], ev.SECRET_TARGETS)}
    if presidio:
        report["throughput"]["presidio"] = _throughput(corpora, presidio["seconds"])
        p_pred = [[tuple(p) for p in row if p[0] in shared] for row in presidio["predictions"]["pii"]]
        report["pii"]["presidio"] = ev.score(pii_rows, p_pred, shared)
    if detect:
        report["throughput"]["detect-secrets"] = _throughput(corpora, detect["seconds"])
        d_pred = [[tuple(p) for p in row] for row in detect["predictions"]["secrets"]]
        report["secrets"]["detect-secrets"] = ev.score(secret_rows, d_pred, ev.SECRET_TARGETS, True)
        report["secrets_recall_by_gold_type"]["detect-secrets"] = ev.recall_by_gold_type(
            secret_rows, d_pred, ev.SECRET_TARGETS)
    _print(report)
    return report


def _print(report: dict[str, Any]) -> None:
    tp = report["throughput"]
    print("\nThroughput (same texts, analyse + replace; higher is better)")
    print(f"{'corpus/size':16s} {'tool':22s} {'MB/s':>9s} {'traces/s':>10s} {'us/trace':>10s} {'vs Presidio':>12s}")
    for key in tp["warden"]:
        base = tp.get("presidio", {}).get(key)
        for tool in ("warden", "warden_redact_trace", "presidio", "detect-secrets"):
            row = tp.get(tool, {}).get(key)
            if row is None:
                continue
            ratio = f"{row['MB_per_s'] / base['MB_per_s']:10.1f}x" if base else ""
            print(f"{key:16s} {tool:22s} {row['MB_per_s']:9.2f} {row['traces_per_s']:10.1f} "
                  f"{row['us_per_trace']:10.0f} {ratio:>12s}")
    print("\nPersonal data, shared entity types (pii_dev.jsonl)")
    print(f"{'entity':16s} {'Warden P':>9s} {'Warden R':>9s} {'Presidio P':>11s} {'Presidio R':>11s} {'R ok':>5s}")
    for ent, w in report["pii"]["warden"].items():
        p = report["pii"].get("presidio", {}).get(ent)
        ok = "" if p is None else ("yes" if w["recall"] >= p["recall"] else "NO")
        pp = f"{p['precision']:11.3f} {p['recall']:11.3f}" if p else f"{'-':>11s} {'-':>11s}"
        print(f"{ent:16s} {w['precision']:9.3f} {w['recall']:9.3f} {pp} {ok:>5s}")
    print("\nSecrets, any credential (secrets_dev.jsonl)")
    for tool, res in report["secrets"].items():
        a = res["ALL"]
        print(f"{tool:16s} precision {a['precision']:.3f}  recall {a['recall']:.3f}  (tp {a['tp']}, fp {a['fp']}, fn {a['fn']})")
    by_type = report["secrets_recall_by_gold_type"]
    tools = list(by_type)
    print("\nSecrets, recall per gold type (any credential overlapping it counts)")
    print(f"{'entity':28s} " + " ".join(f"{t:>15s}" for t in tools))
    for ent in by_type["warden"]:
        print(f"{ent:28s} " + " ".join(f"{by_type[t].get(ent, 0.0):15.3f}" for t in tools))


if __name__ == "__main__":
    main()
