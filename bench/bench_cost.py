"""Cost regression benchmark: detection delay and false alarms against a fixed threshold.

Same synthetic traffic for every method, in the same run (detectors/cost/synthetic.py:
one route at 1 call per second, 35% agent runs, heavy-tailed prompts, retries):

* warden: ``CostGovernor`` (robust CUSUM on log cost per request per route/model, and
  per successful action per route/run shape).
* baseline (the issue's): alert when the trailing hour's mean cost exceeds the mean of
  the 24 hours before it by 20%, evaluated every minute, on cost per call and on cost per
  successful action (either alerts).
* river PageHinkley (defaults, mode "up") on log cost per call, for reference.

Per scenario: the change comes after 90,000 calls (25 h, so the baseline has its day of
history); delay = calls after the change until the first alert (cut at 20,000). False
alarms: alerts on stable streams of 25 h plus 100,000 calls, counted over the last 100,000.

Run: ``nice .venv/bin/python bench/bench_cost.py [--seeds 5]``; writes
bench/results/bench_cost.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from river.drift import PageHinkley

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.cost.accounting import CostAccountant  # noqa: E402
from detectors.cost.config import CostPolicy  # noqa: E402
from detectors.cost.governor import CostGovernor  # noqa: E402
from detectors.cost.synthetic import TrafficProfile, generate  # noqa: E402
from detectors.cost.values import safe_log  # noqa: E402

SCENARIOS = ("prompt_growth", "model_switch", "price_change", "agent_loop")
N_BEFORE, N_AFTER, FA_SPAN = 90_000, 20_000, 100_000


def run_methods(stream) -> dict[str, list[float]]:
    """Alert times (event time) of each method on one stream, plus per-call costs."""
    gov = CostGovernor(stream.catalog, CostPolicy(version="bench"))
    acc = CostAccountant(stream.catalog)
    ph = PageHinkley(mode="up")
    warden, river_ph = [], []
    call_t, call_cost, act_t, act_cost = [], [], [], []
    t0 = time.perf_counter()
    for s in stream.samples:
        if any(f.kind == "cost.regression" for f in gov.update(s, stream.events)):
            warden.append(s.at)
        for run in gov.drain_runs():
            if run.action_cost_usd is not None:
                act_t.append(run.ended_at)
                act_cost.append(run.action_cost_usd)
    elapsed = time.perf_counter() - t0
    for s in stream.samples:
        c = acc.account(s).cost_usd or 0.0
        call_t.append(s.at)
        call_cost.append(c)
        ph.update(safe_log(c))
        if ph.drift_detected:
            river_ph.append(s.at)
    baseline = sorted(fixed_threshold(call_t, call_cost) + fixed_threshold(act_t, act_cost))
    return {"warden": warden, "baseline": baseline, "river_ph": river_ph,
            "us_per_call": [elapsed / len(stream.samples) * 1e6]}


def fixed_threshold(times: list[float], costs: list[float]) -> list[float]:
    """Minutes (end time) at which the last hour's mean exceeded the previous day's by 20%,
    counting rising edges only (one alert per episode)."""
    if not times:
        return []
    t = np.asarray(times)
    m0 = math.floor(t.min() / 60)
    idx = (np.floor(t / 60) - m0).astype(int)
    n_min = idx.max() + 1
    s = np.bincount(idx, weights=np.asarray(costs), minlength=n_min)
    c = np.bincount(idx, minlength=n_min).astype(float)
    cs, cc = np.concatenate([[0], np.cumsum(s)]), np.concatenate([[0], np.cumsum(c)])
    alerts, on = [], False
    for m in range(25 * 60, n_min):  # evaluate when minute m has closed
        hs, hc = cs[m + 1] - cs[m - 59], cc[m + 1] - cc[m - 59]
        ds, dc = cs[m - 59] - cs[m - 59 - 1440], cc[m - 59] - cc[m - 59 - 1440]
        hit = hc > 0 and dc > 0 and hs / hc > 1.2 * ds / dc
        if hit and not on:
            alerts.append((m0 + m + 1) * 60.0)
        on = hit
    return alerts


def delay(stream, alerts: list[float]) -> int | None:
    after = [a for a in alerts if a >= stream.change_at]
    if not after:
        return None
    return sum(stream.change_at <= s.at <= after[0] for s in stream.samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=1.0, help="calls per second on the route")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--no-stable", action="store_true", help="skip the false-alarm streams")
    args = ap.parse_args()
    profile = TrafficProfile(spans_per_s=args.rate)
    n_before = int(N_BEFORE * args.rate)  # 25 h of history at any rate
    seeds = list(range(args.seeds))
    methods = ("warden", "baseline", "river_ph")
    results: dict = {"scenarios": {}, "false_alarms": {}, "settings": {
        "calls_per_s": args.rate, "n_before": n_before, "n_after": N_AFTER, "seeds": seeds}}
    speed = []
    for sc in args.scenarios.split(","):
        per = {m: [] for m in methods}
        early = {m: 0 for m in methods}
        for seed in seeds:
            stream = generate(sc, n_before, N_AFTER, seed=seed, profile=profile)
            out = run_methods(stream)
            speed += out["us_per_call"]
            for m in methods:
                per[m].append(delay(stream, out[m]))
                early[m] += sum(a < stream.change_at for a in out[m])
        results["scenarios"][sc] = {m: {"delays": per[m], "alerts_before_change": early[m]}
                                    for m in methods}
        print(f"{sc}: done", file=sys.stderr)
    fa: dict[str, list[int]] = {m: [] for m in methods}
    for seed in [] if args.no_stable else seeds:
        n_stable = n_before + FA_SPAN
        stream = generate("stable", n_stable, 0, seed=100 + seed, profile=profile)
        out = run_methods(stream)
        speed += out["us_per_call"]
        cut = stream.samples[n_stable - FA_SPAN].at
        for m in methods:
            fa[m].append(sum(a >= cut for a in out[m]))
    results["false_alarms"] = {m: {"per_100k": fa[m],
                                   "mean": statistics.mean(fa[m]) if fa[m] else None}
                               for m in methods}
    results["us_per_call_warden"] = statistics.median(speed)
    print_table(results)
    name = "bench_cost.json" if args.rate == 1.0 else f"bench_cost_rate{args.rate:g}.json"
    out_path = Path(__file__).resolve().parent / "results" / name
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out_path}")


def _median(ds: list[int | None], cap: int = N_AFTER) -> tuple[float, int]:
    """Median delay with misses counted at the cap, and the number of misses."""
    vals = [d if d is not None else cap for d in ds]
    return statistics.median(vals), sum(d is None for d in ds)


def print_table(r: dict) -> None:
    n = len(r["settings"]["seeds"])
    rate = r["settings"]["calls_per_s"]
    print(f"\nDetection delay, calls after the change (median of {n} seeds; {rate:g} calls/s)")
    print(f"{'scenario':<15}{'warden':>10}{'baseline':>12}{'river PH':>12}{'baseline/warden':>18}"
          f"{'misses w/b/ph':>16}")
    for sc, d in r["scenarios"].items():
        (w, wm), (b, bm), (p, pm) = (_median(d[m]["delays"]) for m in ("warden", "baseline", "river_ph"))
        ratio = b / w if w else float("inf")
        d["median_delay"] = {"warden": w, "baseline": b, "river_ph": p}
        d["ratio_baseline_over_warden"] = ratio
        print(f"{sc:<15}{w:>10.0f}{b:>12.0f}{p:>12.0f}{ratio:>17.1f}x{f'{wm}/{bm}/{pm}':>16}")
    print("\nAlerts before the change (all seeds): " + ", ".join(
        f"{sc} " + "/".join(str(d[m]["alerts_before_change"]) for m in ("warden", "baseline", "river_ph"))
        for sc, d in r["scenarios"].items()) + "   (warden/baseline/river PH)")
    fa = r["false_alarms"]
    if fa["warden"]["mean"] is not None:
        print(f"False alarms per 100,000 stable calls (mean of {n}): "
              f"warden {fa['warden']['mean']:.1f}, baseline {fa['baseline']['mean']:.1f}, "
              f"river PH {fa['river_ph']['mean']:.1f}")
    print(f"warden cost pipeline: {r['us_per_call_warden']:.0f} us per call (this machine)")


if __name__ == "__main__":
    main()
