"""Precision and recall per entity of the redaction engine on the shared dev sets.

Usage: ``.venv/bin/python bench/redaction_eval.py [--json bench/results/redaction_eval.json]``

Matching: a predicted span is a true positive when it overlaps a gold span of the same
entity; a gold span is found when some prediction of its entity overlaps it. Gold spans
of labels that are not pattern targets (PERSON, STREET_ADDRESS, ZIP_CODE, DATE_TIME ...,
see ``../shared/data/SOURCES.md``) are context: a prediction overlapping one is neither
a true nor a false positive. The secrets set is also scored type-agnostically ("is a
credential there?"), which is how secret scanners are usually compared.

The scoring functions are imported by ``bench_redaction.py`` to score the peers the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

PII_TARGETS = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS")
SECRET_TARGETS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "GITHUB_FINE_GRAINED_TOKEN",
    "GITLAB_TOKEN", "SLACK_TOKEN", "SLACK_WEBHOOK", "STRIPE_KEY", "OPENAI_API_KEY",
    "GOOGLE_API_KEY", "SENDGRID_API_KEY", "NPM_TOKEN", "JWT", "PRIVATE_KEY", "PASSWORD",
    "GENERIC_SECRET",
)
ANY = "ANY_SECRET"

Pred = tuple[str, int, int]


def load_set(name: str) -> list[dict[str, Any]]:
    """Rows ``{"text", "spans"}`` of ``pii_dev.jsonl`` / ``secrets_dev.jsonl``."""
    with (DATA / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _overlaps(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def score(
    rows: Sequence[dict[str, Any]],
    predictions: Sequence[Iterable[Pred]],
    targets: Sequence[str],
    type_agnostic: bool = False,
) -> dict[str, dict[str, float]]:
    """Per-entity tp/fp/fn, precision, recall; plus ``ALL`` (micro) and ``OTHER`` (off-target FPs).

    With ``type_agnostic`` every target label and every prediction count as one entity
    (``ANY_SECRET``): only "was a credential found here" matters.
    """
    tset = set(targets)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "gold": 0})
    for row, preds in zip(rows, predictions, strict=True):
        gold = [(s["entity"], s["start"], s["end"]) for s in row["spans"]]
        preds = list(preds)
        if type_agnostic:
            gold = [(ANY if e in tset else e, a, b) for e, a, b in gold]
            preds = [(ANY, a, b) for _, a, b in preds]
        for ge, g0, g1 in gold:
            if ge not in tset and ge != ANY:
                continue
            counts[ge]["gold"] += 1
            if any(pe == ge and _overlaps(p0, p1, g0, g1) for pe, p0, p1 in preds):
                counts[ge]["tp"] += 1
            else:
                counts[ge]["fn"] += 1
        for pe, p0, p1 in preds:
            if any(ge == pe and _overlaps(p0, p1, g0, g1) for ge, g0, g1 in gold):
                continue  # counted through the gold span (duplicates are not extra TPs)
            neutral = any(ge not in tset and ge != ANY and _overlaps(p0, p1, g0, g1) for ge, g0, g1 in gold)
            if neutral:
                continue
            bucket = pe if (pe in tset or pe == ANY) else "OTHER"
            counts[bucket]["fp"] += 1
    out: dict[str, dict[str, float]] = {}
    total = {"tp": 0, "fp": 0, "fn": 0, "gold": 0}
    for ent, c in sorted(counts.items()):
        out[ent] = _rates(c)
        for k in total:
            total[k] += c[k]
    out["ALL"] = _rates(total)
    return out


def recall_by_gold_type(
    rows: Sequence[dict[str, Any]], predictions: Sequence[Iterable[Pred]], targets: Sequence[str]
) -> dict[str, float]:
    """Per gold entity type: share of its spans overlapped by ANY prediction (type-agnostic)."""
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row, preds in zip(rows, predictions, strict=True):
        preds = list(preds)
        for s in row["spans"]:
            if s["entity"] in targets:
                hit = any(_overlaps(p0, p1, s["start"], s["end"]) for _, p0, p1 in preds)
                found[s["entity"]][0] += hit
                found[s["entity"]][1] += 1
    return {e: a / b for e, (a, b) in sorted(found.items())}


def _rates(c: dict[str, int]) -> dict[str, float]:
    # tp counts found gold spans; precision uses them against unmatched predictions.
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    return {
        **c,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
    }


def print_table(title: str, result: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'entity':28s} {'gold':>5s} {'tp':>5s} {'fp':>5s} {'fn':>5s} {'precision':>9s} {'recall':>7s}")
    for ent, r in result.items():
        print(f"{ent:28s} {r['gold']:5d} {r['tp']:5d} {r['fp']:5d} {r['fn']:5d} "
              f"{r['precision']:9.3f} {r['recall']:7.3f}")


def warden_predictions(rows: Sequence[dict[str, Any]], category: str) -> list[list[Pred]]:
    """Spans of one category (``"pii"`` or ``"secret"``) found by the Warden redactor.

    Each dev set labels one category only (an IP address in the secrets set is real
    but unlabelled), so each set is scored on its own category, for every tool.
    """
    sys.path.insert(0, str(ROOT))
    from detectors.redaction import RedactionPolicy, Redactor, entity_category

    policy = RedactionPolicy.load(ROOT / "deploy" / "config" / "redaction-policy.yaml")
    redactor = Redactor(policy, key=b"eval-only-key-not-secret")
    return [
        [(s.entity, s.start, s.end) for s in redactor.find(r["text"]) if entity_category(s.entity) == category]
        for r in rows
    ]


def evaluate_warden() -> dict[str, Any]:
    pii, secrets = load_set("pii_dev.jsonl"), load_set("secrets_dev.jsonl")
    pii_pred, sec_pred = warden_predictions(pii, "pii"), warden_predictions(secrets, "secret")
    return {
        "pii": score(pii, pii_pred, PII_TARGETS),
        "secrets": score(secrets, sec_pred, SECRET_TARGETS),
        "secrets_any": score(secrets, sec_pred, SECRET_TARGETS, type_agnostic=True),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "redaction_eval.json"))
    args = parser.parse_args(argv)
    result = evaluate_warden()
    print_table("Warden — personal data (pii_dev.jsonl)", result["pii"])
    print_table("Warden — secrets by type (secrets_dev.jsonl)", result["secrets"])
    print_table("Warden — secrets, any credential", result["secrets_any"])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
