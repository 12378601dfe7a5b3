"""Storage per trace: ClickHouse (Warden's schema) vs gzip'd JSON lines.

For traces of about 2 KB and 25 KB (serialised redacted record), write N traces shaped
like the worker's redacted records (``streams.loadgen.make_trace`` → ``Redactor`` →
``sinks.tables.TRACES`` rows, inserted in 500-row batches with dedup tokens, as the sink
does) into a fresh embedded chDB, ``OPTIMIZE ... FINAL``, and read ``system.parts`` /
``system.columns``. Peer, same records, same run: JSON lines compressed with gzip -6,
what a naive log store keeps.

Two text sources for the large message field (the "system" context that makes a trace
big): ``dev`` samples real prompts and PII-bearing texts from ../shared/data (so
redaction leaves pseudonyms, as in production), ``loadgen`` is the load generator's
repeated filler sentence (compresses unrealistically well; shown for reference).

    nice .venv/bin/python bench/bench_storage.py            # ~1 min
    nice .venv/bin/python bench/bench_storage.py --n2 5000 --n25 2000
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detectors.redaction.policy import RedactionPolicy  # noqa: E402
from detectors.redaction.redactor import Redactor  # noqa: E402
from sinks import tables  # noqa: E402
from sinks.clickhouse import ClickHouseStore, batch_token  # noqa: E402
from streams.loadgen import FILLER, LoadPlan, make_trace  # noqa: E402

DATA = REPO.parent / "shared" / "data"
BIG_COLUMNS = ("input_messages", "output_messages", "tool_calls", "redaction_findings", "metadata")


def dev_texts() -> list[str]:
    texts = [json.loads(line)["prompt"] for line in (DATA / "prompts_dev.jsonl").open()]
    texts += [json.loads(line)["text"] for line in (DATA / "pii_dev.jsonl").open()]
    return texts


def records(n: int, kb: float, source: str, texts: list[str], seed: int = 3) -> list[dict[str, Any]]:
    """``n`` redacted records whose serialised raw trace is about ``kb`` KiB: the system
    message (the context that makes traces big) is sized to fill up to the target."""
    rng = random.Random(seed)
    plan = LoadPlan.build(count=n, rate=0, routes=8, trace_kb=0.0, incidents=["pii@0:0.3", "error_burst@0.5:0.05"],
                          seed=seed)
    redactor = Redactor(RedactionPolicy.load(REPO / "deploy" / "config" / "redaction-policy.yaml"),
                        secrets.token_bytes(32))
    start = time.time() - n * 0.05
    target = int(kb * 1024)
    out = []
    for i in range(n):
        trace = make_trace(plan, i, rng, datetime.fromtimestamp(start + i * 0.05, UTC))
        size = max(0, target - len(json.dumps(trace, separators=(",", ":"))))
        if source == "dev":
            parts: list[str] = []
            while sum(len(p) + 1 for p in parts) < size:
                parts.append(rng.choice(texts))
            context = " ".join(parts)[:size]
        else:
            context = (FILLER * (size // len(FILLER) + 1))[:size]
        trace["input_messages"][0]["content"] = context
        redacted, redaction = redactor.redact_trace(trace)
        redacted["redaction"] = redaction.to_dict()
        redacted["cost_usd"] = round(redacted["input_tokens"] * 3e-7 + redacted["output_tokens"] * 1.2e-6, 9)
        out.append(redacted)
    return out


def clickhouse_bytes(recs: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    store = ClickHouseStore(f"chdb://{workdir}/ch")
    try:
        store.migrate()
        # Production parts are wide (one file per column) once they pass 10 MB; small bench
        # parts would be "compact" and report no per-column sizes. Same codecs either way.
        store.command("ALTER TABLE traces MODIFY SETTING min_bytes_for_wide_part = 0")
        for start in range(0, len(recs), 500):
            rows, keys = tables.rows_for(tables.TRACES, recs[start:start + 500])
            store.insert("traces", tables.TRACES.columns, rows, dedup_token=batch_token("traces", keys))
        for table in ("traces", "tool_calls", "traces_per_minute"):
            store.command(f"OPTIMIZE TABLE {table} FINAL")
        parts = {name: (int(c), int(u), int(d)) for name, c, u, d in store.query_rows(
            "SELECT table, sum(data_compressed_bytes), sum(data_uncompressed_bytes), sum(bytes_on_disk) "
            "FROM system.parts WHERE database = currentDatabase() AND active GROUP BY table")}
        columns = {name: (int(c), int(u)) for name, c, u in store.query_rows(
            "SELECT name, data_compressed_bytes, data_uncompressed_bytes FROM system.columns "
            "WHERE database = currentDatabase() AND table = 'traces'")}
        stored = store.query_rows("SELECT count() FROM traces FINAL")[0][0]
    finally:
        store.close()
    n = len(recs)
    assert stored == n, f"stored {stored} of {n}"
    compressed, uncompressed, on_disk = parts["traces"]
    derived = sum(parts.get(t, (0, 0, 0))[2] for t in ("tool_calls", "traces_per_minute"))
    return {
        "compressed_per_trace": compressed / n, "uncompressed_per_trace": uncompressed / n,
        "on_disk_per_trace": on_disk / n, "derived_on_disk_per_trace": derived / n,
        "columns": {c: {"compressed_per_trace": columns[c][0] / n, "uncompressed_per_trace": columns[c][1] / n,
                        "ratio": columns[c][1] / max(1, columns[c][0])} for c in BIG_COLUMNS},
    }


def gzip_jsonl_bytes(recs: list[dict[str, Any]]) -> tuple[float, float]:
    lines = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in recs).encode()
    return len(lines) / len(recs), len(gzip.compress(lines, compresslevel=6)) / len(recs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n2", type=int, default=4000, help="traces of ~2 KB")
    parser.add_argument("--n25", type=int, default=1000, help="traces of ~25 KB")
    parser.add_argument("--sources", default="dev,loadgen", help="dev (shared data text), loadgen (filler)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_storage.json")
    args = parser.parse_args()
    texts = dev_texts() if "dev" in args.sources else []
    results = []
    for source in args.sources.split(","):
        for kb, n in ((2.0, args.n2), (25.0, args.n25)):
            recs = records(n, kb, source, texts)
            json_bytes, gzip_bytes = gzip_jsonl_bytes(recs)
            with tempfile.TemporaryDirectory() as tmp:
                ch = clickhouse_bytes(recs, Path(tmp))
            results.append({"source": source, "trace_kb": kb, "traces": n, "json_bytes_per_trace": json_bytes,
                            "gzip_jsonl_bytes_per_trace": gzip_bytes, "clickhouse": ch,
                            "gzip_over_clickhouse": gzip_bytes / ch["compressed_per_trace"],
                            "gzip_over_clickhouse_on_disk": gzip_bytes / ch["on_disk_per_trace"]})
    header = ("text", "size", "traces", "JSON B/trace", "CH compressed B/trace", "CH on disk B/trace",
              "CH ratio", "gzip JSONL B/trace", "gzip ÷ CH", "gzip ÷ CH on disk", "+ tool_calls, rollups B/trace")
    print(" | ".join(header))
    for r in results:
        ch = r["clickhouse"]
        print(" | ".join([
            r["source"], f"{r['trace_kb']:.0f} KB", str(r["traces"]), f"{r['json_bytes_per_trace']:.0f}",
            f"{ch['compressed_per_trace']:.0f}", f"{ch['on_disk_per_trace']:.0f}",
            f"{r['json_bytes_per_trace'] / ch['compressed_per_trace']:.1f}x", f"{r['gzip_jsonl_bytes_per_trace']:.0f}",
            f"{r['gzip_over_clickhouse']:.2f}", f"{r['gzip_over_clickhouse_on_disk']:.2f}",
            f"{ch['derived_on_disk_per_trace']:.0f}"]))
    print("\nper column (compressed B/trace, compression ratio):")
    for r in results:
        cols = ", ".join(f"{c} {v['compressed_per_trace']:.0f} ({v['ratio']:.1f}x)"
                         for c, v in r["clickhouse"]["columns"].items())
        print(f"  {r['source']} {r['trace_kb']:.0f} KB: {cols}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "bench_storage", "peer": "gzip -6 JSON lines (stdlib)",
                                    "results": results}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
