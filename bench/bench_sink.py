"""Sink insert rate: Warden's ClickHouse sink path vs a raw clickhouse-connect insert, same rows.

Usage::

    nice .venv/bin/python bench/bench_sink.py [--quick] [--repeat 2]

No Kafka. The records are what the traces sink agent receives: ``make_trace`` output
validated as ``InferenceTrace``, redacted by the worker's ``Redactor`` (with its
``redaction`` audit key), given ``_partition``/``_offset`` and round-tripped through JSON as
on the redacted topic. Every case runs in its own subprocess on a fresh chDB directory
with the schema from ``sinks/migrations`` (chDB holds one engine per process):

* Warden: per batch ``tables.rows_for(TRACES, batch)`` + ``batch_token`` +
  ``ClickHouseStore.insert(..., dedup_token=...)``, the sink agent's ``write_batch`` path
  (also reported: the insert alone, and the row-building share);
* peer: ``clickhouse_connect`` client ``insert("traces", rows, column_names=...)`` of the
  same rows, built beforehand (no token, no lock, no row mapping).

One batch of extra records is inserted first and not timed (warm-up); then N rows in
batches of 500, 2000, 5000. rows/s and MB/s (JSON size of the records) per case; best of
``--repeat``; the row count in the table is checked afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._kafka import BENCH_KEY, SIZES_KB, load1, machine, save, table, trace_dicts  # noqa: E402

BATCHES = (500, 2000, 5000)


def redacted_records(n: int, trace_kb: float) -> list[dict[str, Any]]:
    """Records as the govern agent sends them to the redacted topic."""
    from streams.config import WardenSettings
    from streams.records import InferenceTrace
    from streams.redaction import load_redactor

    redactor = load_redactor(WardenSettings(pseudonym_key=BENCH_KEY))
    out = []
    for i, trace in enumerate(trace_dicts(n, trace_kb, seed=23)):
        record, redaction = redactor.redact_trace(InferenceTrace.model_validate(trace).model_dump(mode="json"))
        record["redaction"] = redaction.to_dict()
        record["_partition"], record["_offset"] = i % 4, i // 4
        out.append(json.loads(json.dumps(record)))
    return out


# ----------------------------------------------------------------------------- one case (subprocess)
def run_case(method: str, batch: int, data_path: Path, chdir: Path) -> dict[str, Any]:
    from sinks import tables
    from sinks.clickhouse import ClickHouseStore, batch_token, open_client
    from sinks.migrations_runner import apply_migrations

    lines = data_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    warm, measured = records[:batch], records[batch:]
    mbytes = sum(len(line.encode()) for line in lines[batch:]) / 1e6
    layout = tables.TRACES
    batches = [measured[i:i + batch] for i in range(0, len(measured), batch)]
    build_s = insert_s = 0.0
    if method == "warden":
        store = ClickHouseStore(f"chdb://{chdir}")
        store.migrate()

        def write(chunk: list[dict[str, Any]]) -> tuple[float, float]:
            t0 = time.perf_counter()
            rows, keys = tables.rows_for(layout, chunk)
            token = batch_token(layout.table, keys)
            t1 = time.perf_counter()
            store.insert(layout.table, layout.columns, rows, dedup_token=token)
            return t1 - t0, time.perf_counter() - t1

        write(warm)
        for chunk in batches:
            b, i = write(chunk)
            build_s += b
            insert_s += i
        stored = store.query_rows("SELECT count() FROM traces")[0][0]
    else:
        client = open_client(f"chdb://{chdir}")
        apply_migrations(client)
        columns = list(layout.columns)
        client.insert("traces", tables.rows_for(layout, warm)[0], column_names=columns)
        prepared = [tables.rows_for(layout, chunk)[0] for chunk in batches]
        for rows in prepared:
            t0 = time.perf_counter()
            client.insert("traces", rows, column_names=columns)
            insert_s += time.perf_counter() - t0
        stored = client.query("SELECT count() FROM traces").result_rows[0][0]
    total = build_s + insert_s
    return {"method": method, "batch": batch, "rows": len(measured), "mb": round(mbytes, 2),
            "seconds": round(total, 3), "insert_seconds": round(insert_s, 3), "build_seconds": round(build_s, 3),
            "rows_per_s": round(len(measured) / total, 1), "mb_per_s": round(mbytes / total, 2),
            "insert_only_rows_per_s": round(len(measured) / insert_s, 1),
            "stored_rows": int(stored), "expected_rows": len(records)}


def case_in_subprocess(method: str, batch: int, data_path: Path, work: Path, tag: str) -> dict[str, Any]:
    chdir = work / f"ch-{tag}"
    load = load1()
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--case", method, str(batch),
                          str(data_path), str(chdir)], capture_output=True, text=True, cwd=ROOT, timeout=1200)
    shutil.rmtree(chdir, ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"case {method} {batch} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load1_before"] = load
    if result["stored_rows"] != result["expected_rows"]:
        raise RuntimeError(f"stored {result['stored_rows']} rows, expected {result['expected_rows']}")
    return result


# ----------------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--n2", type=int, default=20_000, help="rows at 2 KB")
    parser.add_argument("--n25", type=int, default=5_000, help="rows at 25 KB")
    parser.add_argument("--repeat", type=int, default=2, help="runs per case (best reported), alternating")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.case:
        method, batch, data, chdir = args.case
        print(json.dumps(run_case(method, int(batch), Path(data), Path(chdir))))
        return
    counts = {"2KB": 2_500 if args.quick else args.n2, "25KB": 500 if args.quick else args.n25}
    batches = (500,) if args.quick else BATCHES
    work = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    results: dict[str, Any] = {"machine": machine(), "method": "best of repeats; warm-up batch excluded",
                               "cases": []}
    rows_out = []
    try:
        for size, kb in SIZES_KB.items():
            n = counts[size]
            records = [json.dumps(r) for r in redacted_records(n + max(batches), kb)]
            for batch in batches:
                data = work / f"{size}-{batch}.jsonl"
                data.write_text("\n".join(records[:n + batch]))
                best: dict[str, dict[str, Any]] = {}
                every: dict[str, list[dict[str, Any]]] = {"warden": [], "raw": []}
                for rep in range(args.repeat):
                    order = ("warden", "raw") if rep % 2 == 0 else ("raw", "warden")
                    for method in order:
                        r = case_in_subprocess(method, batch, data, work, f"{size}-{batch}-{method}-{rep}")
                        every[method].append(r)
                        if method not in best or r["rows_per_s"] > best[method]["rows_per_s"]:
                            best[method] = r
                        print(f"{size} batch {batch:>5} {method:<6} rep {rep}: {r['rows_per_s']:>9,.0f} rows/s "
                              f"{r['mb_per_s']:>6.1f} MB/s (load {r['load1_before']})", flush=True)
                data.unlink()
                w, raw = best["warden"], best["raw"]
                results["cases"].append({"size": size, "batch": batch, "rows": n, "warden": w, "raw": raw,
                                         "all_runs": every})
                rows_out.append([size, batch, n, f"{w['rows_per_s']:,.0f}", f"{w['mb_per_s']:.1f}",
                                 f"{w['insert_only_rows_per_s']:,.0f}", f"{raw['rows_per_s']:,.0f}",
                                 f"{raw['mb_per_s']:.1f}", f"{w['rows_per_s'] / raw['rows_per_s']:.2f}",
                                 f"{w['insert_only_rows_per_s'] / raw['rows_per_s']:.2f}",
                                 f"{100 * w['build_seconds'] / w['seconds']:.0f}%"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(["size", "batch", "rows", "Warden rows/s", "Warden MB/s", "Warden insert-only rows/s",
                 "raw client rows/s", "raw MB/s", "Warden ÷ raw", "insert-only ÷ raw", "rows_for share"],
                rows_out))
    print(f"\nresults: {save('bench_sink', results)}")


if __name__ == "__main__":
    main()
