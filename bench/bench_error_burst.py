"""Error bursts on quiet routes (issue 19): false trips on stable traffic and detection.

Three measurements, all with the shipped policy (deploy/config/breaker-policy.yaml):

* ``false_trips``: the burst test (``ErrorBurstDetector``) on many independent stable
  streams at once, vectorised over chains with numpy, *learning its own baseline* from a
  fresh start exactly as the detector does (prior, forgetting average, floor, warm-up,
  frozen while tripped). Rows: steady 0.5 %, 2 %, 8 % errors; retried failures (a failure
  is retried with probability 0.6 and the retry fails with probability 0.3: errors come in
  pairs, which a Bernoulli model does not expect); a step from 0.5 % to 1 % (the baseline
  lags). The numpy mirror is checked against the pure detector first (same trips on the
  same outcomes).
* ``full_detector``: ``ErrorRateDetector`` (window rule + burst test, as the worker runs
  it) on stable Poisson streams at 20, 1 and 1/30 requests per second: every
  ``error_rate.high`` it raises is a false trip.
* ``detection``: a quiet route (0.5 %, 1,500 calls of history), then a burst of ``k``
  failures placed at random among ``n`` calls: the share of bursts caught within them,
  and the calls and failures seen when caught.

``python bench/bench_error_burst.py [--chains 4000 --steps 20000 --full 300000]`` writes
bench/results/bench_error_burst.json; docs/BREAKER.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from detectors.breaker import load_policy  # noqa: E402
from detectors.error_burst import (  # noqa: E402
    MAX_BASELINE_SHARE,
    MAX_BURST_SHARE,
    ErrorBurstConfig,
    ErrorBurstDetector,
)
from detectors.error_rate import HIGH, ErrorRateDetector  # noqa: E402

SUBJECT = {"route": "assistant-ab", "model": "claude-3-5-haiku"}
RESULTS = ROOT / "bench" / "results" / "bench_error_burst.json"


class Chains:
    """``ErrorBurstDetector.update`` for many independent streams at once (numpy)."""

    def __init__(self, cfg: ErrorBurstConfig, n: int):
        self.cfg = cfg
        self.calls, self.failures = np.zeros(n), np.zeros(n)
        self.seen, self.s = np.zeros(n, dtype=np.int64), np.zeros(n)
        self.errors, self.excursion = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        self.high = np.zeros(n, dtype=bool)
        self.trips = 0

    def update(self, failed: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        p0 = (self.failures + cfg.prior_share * cfg.prior_calls) / (self.calls + cfg.prior_calls)
        p0 = np.minimum(MAX_BASELINE_SHARE, np.maximum(cfg.min_baseline_share, p0))
        p1 = np.minimum(MAX_BURST_SHARE, np.maximum(cfg.min_burst_share, cfg.burst_ratio * p0))
        up = np.log(p1 / p0)
        self.s = np.maximum(0.0, self.s + np.where(failed, up, np.log((1 - p1) / (1 - p0))))
        pos = self.s > 0.0
        self.errors = np.where(pos, self.errors + failed, 0)
        self.excursion = np.where(pos, self.excursion + 1, 0)
        self.seen += 1
        keep = 1.0 - 1.0 / cfg.baseline_calls
        learn = ~self.high
        self.calls = np.where(learn, self.calls * keep + 1.0, self.calls)
        self.failures = np.where(learn, self.failures * keep + failed, self.failures)
        self.s = np.where(self.high, np.minimum(self.s, cfg.threshold + up), self.s)
        self.high &= self.s != 0.0
        hit = learn & (self.seen > cfg.min_baseline_calls) & (self.s >= cfg.threshold) & (self.errors >= cfg.min_errors)
        self.high |= hit
        self.trips += int(hit.sum())
        return hit


def outcomes(rng: np.random.Generator, share: float, n: int, last: np.ndarray | None,
             retried: bool) -> np.ndarray:
    failed = rng.random(n) < share
    if retried and last is not None:
        # The retry of a failed call: sent with probability 0.6, fails with probability 0.3.
        retry = last & (rng.random(n) < 0.6)
        failed = np.where(retry, rng.random(n) < 0.3, failed)
    return failed


def check_mirror(cfg: ErrorBurstConfig) -> bool:
    """The numpy chains and the pure detector trip on the same calls."""
    rng = np.random.default_rng(1)
    chains, pure = Chains(cfg, 8), [ErrorBurstDetector(cfg) for _ in range(8)]
    for step in range(20_000):
        failed = rng.random(8) < (0.3 if 5000 <= step < 5040 or 12000 <= step < 12030 else 0.01)
        hit = chains.update(failed)
        mine = np.array([d.update(bool(f)) == "tripped" for d, f in zip(pure, failed, strict=True)])
        if not np.array_equal(hit, mine):
            return False
    return chains.trips > 0


def false_trips(cfg: ErrorBurstConfig, chains: int, steps: int) -> list[dict[str, Any]]:
    rows = []
    cases = [("steady 0.5 %", 0.005, None, False), ("steady 2 %", 0.02, None, False),
             ("steady 8 %", 0.08, None, False), ("0.5 %, retries counted as calls", 0.005, None, True),
             ("2 %, retries counted as calls", 0.02, None, True), ("step 0.5 % -> 1 % at call 5000", 0.005, 0.01, False)]
    for seed, (name, share, later, retried) in enumerate(cases):
        rng = np.random.default_rng(seed)
        ch, last = Chains(cfg, chains), None
        for step in range(steps):
            p = later if later is not None and step >= 5000 else share
            last = outcomes(rng, p, chains, last, retried)
            ch.update(last)
        calls = chains * steps
        rows.append({"stream": name, "calls": calls, "false_trips": ch.trips,
                     "per_100k_calls": round(1e5 * ch.trips / calls, 4),
                     "calls_per_false_trip": round(calls / ch.trips) if ch.trips else None})
        print(rows[-1], flush=True)
    return rows


def full_detector(n: int) -> list[dict[str, Any]]:
    cfg = load_policy(ROOT / "deploy" / "config" / "breaker-policy.yaml").error_rate_for(SUBJECT)
    rows = []
    for rate in (20.0, 1.0, 1 / 30):
        for share in (0.005, 0.02, 0.08):
            rng, det, t = random.Random(int(rate * 1000) + int(share * 1000)), ErrorRateDetector(cfg, SUBJECT), 0.0
            by_window: dict[str, int] = {}
            for _ in range(n):
                t += rng.expovariate(rate)
                f = det.update(rng.random() < share, t)
                if f is not None and f.kind == HIGH and not f.evidence["repeat"]:
                    by_window[f.evidence["window"]] = by_window.get(f.evidence["window"], 0) + 1
            trips = sum(by_window.values())
            rows.append({"req_per_s": round(rate, 4), "error_share": share, "calls": n, "false_trips": trips,
                         "by_window": by_window, "per_100k_calls": round(1e5 * trips / n, 3),
                         "days_of_traffic": round(n / rate / 86400, 2)})
            print(rows[-1], flush=True)
    return rows


def detection(cfg: ErrorBurstConfig, trials: int) -> list[dict[str, Any]]:
    rows = []
    for k, n in ((15, 31), (10, 28), (8, 31), (5, 31)):
        rng, caught, calls_at, errors_at = random.Random(k * 100 + n), 0, [], []
        for _ in range(trials):
            det = ErrorBurstDetector(cfg)
            for _ in range(1500):
                det.update(rng.random() < 0.005)
            failing = set(rng.sample(range(n), k))
            seen_errors = 0
            for i in range(n):
                seen_errors += i in failing
                if det.update(i in failing) == "tripped":
                    caught += 1
                    calls_at.append(i + 1)
                    errors_at.append(seen_errors)
                    break
        rows.append({"burst": f"{k} failures in {n} calls", "share": round(k / n, 3), "trials": trials,
                     "caught_within_burst": round(caught / trials, 3),
                     "median_calls_to_trip": statistics.median(calls_at) if calls_at else None,
                     "median_failures_to_trip": statistics.median(errors_at) if errors_at else None})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--full", type=int, default=300_000, help="calls per full-detector stream")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cfg = load_policy(ROOT / "deploy" / "config" / "breaker-policy.yaml").error_rate_for(SUBJECT).burst
    started = time.time()
    result = {"config": cfg.model_dump(), "mirror_matches_detector": check_mirror(cfg),
              "false_trips": false_trips(cfg, args.chains, args.steps),
              "full_detector": full_detector(args.full), "detection": detection(cfg, args.trials),
              "seconds": round(time.time() - started, 1),
              "machine": f"{platform.machine()}, Python {platform.python_version()}"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
