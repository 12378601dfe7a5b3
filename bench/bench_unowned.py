"""Benchmark: unowned behaviour changes.

Per scenario (synthetic per-route traffic with real-world nuisances, see
``detectors.ownership.simulate``): detection rate, delay (traces and seconds from the
change to the emitted finding, which includes the ``settle_s`` wait; and seconds to the
first signal that fired), false alarms per 100k traces before the change, and the
share of change points attributed correctly (owned vs unowned, and the suspected component
kind). A long stable stream (>= 100k traces per detector) measures the false-alarm rate.

Peers, same traffic, same run: river 0.26's ADWIN and PageHinkley (defaults) in place of
our per-signal tests on the five scalar signals (output length, latency, TTFT, error rate,
refusal rate), inside the same grouping/attribution code, so the columns compare the
change-point tests themselves. river is a product dependency (already in .venv), so the
peer needs no virtualenv of its own.

Run: ``nice .venv/bin/python bench/bench_unowned.py [--seeds 10] [--quick]``
Writes ``bench/results/bench_unowned.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from river import drift

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.ownership import (  # noqa: E402
    ChangeLedger,
    LedgerEntry,
    UnownedChangeDetector,
    VersionWatcher,
)
from detectors.ownership.config import VersionSettings  # noqa: E402
from detectors.ownership.simulate import TrafficProfile, simulate  # noqa: E402

BASE = TrafficProfile()


@dataclass(frozen=True)
class Scenario:
    name: str
    after: TrafficProfile | None
    expect: str | None  # "change.owned" / "change.unowned_behaviour" / None (nothing)
    suspect_kind: str | None = None
    version_finding: str | None = None  # field VersionWatcher must report, if any
    ledger: tuple[tuple[float, LedgerEntry], ...] = field(default=())  # (arrival delay s, entry)
    base: TrafficProfile = BASE


def scenarios() -> list[Scenario]:
    prompt_event = LedgerEntry("prompt", "support-system", "v13", at=0.0, old_version="v12",
                               owner="support-ai", scope_routes=("support-chat",),
                               link="https://git.example/support/pull/412", event_id="chg-412")
    return [
        Scenario("silent_provider_update",
                 replace(BASE, system_fingerprint="fp_9z8y7x", tokens_log_mean=5.45, style_seed=2),
                 "change.unowned_behaviour", "model", "system_fingerprint"),
        Scenario("owned_prompt_change",
                 replace(BASE, prompt_version="v13", tokens_log_mean=5.45, tool_rate=0.45),
                 "change.owned", ledger=((60.0, prompt_event),)),
        Scenario("unregistered_prompt_version", replace(BASE, prompt_version="v13"), None,
                 version_finding="prompt"),
        Scenario("guardrail_taxonomy_shift",
                 replace(BASE, refusal_rate=0.07), "change.unowned_behaviour", "guardrail_policy"),
        Scenario("routing_new_deployment",
                 replace(BASE, deployment="gpt4o-westeu-2", latency_base_ms=560.0, ttft_ms=500.0,
                         error_rate=0.03),
                 "change.unowned_behaviour", "deployment", "deployment"),
        Scenario("silent_output_shift",  # e.g. retrieval documents edited, no version anywhere
                 replace(BASE, tokens_log_mean=5.4, tool_weights=(0.85, 0.1, 0.05)),
                 "change.unowned_behaviour", "model"),
    ]


class _RiverSignal:
    """A river drift detector behind the interface of our per-signal tests."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make, self.config = make, None
        self.reset()

    def reset(self) -> None:
        self.det, self.drift_detected, self.change_at, self.detected_at = self.make(), False, 0.0, 0.0

    def update(self, x: Any, at: float) -> bool:
        self.det.update(float(x))
        if self.det.drift_detected:
            self.drift_detected, self.change_at, self.detected_at = True, at, at
        return self.drift_detected

    def summary(self) -> dict[str, Any]:
        return {"method": type(self.det).__name__, "changed_at": self.change_at,
                "detected_at": self.detected_at, "before": 0.0, "after": 0.0}


def make_detector(kind: str) -> UnownedChangeDetector:
    det = UnownedChangeDetector(BASE.route, BASE.model)
    if kind == "warden":
        return det
    factory = {"river-ADWIN": drift.ADWIN, "river-PageHinkley": drift.PageHinkley}[kind]
    det.signals = {name: _RiverSignal(factory) for name in
                   ("output_tokens", "latency", "ttft", "error_rate", "refusal_rate")}
    return det


def run_stream(kind: str, sc: Scenario, n_pre: int, n_post: int, seed: int) -> dict[str, Any]:
    det, ledger = make_detector(kind), ChangeLedger()
    watcher = VersionWatcher(VersionSettings(learn_s=1800.0)) if kind == "warden" else None
    findings, versions, change_t = [], [], None
    pending = []
    for i, s in enumerate(simulate(sc.base, n_pre + n_post, seed=seed, change_index=n_pre,
                                   after=sc.after or sc.base)):
        if i == n_pre:
            change_t = s.at
            pending = [(s.at + delay, replace(e, at=s.at)) for delay, e in sc.ledger]
        for arrival, entry in list(pending):
            if s.at >= arrival:  # the event reaches the ledger when CI publishes it
                ledger.add(entry)
                pending.remove((arrival, entry))
        f = det.update(s, ledger)
        if f is not None:
            findings.append((i, s.at, f))
        if watcher is not None:
            versions.extend(watcher.update(s, ledger))
    return {"findings": findings, "versions": versions, "change_t": change_t}


def evaluate(kind: str, sc: Scenario, seeds: int, n_pre: int, n_post: int) -> dict[str, Any]:
    false_alarms, detected, correct, version_ok, traces = 0, 0, 0, 0, 0
    delays_n: list[int] = []
    delays_s: list[float] = []
    first_s: list[float] = []
    for seed in range(seeds):
        r = run_stream(kind, sc, n_pre, n_post, seed=1000 * seed + 17)
        traces += n_pre
        pre = [f for f in r["findings"] if f[0] < n_pre]
        post = [f for f in r["findings"] if f[0] >= n_pre]
        false_alarms += len(pre)
        if sc.expect is None:
            false_alarms += len(post)
            traces += n_post
        elif post:
            detected += 1
            i, at, f = post[0]
            delays_n.append(i - n_pre)
            delays_s.append(at - r["change_t"])
            first_s.append(f.evidence["detected_at"] - r["change_t"])
            ok = f.kind == sc.expect
            if ok and sc.suspect_kind:
                ok = f.evidence["suspect"]["component_kind"] == sc.suspect_kind
            correct += ok
        fields = {v.subject["field"] for v in r["versions"] if v.at >= (r["change_t"] or 0)}
        version_ok += (sc.version_finding in fields) if sc.version_finding else not r["versions"]
    med = statistics.median
    return {
        "scenario": sc.name, "detector": kind, "runs": seeds,
        "detected": detected if sc.expect else None,
        "delay_traces_median": med(delays_n) if delays_n else None,
        "delay_traces_max": max(delays_n) if delays_n else None,
        "delay_s_median": round(med(delays_s), 1) if delays_s else None,
        "first_signal_s_median": round(med(first_s), 1) if first_s else None,
        "false_alarms": false_alarms, "stable_traces": traces,
        "false_alarms_per_100k": round(1e5 * false_alarms / traces, 2),
        "attributed_correctly": correct if sc.expect else None,
        "version_watch_ok": version_ok if kind == "warden" else None,
    }


# A slow route (0.2 traces/s, so 60k traces span ~3.5 days) with a strong daily latency
# cycle and long sessions of similar requests: the nuisances that make baselines wrong.
HARD = replace(BASE, rate_per_s=0.2, daily_latency_swing=0.3, session_stay=0.8)


def stable(kind: str, seeds: int, n: int, name: str = "stable",
           base: TrafficProfile = BASE) -> dict[str, Any]:
    return evaluate(kind, Scenario(name, None, None, base=base), seeds, n, 0)


def fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--pre", type=int, default=12_000, help="stable traces before each change")
    ap.add_argument("--post", type=int, default=4_000)
    ap.add_argument("--stable", type=int, default=60_000, help="traces per stable stream")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.pre, args.post, args.stable = 3, 6000, 3000, 20_000
    rows, t0 = [], time.time()
    for kind in ("warden", "river-ADWIN", "river-PageHinkley"):
        for sc in scenarios():
            rows.append(evaluate(kind, sc, args.seeds, args.pre, args.post))
        rows.append(stable(kind, max(2, args.seeds // 3), args.stable))
        rows.append(stable(kind, max(2, args.seeds // 3), args.stable, "stable_slow_daily", HARD))
    cols = ["scenario", "detector", "runs", "detected", "delay_traces_median", "delay_traces_max",
            "delay_s_median", "first_signal_s_median", "false_alarms_per_100k", "attributed_correctly", "version_watch_ok"]
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in sorted(rows, key=lambda r: (r["scenario"], r["detector"])):
        print(" | ".join(fmt(r[c]) for c in cols))
    summary = {}
    for kind in ("warden", "river-ADWIN", "river-PageHinkley"):
        mine = [r for r in rows if r["detector"] == kind]
        fa = sum(r["false_alarms"] for r in mine)
        tr = sum(r["stable_traces"] for r in mine)
        exp = [r for r in mine if r["detected"] is not None]
        summary[kind] = {
            "false_alarms_per_100k": round(1e5 * fa / tr, 2), "stable_traces": tr,
            "detection_rate": round(sum(r["detected"] for r in exp) / sum(r["runs"] for r in exp), 3),
            "attribution_share": round(sum(r["attributed_correctly"] for r in exp)
                                       / max(sum(r["detected"] for r in exp), 1), 3),
        }
    w = summary["warden"]
    print("\nsummary (all scenarios; attribution share = of detected change points)")
    print("detector | detection rate | false alarms / 100k stable traces | attribution share | FA ratio peer/warden")
    print("--- | --- | --- | --- | ---")
    for kind, s in summary.items():
        ratio = s["false_alarms_per_100k"] / w["false_alarms_per_100k"] if w["false_alarms_per_100k"] else math.inf
        print(f"{kind} | {s['detection_rate']} | {s['false_alarms_per_100k']} ({s['stable_traces']} traces) "
              f"| {s['attribution_share']} | {'-' if kind == 'warden' else round(ratio, 1) if math.isfinite(ratio) else 'inf (warden 0)'}")
    print(f"\nwall time {time.time() - t0:.0f} s")
    out = ROOT / "bench" / "results" / "bench_unowned.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
