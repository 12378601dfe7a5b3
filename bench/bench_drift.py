"""Embedding drift benchmark: Warden's MMD² test against Alibi Detect's MMDDrift (PyTorch
backend), and Warden's detector on drift scenarios.

One run, same embeddings (all-MiniLM-L6-v2 on the shared prompt corpus, CLINC150 domains,
cached under var/cache):

1. Speed and power of one MMD² permutation test. Same reference (1,000 items), same windows
   (200 items: half with no shift, half where a new topic is 20% of the window), same number
   of permutations, on the CPU (and on CUDA when present). Alibi runs in its own virtualenv
   (.venv-alibi, bench/requirements-alibi.txt) as a subprocess of this script on the same
   ``.npz``. Time per test excludes one-time setup (Alibi's bandwidth, our reference kernel),
   which is reported separately. Power: share of shifted windows with p <= 0.01.
2. Warden's default ``EmbeddingDriftDetector`` (permutations stop early once the decision is
   made) on scenarios: no shift (false alarms), abrupt topic-mix shifts, a gradual shift.
   Delay = items after the change until drift is declared.

Run: ``nice .venv/bin/python bench/bench_drift.py [--quick]``; writes
bench/results/bench_drift.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "prompts_dev.jsonl"
# The peer's interpreter: its own virtualenv here; WARDEN_ALIBI_PYTHON names another (on a
# lent GPU machine, its system Python with the peer's wheels on PYTHONPATH).
ALIBI_PY = Path(os.environ.get("WARDEN_ALIBI_PYTHON", ROOT / ".venv-alibi" / "bin" / "python"))
RESULTS = ROOT / "bench" / "results" / "bench_drift.json"


# --------------------------------------------------------------------------- peer (Alibi) side
def peer_alibi(npz_path: str, out_path: str) -> None:
    """Runs inside .venv-alibi: time MMDDrift.predict on every window of the npz."""
    import torch
    from alibi_detect.cd import MMDDrift

    torch.set_num_threads(int(np.load(npz_path)["threads"]))
    data = np.load(npz_path)
    out: dict[str, Any] = {"alibi_detect": __import__("alibi_detect").__version__, "torch": torch.__version__}
    for device in [str(d) for d in data["devices"]]:
        start = time.perf_counter()
        det = MMDDrift(data["reference"], backend="pytorch", p_val=0.01,
                       n_permutations=int(data["permutations"]), device=device)
        setup = time.perf_counter() - start
        det.predict(data["windows"][0])  # warm-up, not timed
        times, p_values, scores = [], [], []
        for window in data["windows"]:
            start = time.perf_counter()
            pred = det.predict(window, return_p_val=True, return_distance=True)["data"]
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            p_values.append(float(pred["p_val"]))
            scores.append(float(pred["distance"]))
        out[device] = {"setup_s": setup, "times_s": times, "p_values": p_values, "mmd2": scores}
    Path(out_path).write_text(json.dumps(out))


# --------------------------------------------------------------------------- our side
def load_corpus() -> tuple[np.ndarray, list[str]]:
    from detectors.embeddings import SentenceEncoder, cached_encode

    rows = [json.loads(line) for line in DATA.open()]
    texts = [r["prompt"] for r in rows]
    vectors = cached_encode(SentenceEncoder(device="cpu"), texts, ROOT / "var" / "cache")
    return vectors, [r["category"] for r in rows]


def make_windows(vectors: np.ndarray, labels: list[str], n_windows: int, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """Reference of 1,000 from nine topics; windows of 200, alternately unshifted and with
    the tenth topic at 20%."""
    rng = np.random.default_rng(seed)
    cats = sorted(set(labels))
    lab = np.array(labels)
    old = rng.permutation(np.flatnonzero(np.isin(lab, cats[:9])))
    new = rng.permutation(np.flatnonzero(lab == cats[9]))
    reference = vectors[old[:1000]]
    windows, shifted, used_old, used_new = [], [], 1000, 0
    for i in range(n_windows):
        k = 40 if i % 2 else 0
        idx = np.concatenate([old[used_old: used_old + 200 - k], new[used_new: used_new + k]])
        used_old, used_new = used_old + 200 - k, used_new + k
        windows.append(vectors[idx])
        shifted.append(bool(k))
    return reference, np.stack(windows), shifted


def time_ours(reference: np.ndarray, windows: np.ndarray, permutations: int, device: str,
              alpha: float | None = None) -> dict[str, Any]:
    import torch

    from detectors.drift.mmd import MMDPermutationTest

    start = time.perf_counter()
    test = MMDPermutationTest(reference, n_permutations=permutations, device=device, alpha=alpha)
    test.test(windows[0])  # warm-up: builds the cached reference terms
    setup = time.perf_counter() - start
    times, p_values, scores = [], [], []
    for window in windows:
        start = time.perf_counter()
        result = test.test(window)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        p_values.append(result.p_value)
        scores.append(result.mmd2)
    return {"setup_s": setup, "times_s": times, "p_values": p_values, "mmd2": scores}


def hardware(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    import os

    return f"{platform.processor() or platform.machine()} x{os.cpu_count()} cores"


def mmd_comparison(vectors: np.ndarray, labels: list[str], permutations: int, n_windows: int,
                   threads: int, peer_optional: bool = False) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    reference, windows, shifted = make_windows(vectors, labels, n_windows)
    out: dict[str, Any] = {"permutations": permutations, "n_reference": len(reference),
                           "window": windows.shape[1], "windows": n_windows, "threads": threads}
    with tempfile.TemporaryDirectory() as tmp:
        npz, peer_out = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(npz, reference=reference, windows=windows, permutations=permutations,
                 devices=np.array(devices), threads=threads)
        try:
            peer = subprocess.run([str(ALIBI_PY), __file__, "--peer-alibi", str(npz), str(peer_out)],
                                  capture_output=True, text=True, check=False)
            returncode, stderr = peer.returncode, peer.stderr
        except OSError as exc:
            returncode, stderr = -1, f"{ALIBI_PY}: {exc}"
        alibi: dict[str, Any] = {}
        if returncode == 0:
            alibi = json.loads(peer_out.read_text())
        elif peer_optional:  # recorded, never silent: the table and the JSON say the peer failed
            out["alibi_error"] = stderr[-2000:]
            print(f"Alibi peer failed; Warden's figures only:\n{stderr[-1500:]}", file=sys.stderr)
        else:
            raise SystemExit(f"Alibi peer failed (make bench-setup builds .venv-alibi):\n{stderr[-3000:]}")
    if alibi:
        out["alibi_versions"] = {"alibi_detect": alibi["alibi_detect"], "torch": alibi["torch"]}
    for device in devices:
        ours = time_ours(reference, windows, permutations, device)
        early = time_ours(reference, windows, permutations, device, alpha=0.01)
        runs = [("warden", ours)] + ([("alibi", alibi[device])] if alibi else [])
        power = {name: float(np.mean([p <= 0.01 for p, s in zip(res["p_values"], shifted, strict=True) if s]))
                 for name, res in runs}
        false_pos = {name: int(sum(p <= 0.01 for p, s in zip(res["p_values"], shifted, strict=True) if not s))
                     for name, res in runs}
        t_ours, t_early = statistics.median(ours["times_s"]), statistics.median(early["times_s"])
        row: dict[str, Any] = {
            "hardware": hardware(device),
            "warden_s_per_test": t_ours,
            "warden_early_stop_s_per_test": t_early,
            "warden_setup_s": ours["setup_s"],
            "power_at_0.01": power,
            "false_positives_at_0.01": false_pos,
            "p_values": {name: res["p_values"] for name, res in runs},
        }
        if alibi:
            peer = alibi[device]
            t_peer = statistics.median(peer["times_s"])
            row.update({
                "alibi_s_per_test": t_peer,
                "speedup": t_peer / t_ours,
                "speedup_early_stop": t_peer / t_early,
                "alibi_setup_s": peer["setup_s"],
                "max_abs_mmd2_diff": float(np.max(np.abs(np.array(ours["mmd2"]) - np.array(peer["mmd2"])))),
            })
        out[device] = row
    return out


def scenarios(vectors: np.ndarray, labels: list[str], seeds: int, stable_len: int) -> list[dict[str, Any]]:
    from detectors.drift import EmbeddingDriftConfig, EmbeddingDriftDetector
    from detectors.drift import scenarios as sc

    cats = sorted(set(labels))
    u = sc.uniform_mix
    cases: list[tuple[str, Any]] = [
        ("new topics (5 -> other 5)", lambda s: sc.abrupt(labels, 1550, 450, u(cats[:5]), u(cats[5:]), s)),
        ("one topic to 70%", lambda s: sc.abrupt(labels, 1550, 450, u(cats), {**u(cats[1:]), cats[0]: 21.0}, s)),
        ("half the topics drop", lambda s: sc.abrupt(labels, 1550, 450, u(cats), u(cats[:5]), s)),
        ("new topic at 20%", lambda s: sc.abrupt(labels, 1550, 700, u(cats[:9]), {**u(cats[:9]), cats[9]: 2.25}, s)),
        ("gradual, 1000-item ramp", lambda s: sc.gradual(labels, 1550, 1000, 200, u(cats[:5]), u(cats[5:]), s)),
    ]
    cfg = EmbeddingDriftConfig()
    rows = []

    def run(order: np.ndarray) -> tuple[list[tuple[int, str]], float]:
        det = EmbeddingDriftDetector(cfg)
        start = time.perf_counter()
        hits = [(i, f.evidence["test"]) for i, item in enumerate(order)
                if (f := det.update(vectors[item], str(item))) is not None]
        return hits, time.perf_counter() - start

    stable_alarms, monitored, seconds, items = 0, 0, 0.0, 0
    for seed in range(seeds):
        hits, took = run(sc.stable(labels, stable_len, u(cats), seed=100 + seed).order)
        stable_alarms += len(hits)
        monitored += stable_len - cfg.reference.size
        seconds, items = seconds + took, items + stable_len
    rows.append({"scenario": "no shift", "runs": seeds, "detected": "-", "delay_median": None,
                 "delay_max": None, "false_alarms": stable_alarms, "monitored_items": monitored,
                 "by": "-", "us_per_item": 1e6 * seconds / items})
    for name, build in cases:
        delays, false_alarms, by, seconds, items = [], 0, [], 0.0, 0
        for seed in range(seeds):
            s = build(seed)
            hits, took = run(s.order)
            seconds, items = seconds + took, items + len(s.order)
            false_alarms += sum(1 for i, _ in hits if i < s.change_at)
            after = [(i, t) for i, t in hits if i >= s.change_at]
            if after:
                delays.append(after[0][0] - s.change_at)
                by.append(after[0][1])
        rows.append({"scenario": name, "runs": seeds, "detected": f"{len(delays)}/{seeds}",
                     "delay_median": statistics.median(delays) if delays else None,
                     "delay_max": max(delays) if delays else None, "false_alarms": false_alarms,
                     "monitored_items": None, "by": ",".join(sorted(set(by))),
                     "us_per_item": 1e6 * seconds / items})
    return rows


def print_tables(result: dict[str, Any]) -> None:
    mmd = result["mmd"]
    print(f"\nMMD² permutation test: reference {mmd['n_reference']}, window {mmd['window']},"
          f" {mmd['permutations']} permutations, {mmd['windows']} windows, {mmd['threads']} threads")
    print(f"{'device':<34}{'warden s':>10}{'alibi s':>10}{'ratio':>8}{'early-stop s':>14}{'ratio':>8}"
          f"{'power w/a':>12}{'FP w/a':>8}")
    for device in ("cpu", "cuda"):
        if device not in mmd:
            continue
        r = mmd[device]
        if "alibi_s_per_test" not in r:
            print(f"{device + ' (' + r['hardware'][:24] + ')':<34}{r['warden_s_per_test']:>10.4f}{'failed':>10}"
                  f"{'-':>8}{r['warden_early_stop_s_per_test']:>14.4f}{'-':>8}"
                  f"{r['power_at_0.01']['warden']:>6.2f}/-{r['false_positives_at_0.01']['warden']:>5}/-")
            continue
        print(f"{device + ' (' + r['hardware'][:24] + ')':<34}{r['warden_s_per_test']:>10.4f}"
              f"{r['alibi_s_per_test']:>10.3f}{r['speedup']:>7.0f}x{r['warden_early_stop_s_per_test']:>14.4f}"
              f"{r['speedup_early_stop']:>7.0f}x{r['power_at_0.01']['warden']:>6.2f}/{r['power_at_0.01']['alibi']:.2f}"
              f"{r['false_positives_at_0.01']['warden']:>5}/{r['false_positives_at_0.01']['alibi']}")
    if not result["scenarios"]:
        return
    print("\nWarden EmbeddingDriftDetector, default config (ERL 100,000; MMD every 100 on 200;"
          " centroid on 40, novelty on 50, every item)")
    print(f"{'scenario':<28}{'detected':>9}{'delay med':>10}{'delay max':>10}{'false al.':>10}"
          f"{'monitored':>10}{'by':>14}{'µs/item':>9}")
    for row in result["scenarios"]:
        fmt = lambda v: "-" if v is None else str(v)  # noqa: E731
        print(f"{row['scenario']:<28}{row['detected']:>9}{fmt(row['delay_median']):>10}"
              f"{fmt(row['delay_max']):>10}{row['false_alarms']:>10}{fmt(row['monitored_items']):>10}"
              f"{row['by']:>14}{row['us_per_item']:>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-alibi", nargs=2, metavar=("NPZ", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer windows, seeds and permutations")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both tools (1: stable timings on a shared machine)")
    parser.add_argument("--mmd-only", action="store_true",
                        help="only the MMD² comparison (the scenarios run on the CPU whatever the machine)")
    parser.add_argument("--peer-optional", action="store_true",
                        help="if the Alibi peer cannot run, record its error and report Warden's figures")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args()
    if args.peer_alibi:
        peer_alibi(*args.peer_alibi)
        return
    sys.path.insert(0, str(ROOT))
    vectors, labels = load_corpus()
    result = {
        "mmd": mmd_comparison(vectors, labels, permutations=500 if args.quick else 1000,
                              n_windows=4 if args.quick else 8, threads=args.threads,
                              peer_optional=args.peer_optional),
        "scenarios": [] if args.mmd_only else scenarios(vectors, labels, seeds=2 if args.quick else 5,
                                                        stable_len=6000 if args.quick else 12_000),
    }
    print_tables(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
