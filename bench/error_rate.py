"""Error-rate trip signal: ErrorRateDetector vs pybreaker on the same outcome streams.

Synthetic Poisson request streams (seeded) per scenario: healthy and noisy baselines
(false trips per hour), error steps at several traffic levels (detections and median
delay from the step), a partial degradation below the trip threshold and a 3-second blip.
pybreaker runs in .venv-pybreaker as a subprocess, on the same streams, with its clock
driven by the event times. Run: nice .venv/bin/python bench/error_rate.py
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from detectors.error_rate import HIGH, RECOVERED, ErrorRateConfig, ErrorRateDetector  # noqa: E402

SEEDS = range(10)
# name: (req/s, base error share, step error share or None, step start s, step length s, total s)
SCENARIOS = {
    "healthy 2% @20/s": (20, 0.02, None, 0, 0, 3600),
    "noisy 8% @20/s": (20, 0.08, None, 0, 0, 3600),
    "noisy 8% @1/s": (1, 0.08, None, 0, 0, 7200),
    "step 40% @20/s": (20, 0.02, 0.40, 1200, 300, 2400),
    "outage 100% @20/s": (20, 0.02, 1.0, 1200, 300, 2400),
    "step 40% @1/s": (1, 0.02, 0.40, 1800, 900, 3600),
    "step 40% @0.2/s": (0.2, 0.02, 0.40, 3600, 1800, 7200),
    "degraded 15% @20/s": (20, 0.02, 0.15, 1200, 600, 2400),
    "blip 3s 100% @20/s": (20, 0.02, 1.0, 1200, 3, 2400),
}
OURS = {
    "ErrorRateDetector default (30s, n>=50, last 100)": ErrorRateConfig(),
    "ErrorRateDetector (60s, n>=20, last 200)": ErrorRateConfig(window_s=60, min_requests=20, last_n=200),
}


def stream(seed: int, rps: float, base: float, step: float | None, start: float,
           length: float, total: float) -> list[tuple[float, bool]]:
    rng, t, out = random.Random(seed), 0.0, []
    while t < total:
        t += rng.expovariate(rps)
        p = step if step is not None and start <= t < start + length else base
        out.append((round(t, 4), rng.random() < p))
    return out


def run_ours(events: list[tuple[float, bool]], cfg: ErrorRateConfig) -> dict[str, list[float]]:
    det = ErrorRateDetector(cfg, {"route": "r", "model": "m"})
    opened, closed = [], []
    for at, err in events:
        f = det.update(err, at)
        if f is not None and f.kind == HIGH and not f.evidence["repeat"]:
            opened.append(at)
        elif f is not None and f.kind == RECOVERED:
            closed.append(at)
    return {"opened": opened, "closed": closed}


def summarise(results: dict[str, dict], name: str) -> str:
    rps, base, step, start, length, total = SCENARIOS[name]
    runs = [results[f"{name}/{s}"] for s in SEEDS]
    if step is None:
        return f"{statistics.mean(len(r['opened']) for r in runs) / (total / 3600):.1f} trips/h"
    delays = [next((o - start for o in r["opened"] if o >= start), None) for r in runs]
    hits = [d for d in delays if d is not None and d <= length + 60]
    early = statistics.mean(sum(o < start for o in r["opened"]) for r in runs)
    med = f"{statistics.median(hits):.0f}s" if hits else "-"
    return f"{len(hits)}/{len(runs)} in {med}" + (f", {early:.1f} early" if early else "")


def main() -> None:
    data = {f"{n}/{s}": stream(s, *v) for n, v in SCENARIOS.items() for s in SEEDS}
    n_events = sum(map(len, data.values()))
    path = ROOT / "bench" / "results" / "error_rate_streams.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    detectors: dict[str, dict] = {}
    for label, cfg in OURS.items():
        t0 = time.perf_counter()
        res = {k: run_ours(v, cfg) for k, v in data.items()}
        detectors[label] = {"results": res, "per_update_us": (time.perf_counter() - t0) / n_events * 1e6}
    peer = subprocess.run(
        [str(ROOT / ".venv-pybreaker" / "bin" / "python"),
         str(ROOT / "bench" / "error_rate_peer_pybreaker.py"), str(path)],
        capture_output=True, text=True, check=True,
    )
    detectors.update(json.loads(peer.stdout))
    path.unlink()
    table = {
        label: {"us/update": round(d["per_update_us"], 2),
                **{n: summarise(d["results"], n) for n in SCENARIOS}}
        for label, d in detectors.items()
    }
    ref = table["pybreaker(fail_max=5)"]["us/update"]
    for label in table:
        table[label]["cost vs pybreaker(5)"] = f"{table[label]['us/update'] / ref:.2f}x"
    cols = ["us/update", "cost vs pybreaker(5)", *SCENARIOS]
    print(f"{'':24s}" + "".join(f"| {lab[:30]:30s}" for lab in table))
    for col in cols:
        print(f"{col:24s}" + "".join(f"| {str(table[lab][col]):30s}" for lab in table))
    (ROOT / "bench" / "results" / "error_rate.json").write_text(
        json.dumps({"seeds": len(SEEDS), "scenarios": SCENARIOS, "table": table}, indent=1)
    )


if __name__ == "__main__":
    main()
