"""Pipeline throughput: a Warden worker vs a bare Faust pass-through agent, same broker, same data.

Usage::

    KAFKA_PORT=29092 KAFKA_DATA=$PWD/var/kafka-bench-29092 bash deploy/kafka/kafka.sh up
    nice .venv/bin/python bench/bench_pipeline.py [--quick] [--repeat 2]

Method, per trace size (2 KB and 25 KB):

1. N synthetic traces (``streams.loadgen.make_trace``, 4 routes × 2 models) are published
   once with ``TracePublisher`` to a fresh raw topic with 4 partitions, and flushed.
2. The peer: a minimal Faust app (this file, ``--faust-peer``) with the worker's Faust
   settings (broker, 4 partitions, commit interval, memory store, acks=all, lz4, fetch and
   request sizes) whose one agent forwards each raw record to another topic. It counts what
   it forwarded on a web page.
3. Warden: a worker as ``warden worker`` runs it (``streams.worker.run_worker``, role all: validate → redact → score → sink to
   chDB) reading the same raw topic under its own consumer group.

Each process is started after the data is in Kafka; its counters are polled every 0.1 s
(``warden_traces_governed_total`` and ``warden_sink_rows_total{table="traces"}`` from
``/metrics`` for Warden, the forwarded count for the peer). Start-up and warm-up are
excluded the same way for both: the clock starts at the first sample with at least
``--warmup`` (5%) of N consumed (governed, for Warden) and stops at the first sample with
all N; the rate is the records after the start sample over that time. "Governed" stops
when the govern agent finished N, "stored" when the sink has all N rows in ClickHouse
(the end-to-end figure, same start as governed). Because the machine is shared, each
rate is also given per CPU-second of the measured process (utime+stime of all its
threads from /proc over the same interval); the stored count
is checked against ``SELECT count() FROM traces FINAL`` at the end, and the peer's output
topic against N. Both read the same raw records; the peer runs first, then Warden, and
``--repeat`` alternates them again.

The peer runs in the project virtualenv on purpose: it is the same faust-streaming and
aiokafka release the worker uses, so the ratio is what governance costs on top of Faust.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._kafka import (  # noqa: E402
    BENCH_KEY,
    BOOTSTRAP,
    SIZES_KB,
    Process,
    create_topic,
    delete_topics,
    end_offsets,
    free_port,
    load1,
    machine,
    prometheus_value,
    require_broker,
    save,
    table,
    trace_dicts,
)

PARTITIONS = 4
COMMIT_INTERVAL_S = 1.0
POLL_S = 0.1


# ----------------------------------------------------------------------------- the peer (subprocess)
def faust_peer() -> None:
    """A bare Faust pass-through: raw topic → agent → output topic, nothing else."""
    import faust

    env = os.environ
    app = faust.App(
        env["PEER_APP_ID"],
        broker=f"kafka://{env['PEER_BOOTSTRAP']}",
        store="memory://",
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        web_host="127.0.0.1",
        web_port=int(env["PEER_WEB_PORT"]),
        web_enabled=True,
        datadir=env["PEER_DATA_DIR"],
        broker_commit_interval=COMMIT_INTERVAL_S,
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024,
        stream_wait_empty=False,
        producer_acks=-1,
        producer_compression_type="lz4",
    )
    raw = app.topic(env["PEER_SOURCE"], key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    out = app.topic(env["PEER_SINK"], key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
    forwarded = {"count": 0}

    @app.agent(raw, concurrency=1)
    async def passthrough(stream: Any) -> None:
        async for event in stream.events():
            await out.send(key=event.key, value=event.value)
            forwarded["count"] += 1

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"ok": True})

    @app.page("/count")
    async def count(web: Any, request: Any) -> Any:
        return web.json(forwarded)

    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


# ----------------------------------------------------------------------------- measuring
def follow(read: Any, n: int, timeout_s: float, proc: Process) -> list[tuple[float, dict[str, float]]]:
    """Poll ``read()`` (a dict of counters) until every counter reaches n; the samples."""
    samples: list[tuple[float, dict[str, float]]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"process exited early:\n{proc.log_tail()}")
        try:
            values = read()
        except OSError:
            values = None
        if values is not None:
            counted = dict(values)
            values["cpu_s"] = cpu_seconds(proc.proc.pid) if proc.proc is not None else 0.0
            samples.append((time.monotonic(), values))
            if all(v >= n for v in counted.values()):
                return samples
        time.sleep(POLL_S)
    raise TimeoutError(f"not done within {timeout_s}s (last {samples[-1:]}):\n{proc.log_tail()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate(samples: list[tuple[float, dict[str, float]]], key: str, n: int, warmup: int,
         clock: str | None = None) -> dict[str, float]:
    """Records per second between warm-up and the first sample with all n.

    The clock starts when ``clock`` (default ``key``) reaches ``warmup``: stored rows are
    timed from when *consumption* was warm, so a sink draining a backlog cannot look faster
    than the stage feeding it.
    """
    clock = clock or key
    start_t, start_v, start_cpu = next((t, v[clock], v["cpu_s"]) for t, v in samples if v[clock] >= warmup)
    end_t, end_v, end_cpu = next((t, v[key], v["cpu_s"]) for t, v in samples if v[key] >= n)
    first = next(t for t, v in samples if v[clock] > 0)
    seconds = end_t - start_t
    records = end_v - start_v
    # None when one batch took the counter from below warm-up to N: make N larger.
    return {"per_s": round(records / seconds, 1) if seconds > 0 else None,
            # Per CPU-second of the measured process: far less sensitive than wall time to
            # what else runs on a shared machine (the broker's CPU is not in it, for either).
            "per_cpu_s": round(records / (end_cpu - start_cpu), 1) if end_cpu > start_cpu else None,
            "cpu_s": round(end_cpu - start_cpu, 2), "cpu_utilisation": round((end_cpu - start_cpu) / seconds, 2)
            if seconds > 0 else None,
            "measured_records": int(records), "measured_s": round(seconds, 2),
            "first_to_last_s": round(end_t - first, 2)}


def run_peer(bootstrap: str, source: str, n: int, warmup: int, work: Path, timeout_s: float) -> dict[str, Any]:
    port, tag = free_port(), uuid.uuid4().hex[:8]
    sink = f"{source}.peer-{tag}"
    create_topic(bootstrap, sink, PARTITIONS)
    env = {**os.environ, "PEER_APP_ID": f"bench-faust-{tag}", "PEER_BOOTSTRAP": bootstrap,
           "PEER_SOURCE": source, "PEER_SINK": sink, "PEER_WEB_PORT": str(port),
           "PEER_DATA_DIR": str(work / f"peer-{tag}"), "PYTHONUNBUFFERED": "1"}
    proc = Process([sys.executable, str(Path(__file__).resolve()), "--faust-peer"], env, port,
                   work / f"peer-{tag}.log")
    load = load1()
    proc.start()
    try:
        samples = follow(lambda: {"forwarded": json.loads(proc.get("/count"))["count"]}, n, timeout_s, proc)
        time.sleep(COMMIT_INTERVAL_S + 1)  # the last sends are flushed before we count the topic
        in_topic = end_offsets(bootstrap, sink)
    finally:
        proc.stop()
    return {"load1_before": load, "load1_after": load1(), "output_topic_records": in_topic,
            "forwarded": rate(samples, "forwarded", n, warmup)}


def snapshot(rev: str, work: Path) -> tuple[Path, str]:
    """The worker's code as committed at ``rev`` (``git archive``), so edits in progress in
    the working tree cannot change or break a run; "worktree" uses the tree as it is."""
    if rev == "worktree":
        return ROOT, "worktree"
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    target = work / f"src-{sha[:10]}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, sha


def run_warden(bootstrap: str, prefix: str, n: int, warmup: int, work: Path, timeout_s: float,
               src: Path = ROOT) -> dict[str, Any]:
    port, tag = free_port(), uuid.uuid4().hex[:8]
    env = {**os.environ, "PYTHONPATH": str(src), "KAFKA_BOOTSTRAP": bootstrap, "CLICKHOUSE_DSN": f"chdb://{work / f'ch-{tag}'}",
           "WARDEN_TOPIC_PREFIX": prefix, "WARDEN_APP_ID": f"warden-bench-{tag}",
           "WARDEN_PARTITIONS": str(PARTITIONS), "WARDEN_WEB_PORT": str(port),
           "WARDEN_DATA_DIR": str(work / f"worker-{tag}"), "WARDEN_ROLE": "all",
           "WARDEN_COMMIT_INTERVAL_S": str(COMMIT_INTERVAL_S), "WARDEN_LOG_LEVEL": "WARNING",
           "WARDEN_PSEUDONYM_KEY": BENCH_KEY, "WARDEN_REDACTION_KEY": BENCH_KEY, "PYTHONUNBUFFERED": "1"}
    # What `warden worker` runs (streams.cli.worker → streams.worker.run_worker), without
    # importing the CLI's other sub-commands.
    argv = [sys.executable, "-c", "from streams.config import WardenSettings; "
            "from streams.worker import run_worker; run_worker(WardenSettings())"]
    proc = Process(argv, env, port, work / f"worker-{tag}.log", cwd=src)

    def read() -> dict[str, float]:
        text = proc.get("/metrics").decode()
        return {"governed": prometheus_value(text, "warden_traces_governed_total"),
                "stored": prometheus_value(text, "warden_sink_rows_total", 'table="traces"')}

    load = load1()
    proc.start()
    try:
        samples = follow(read, n, timeout_s, proc)
        final = int(proc.sql("SELECT count() AS c FROM traces FINAL")[0]["c"])
        # Rows inserted more than once (a batch replayed after a rebalance): the sink counter
        # counts them, so a replay makes "stored" look early. Reported, not hidden.
        physical = int(proc.sql("SELECT count() AS c FROM traces")[0]["c"])
        text = proc.get("/metrics").decode()
        stages = {s: {"batches": prometheus_value(text, "warden_stage_seconds_count", f'stage="{s}"'),
                      "seconds": round(prometheus_value(text, "warden_stage_seconds_sum", f'stage="{s}"'), 2)}
                  for s in ("govern", "sink_traces")}
    finally:
        proc.stop()
    log = proc.log_tail(100_000).lower()
    troubles = {word: log.count(word) for word in ("rebalanc", "heartbeat", "timeout", "error")}
    return {"load1_before": load, "load1_after": load1(), "traces_final_count": final,
            "physical_rows": physical, "sink_rows_counter": int(samples[-1][1]["stored"]),
            "log_mentions": troubles, "stage_seconds": stages,
            "governed": rate(samples, "governed", n, warmup), "stored": rate(samples, "stored", n, warmup, clock="governed")}


def publish(bootstrap: str, prefix: str, n: int, trace_kb: float) -> dict[str, Any]:
    from streams.config import WardenSettings
    from streams.publisher import TracePublisher
    from streams.topics import ensure_topics

    settings = WardenSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
    ensure_topics(settings)
    topic = settings.topic("traces.raw.v1")
    size = 0
    started = time.monotonic()
    with TracePublisher(bootstrap, topic) as pub:
        for trace in trace_dicts(n, trace_kb, seed=17):
            size += len(json.dumps(trace, separators=(",", ":"), default=str))
            while not pub.publish(trace):  # pre-publishing: wait rather than drop
                pub.flush(1.0)
    assert pub.stats.delivered == n, pub.stats.as_dict()
    return {"topic": topic, "records": end_offsets(bootstrap, topic), "mean_bytes": round(size / n),
            "publish_s": round(time.monotonic() - started, 1)}


# ----------------------------------------------------------------------------- driver
def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faust-peer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", default=BOOTSTRAP)
    parser.add_argument("--n2", type=int, default=20_000, help="traces at 2 KB")
    parser.add_argument("--n25", type=int, default=4_000, help="traces at 25 KB")
    parser.add_argument("--warmup", type=float, default=0.05, help="fraction of N excluded as warm-up")
    parser.add_argument("--repeat", type=int, default=1, help="peer/Warden pairs per size, alternating")
    parser.add_argument("--quick", action="store_true", help="small N, for a smoke run")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--code", default="HEAD",
                        help="git revision whose streams/sinks/detectors the worker runs, or 'worktree'")
    args = parser.parse_args()
    if args.faust_peer:
        faust_peer()
        return
    require_broker(args.bootstrap)
    counts = {"2KB": 2_000 if args.quick else args.n2, "25KB": 1_500 if args.quick else args.n25}
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    src, code = snapshot(args.code, work)
    results: dict[str, Any] = {"machine": machine(), "worker_code": code, "partitions": PARTITIONS, "warmup_fraction": args.warmup,
                               "method": "time from warm-up (5% of N) to all N, counters polled every 0.1 s",
                               "sizes": {}}
    try:
        for size, kb in SIZES_KB.items():
            n = counts[size]
            warmup = max(1, int(n * args.warmup))
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            data = publish(args.bootstrap, prefix, n, kb)
            print(f"{size}: {n} traces published ({data['mean_bytes']} B each, {data['publish_s']} s)", flush=True)
            runs: list[dict[str, Any]] = []
            for rep in range(args.repeat):
                peer = run_peer(args.bootstrap, data["topic"], n, warmup, work, args.timeout)
                print(f"  faust peer  rep {rep}: {fmt(peer['forwarded']['per_s'])} traces/s "
                      f"(load {peer['load1_before']})", flush=True)
                warden = run_warden(args.bootstrap, prefix, n, warmup, work, args.timeout, src)
                print(f"  warden      rep {rep}: {fmt(warden['governed']['per_s'])} governed/s, "
                      f"{fmt(warden['stored']['per_s'])} stored/s (load {warden['load1_before']})", flush=True)
                if warden["physical_rows"] != n:
                    print(f"  NOTE: {warden['physical_rows'] - n} rows inserted twice (replayed batches; "
                          f"worker log mentions {warden['log_mentions']})", flush=True)
                if warden["traces_final_count"] != n or peer["output_topic_records"] != n:
                    print(f"  WARNING: counts differ from {n}: stored {warden['traces_final_count']}, "
                          f"peer topic {peer['output_topic_records']}", flush=True)
                runs.append({"faust_peer": peer, "warden": warden})
            results["sizes"][size] = {"n": n, "data": data, "runs": runs}
            delete_topics(args.bootstrap, prefix)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for size, entry in results["sizes"].items():
        for rep, run in enumerate(entry["runs"]):
            peer = run["faust_peer"]["forwarded"]["per_s"]
            gov, stored = run["warden"]["governed"]["per_s"], run["warden"]["stored"]["per_s"]
            peer_cpu = run["faust_peer"]["forwarded"]["per_cpu_s"]
            stored_cpu = run["warden"]["stored"]["per_cpu_s"]
            rows.append([size, entry["n"], rep, fmt(peer), fmt(gov), fmt(stored), ratio(gov, peer),
                         ratio(stored, peer), fmt(peer_cpu), fmt(stored_cpu), ratio(stored_cpu, peer_cpu),
                         f"{run['faust_peer']['load1_before']}/{run['warden']['load1_before']}"])
    print()
    print(table(["size", "N", "rep", "bare Faust traces/s", "Warden governed/s", "Warden stored/s",
                 "governed ÷ Faust", "stored ÷ Faust", "Faust /CPU-s", "Warden stored /CPU-s", "CPU-s ratio",
                 "load1 (peer/warden)"], rows))
    print(f"\nresults: {save('bench_pipeline', results)}")


if __name__ == "__main__":
    main()
