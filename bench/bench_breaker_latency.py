"""Breaker signal latency: from the moment the tripping trace is produced to the moment a
``BreakerClient`` (here, outside the worker process) sees the target open, over many trips
with background load on the pipeline; plus ``allow()`` cost per call.

Peer: Envoy's outlier detection evaluates on a fixed ``interval`` (10 s by default), so its
reaction time to the same trip is that interval in the worst case and half of it on average
(no run needed: it is configuration). We print our percentiles against that.

    nice .venv/bin/python bench/bench_breaker_latency.py [--trips 60] [--load 300] [--split]
        [--drift-worker] [--drift-rate R] [--template-texts] [--no-sink]

Background traces carry real prompts (../shared/data/prompts_dev.jsonl), so the drift
encoder works as in service; --template-texts uses the load generator's few texts instead.
Starts its own broker on port 29192 and a worker with a chDB engine under var/bench-latency.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
import timeit
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._kafka import machine as bench_machine  # noqa: E402
from detectors.breaker import target_key  # noqa: E402
from streams.breaker_client import BreakerClient  # noqa: E402
from streams.publisher import TracePublisher  # noqa: E402
from tests.pipeline_helpers import fast_config, trace_for  # noqa: E402
from tests.worker_proc import Pipeline  # noqa: E402

PORT = int(os.environ.get("BENCH_KAFKA_PORT", "29192"))


def kafka(verb: str) -> None:
    env = {**os.environ, "KAFKA_PORT": str(PORT), "KAFKA_DATA": str(REPO / "var" / f"kafka-bench-{PORT}")}
    subprocess.run(["bash", str(REPO / "deploy/kafka/kafka.sh"), verb], env=env, check=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def machine() -> dict[str, Any]:
    """The benchmarks' machine record, plus the CPUs this process may use (taskset limits
    them, for the broker and workers too) and the GPU if any."""
    gpu = None
    try:
        import torch
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {**bench_machine(), "cpus_usable": len(os.sched_getaffinity(0)), "gpu": gpu,
            "layout": "broker, workers, load generator and client co-located"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trips", type=int, default=60)
    parser.add_argument("--load", type=float, default=300.0, help="background traces/s")
    parser.add_argument("--split", action="store_true",
                        help="a --role govern worker and a --role sink worker instead of one --role all")
    parser.add_argument("--no-sink", action="store_true",
                        help="a --role govern worker alone (the breaker's whole path, nothing stored): for"
                             " machines without the embedded ClickHouse engine")
    parser.add_argument("--drift-worker", action="store_true",
                        help="drift in a --role drift worker of its own (WARDEN_GOVERN_DRIFT=false on the others)")
    parser.add_argument("--template-texts", action="store_true",
                        help="background prompts from the load generator's templates (cached by the drift"
                             " encoder) instead of ../shared/data/prompts_dev.jsonl")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default by layout)")
    parser.add_argument("--drift-rate", type=float, default=None,
                        help="share of traces embedded for drift (default: the shipped config)")
    args = parser.parse_args()
    work = REPO / "var" / "bench-latency"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    kafka("wipe")
    kafka("up")
    bootstrap = f"127.0.0.1:{PORT}"
    pipeline = Pipeline(bootstrap=bootstrap, dsn=f"chdb://{work / 'clickhouse'}", workdir=work,
                        embeddings=True)  # the layout the README starts: drift on
    config = fast_config(work)
    if args.drift_rate is not None:  # share of traces the drift agent encodes (CPU-heavy without a GPU)
        import yaml
        detectors = yaml.safe_load((config / "detectors.yaml").read_text())
        detectors["drift"]["sampling"].update(
            rates={k: args.drift_rate for k in detectors["drift"]["sampling"]["rates"]}, default_rate=args.drift_rate)
        (config / "detectors.yaml").write_text(yaml.safe_dump(detectors))
    extra = {"WARDEN_CONFIG_DIR": str(config)}
    drift_worker = None
    if args.drift_worker:
        extra["WARDEN_GOVERN_DRIFT"] = "false"
        drift_worker = pipeline.worker(role="drift", extra=extra).start()
    if args.no_sink:
        sink_worker, worker = None, pipeline.worker(role="govern", extra=extra).start()
    elif args.split:  # the scale-out layout: storage in its own process (and consumer group)
        sink_worker = pipeline.worker(role="sink", extra=extra).start()
        worker = pipeline.worker(role="govern", extra=extra).start()
    else:
        sink_worker, worker = None, pipeline.worker(extra=extra).start()
    client = BreakerClient(bootstrap, pipeline.topic("breaker.v1")).start()
    opened: dict[str, float] = {}
    client.on_update.append(lambda s: opened.setdefault(s.target, time.perf_counter())
                            if s.state.value == "open" else None)
    publisher = TracePublisher(bootstrap, pipeline.topic("traces.raw.v1"), linger_ms=0)
    stop = threading.Event()
    rng = random.Random(1)

    # Background traces are made before the clock starts: generating them costs this
    # process more CPU than publishing, and on a small machine that would be charged to
    # the pipeline. A fresh trace id per publish keeps them distinct records.
    local = random.Random(2)
    pool = [trace_for("support-chat", "gpt-4o-mini", error=False, rng=local) for _ in range(500)]
    # The generator's texts come from a few templates, which the drift encoder's cache
    # absorbs; real prompts (12,000 distinct, CLINC150) make it encode as it would in service.
    prompts_file = REPO.parent / "shared" / "data" / "prompts_dev.jsonl"
    prompts = ([json.loads(line)["prompt"] for line in prompts_file.open()]
               if prompts_file.exists() and not args.template_texts else [])

    def background() -> None:
        sent = 0
        started = time.perf_counter()
        while not stop.is_set():
            trace = dict(pool[sent % len(pool)], trace_id=f"{sent:032x}")
            if prompts:
                messages = [dict(m) for m in trace["input_messages"]]
                messages[-1]["content"] = prompts[sent % len(prompts)]
                trace["input_messages"] = messages
            publisher.publish(trace)
            sent += 1
            delay = started + sent / args.load - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    # Where the time goes: when each route's tripping finding reaches the findings topic.
    finding_seen: dict[str, float] = {}

    def watch_findings() -> None:
        from confluent_kafka import Consumer
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time_ns()}",
                             "auto.offset.reset": "latest", "fetch.wait.max.ms": 5, "enable.auto.commit": False})
        consumer.subscribe([pipeline.topic("findings.v1")])
        while not stop.is_set():
            msg = consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            record = json.loads(msg.value())
            if record.get("kind") == "error_rate.high":
                finding_seen.setdefault(record["subject"].get("route", ""), time.perf_counter())
        consumer.close()

    watcher = threading.Thread(target=watch_findings, daemon=True)
    watcher.start()
    feeder = threading.Thread(target=background, daemon=True)
    feeder.start()
    latencies: list[float] = []
    to_finding: list[float] = []
    try:
        time.sleep(5)  # warm-up: group joined, first batches stored
        for trip in range(args.trips):
            route = f"latency-{trip}"
            for model in ("gpt-4o-mini", "claude-3-5-haiku"):  # the route has two models
                publisher.publish(trace_for(route, model, error=False, rng=rng))
            for _ in range(18):  # min_requests is 20: with the healthy one, the 20th request trips it
                publisher.publish(trace_for(route, "gpt-4o-mini", error=True, rng=rng))
            publisher.flush()
            time.sleep(0.4)
            target = target_key({"route": route, "model": "gpt-4o-mini"})
            assert client.allow(target)
            tripping = trace_for(route, "gpt-4o-mini", error=True, rng=rng)
            produced = time.perf_counter()
            publisher.publish(tripping)
            deadline = produced + 10
            while target not in opened and time.perf_counter() < deadline:
                time.sleep(0.0005)
            if target in opened:
                latencies.append((opened[target] - produced) * 1000)
                if route in finding_seen:
                    to_finding.append((finding_seen[route] - produced) * 1000)
        known = next(iter(opened))
        allow_ns = min(timeit.repeat(lambda: client.allow(known), number=100_000, repeat=5)) / 100_000 * 1e9
    finally:
        stop.set()
        feeder.join(5)
        publisher.close()
        client.close()
        worker.stop()
        for other in (sink_worker, drift_worker):
            if other is not None:
                other.stop()
        kafka("down")
    result = {
        "trips": args.trips, "seen": len(latencies), "background_traces_per_s": args.load,
        "workers": ("govern only (no sink)" if args.no_sink else "govern + sink" if args.split
                    else "one worker, all roles") + (" + drift worker" if args.drift_worker else ""),
        "drift_sampling_rate": args.drift_rate if args.drift_rate is not None else "shipped config",
        "background_prompts": (f"{len(prompts)} real prompts (prompts_dev.jsonl)" if prompts
                               else "load generator templates (few distinct texts)"),
        "p50_ms": round(statistics.median(latencies), 1), "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1), "max_ms": round(max(latencies), 1),
        "allow_ns_per_call": round(allow_ns, 1),
        "trace_to_finding_p50_ms": round(statistics.median(to_finding), 1) if to_finding else None,
        "trace_to_finding_p99_ms": round(percentile(to_finding, 0.99), 1) if to_finding else None,
        "envoy_outlier_interval_ms": 10_000, "envoy_mean_reaction_ms": 5_000,
        "ratio_envoy_mean_over_warden_p50": round(5_000 / statistics.median(latencies), 1),
        "machine": machine(),
    }
    print(f"{'trips seen':>12} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'allow() ns':>11}")
    print(f"{len(latencies):>12} {result['p50_ms']:>8} {result['p95_ms']:>8} {result['p99_ms']:>8} "
          f"{result['max_ms']:>8} {result['allow_ns_per_call']:>11}")
    if to_finding:
        print(f"of which trace -> finding on findings.v1: p50 {result['trace_to_finding_p50_ms']} ms, "
              f"p99 {result['trace_to_finding_p99_ms']} ms")
    print(f"Envoy outlier detection reacts on a 10 s interval (5 s on average): "
          f"{result['ratio_envoy_mean_over_warden_p50']}x our median")
    suffix = (("_split" if args.split else "") + ("_drift_worker" if args.drift_worker else "")
              + ("_no_drift" if args.drift_rate == 0 else ""))
    out = args.out or REPO / "bench" / "results" / f"bench_breaker_latency{suffix}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
