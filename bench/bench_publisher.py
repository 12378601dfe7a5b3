"""Publisher cost on the request path: ``TracePublisher.publish`` vs a bare ``Producer.produce``.

Usage::

    KAFKA_PORT=29092 KAFKA_DATA=$PWD/var/kafka-bench-29092 bash deploy/kafka/kafka.sh up
    nice .venv/bin/python bench/bench_publisher.py [--quick] [--calls 50000]

Each call is timed with ``time.perf_counter_ns`` (p50/p99/p99.9/max µs, and calls/s).
Three ways to hand over the same 2 KB traces (``make_trace``), each in its own subprocess
with a fresh producer, run in alternating order over ``--repeat`` rounds:

* ``publish(dict)``: Warden's ``TracePublisher.publish`` (JSON serialisation, partition
  key, stats bookkeeping, delivery callback, ``poll(0)``);
* ``publish_raw(bytes)``: the same publisher given the pre-serialised bytes (bookkeeping
  without serialisation);
* ``bare produce``: ``confluent_kafka.Producer.produce(topic, value, key)`` of the same
  pre-serialised bytes with the same producer configuration, nothing else (a
  ``BufferError`` is caught and counted so it can run when the buffer fills).

Two broker states:

* ``up``: the benchmark broker (``BENCH_KAFKA_BOOTSTRAP``, default 127.0.0.1:29092); after
  the calls the producer is flushed and deliveries are counted;
* ``down``: a closed port on 127.0.0.1 (nothing listens, connection refused), with
  ``--down-calls`` (150k) calls so the default 100k-message buffer fills: calls must stay
  fast and the overflow must be counted as drops.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._kafka import (  # noqa: E402
    BOOTSTRAP,
    create_topic,
    delete_topics,
    dumps,
    free_port,
    load1,
    machine,
    require_broker,
    save,
    table,
    trace_dicts,
)

WAYS = ("publish(dict)", "publish_raw(bytes)", "bare produce")
DISTINCT = 5_000  # distinct traces, cycled: keeps memory small for 150k calls


def latency_summary(ns: np.ndarray, seconds: float) -> dict[str, float]:
    us = ns / 1000.0
    return {"calls": int(len(ns)), "p50_us": round(float(np.percentile(us, 50)), 2),
            "p99_us": round(float(np.percentile(us, 99)), 2), "p99_9_us": round(float(np.percentile(us, 99.9)), 2),
            "max_us": round(float(us.max()), 1), "mean_us": round(float(us.mean()), 2),
            "calls_per_s": round(len(ns) / seconds, 1)}


# ----------------------------------------------------------------------------- one case (subprocess)
def bare_conf(bootstrap: str) -> dict[str, Any]:
    """``TracePublisher``'s librdkafka configuration (streams/publisher.py, copied: the
    publisher does not expose it), so the bare producer differs only in the Python layer."""
    return {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 100_000, "queue.buffering.max.kbytes": 256 * 1024,
            "linger.ms": 5.0, "compression.type": "lz4", "acks": "all", "enable.idempotence": True,
            "message.max.bytes": 16 * 1024 * 1024, "message.timeout.ms": 300_000,
            "security.protocol": "PLAINTEXT"}


def _key(trace: dict[str, Any]) -> bytes:
    from streams.records import partition_key

    return partition_key(str(trace.get("route", "")), str(trace.get("request_model", ""))).encode()


def run(way: str, bootstrap: str, topic: str, calls: int, broker_up: bool) -> dict[str, Any]:
    from confluent_kafka import Producer

    from streams.publisher import TracePublisher

    traces = list(trace_dicts(min(calls, DISTINCT), 2.0, seed=31))
    payloads = [(dumps(t), _key(t)) for t in traces]
    timings = np.empty(calls, dtype=np.int64)
    accepted = np.ones(calls, dtype=bool)
    publisher = None if way == "bare produce" else TracePublisher(bootstrap, topic)
    clock = time.perf_counter_ns
    dropped = 0
    # Tails on a shared 2-core VM are mostly the scheduler: count what happened meanwhile.
    usage0, gcs0 = resource.getrusage(resource.RUSAGE_SELF), sum(g["collections"] for g in gc.get_stats())
    if way == "bare produce":
        # Exactly the publisher's librdkafka configuration, so only the Python layer differs.
        producer = Producer(bare_conf(bootstrap))
        produce = producer.produce
        started = time.perf_counter()
        for i in range(calls):
            value, key = payloads[i % len(payloads)]
            t0 = clock()
            try:
                produce(topic, value=value, key=key)
            except BufferError:
                dropped += 1
                accepted[i] = False
            timings[i] = clock() - t0
        seconds = time.perf_counter() - started
        flush_target: Any = producer
    else:
        assert publisher is not None
        started = time.perf_counter()
        if way == "publish(dict)":
            publish = publisher.publish
            for i in range(calls):
                trace = traces[i % len(traces)]
                t0 = clock()
                accepted[i] = publish(trace)
                timings[i] = clock() - t0
        else:
            publish_raw = publisher.publish_raw
            for i in range(calls):
                value, key = payloads[i % len(payloads)]
                t0 = clock()
                accepted[i] = publish_raw(value, key)
                timings[i] = clock() - t0
        seconds = time.perf_counter() - started
        flush_target = publisher
    usage1, gcs1 = resource.getrusage(resource.RUSAGE_SELF), sum(g["collections"] for g in gc.get_stats())
    result: dict[str, Any] = {"way": way, "broker": "up" if broker_up else "down",
                              **latency_summary(timings, seconds),
                              "involuntary_context_switches": usage1.ru_nivcsw - usage0.ru_nivcsw,
                              "gc_collections": gcs1 - gcs0,
                              "calls_over_100us": int((timings > 100_000).sum())}
    if not accepted.all():
        result["when_dropping"] = latency_summary(timings[~accepted], seconds)
        result["when_accepting"] = latency_summary(timings[accepted], seconds)
    if publisher is not None:
        dropped = publisher.stats.dropped_buffer_full
    result["dropped_buffer_full"] = dropped
    result["accepted"] = calls - dropped
    if broker_up:
        t0 = time.perf_counter()
        left = flush_target.flush(120)
        result["flush_s"] = round(time.perf_counter() - t0, 2)
        result["undelivered_after_flush"] = int(left)
    if publisher is not None:
        result["publisher_stats"] = publisher.stats.as_dict()
    return result


def case_in_subprocess(way: str, bootstrap: str, topic: str, calls: int, broker_up: bool) -> dict[str, Any]:
    load = load1()
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--case", way, bootstrap, topic,
                          str(calls), "up" if broker_up else "down"], capture_output=True, text=True, cwd=ROOT,
                         timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"case {way} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load1_before"] = load
    return result


# ----------------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", default=BOOTSTRAP)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--down-calls", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.case:
        way, bootstrap, topic, calls, state = args.case
        print(json.dumps(run(way, bootstrap, topic, int(calls), state == "up")))
        return
    require_broker(args.bootstrap)
    calls = 5_000 if args.quick else args.calls
    down_calls = 20_000 if args.quick else args.down_calls
    prefix = f"benchpub{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.traces.raw.v1"
    create_topic(args.bootstrap, topic, 4)
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    results: dict[str, Any] = {"machine": machine(), "trace_bytes": round(
        sum(len(dumps(t)) for t in trace_dicts(200, 2.0, seed=31)) / 200), "runs": []}
    try:
        for rep in range(args.repeat):
            ways = WAYS if rep % 2 == 0 else tuple(reversed(WAYS))
            for state, bootstrap, n in (("up", args.bootstrap, calls), ("down", closed, down_calls)):
                for way in ways:
                    r = case_in_subprocess(way, bootstrap, topic, n, state == "up")
                    r["rep"] = rep
                    results["runs"].append(r)
                    print(f"broker {state:<4} {way:<18} rep {rep}: p50 {r['p50_us']:>7.2f} µs  p99 {r['p99_us']:>8.2f}"
                          f"  p99.9 {r['p99_9_us']:>8.2f}  max {r['max_us']:>9.1f}  dropped {r['dropped_buffer_full']}"
                          f"  ctx-switches {r['involuntary_context_switches']}  >100µs {r['calls_over_100us']}"
                          f"  (load {r['load1_before']})", flush=True)
    finally:
        delete_topics(args.bootstrap, prefix)

    rows = []
    for state in ("up", "down"):
        for way in WAYS:
            runs = [r for r in results["runs"] if r["broker"] == state and r["way"] == way]
            best = min(runs, key=lambda r: r["p50_us"])
            bare = min((r for r in results["runs"] if r["broker"] == state and r["way"] == "bare produce"),
                       key=lambda r: r["p50_us"])
            delivered = best.get("publisher_stats", {}).get("delivered", "")
            if state == "up" and way == "bare produce":
                delivered = best["accepted"] - best.get("undelivered_after_flush", 0)
            dropping = best.get("when_dropping", {})
            rows.append([state, way, best["calls"], best["p50_us"], best["p99_us"], best["p99_9_us"], best["max_us"],
                         f"{best['calls_per_s']:,.0f}", f"{best['p50_us'] / bare['p50_us']:.2f}",
                         f"{best['p99_us'] / bare['p99_us']:.2f}", best["dropped_buffer_full"],
                         f"{dropping['p50_us']}/{dropping['p99_us']}" if dropping else "",
                         delivered, best["calls_over_100us"], best["involuntary_context_switches"]])
    results["table_rule"] = "per row the repeat with the lowest p50; ratios against bare produce's best repeat"
    print()
    print(table(["broker", "call", "calls", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "calls/s",
                 "p50 ÷ bare", "p99 ÷ bare", "dropped", "dropped calls p50/p99 µs", "delivered",
                 "calls >100 µs", "invol. ctx switches"], rows))
    print(f"\nresults: {save('bench_publisher', results)}")


if __name__ == "__main__":
    main()
