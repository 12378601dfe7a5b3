"""Audit log cost: chained, checkpointed, idempotent append vs a plain insert of the same rows.

Usage::

    nice .venv/bin/python bench/bench_audit.py [--quick] [--repeat 2]

No Kafka. One embedded chDB engine (fresh directory) with the schema from
``sinks/migrations`` plus ``audit_plain``, a copy of ``audit_log``'s layout. The records are
finding-shaped decision payloads (~450 bytes of canonical JSON) spread over 4 partitions.

* Warden: ``AuditLog.append(partition, batch)`` with a signing key and
  ``checkpoint_every=1000``: one lookup query (ids of the batch already present + head),
  SHA-256 chain, RFC 6962 frontier, insert, a signed checkpoint every 1000 records.
* peer: ``ClickHouseStore.insert("audit_plain", ...)`` of the same rows, built beforehand
  (hashes included, so the peer writes the same bytes): what storing the decisions costs
  without chaining, idempotency lookup or checkpoints.

Also: a replayed batch (all ids present: the lookup alone), ``verify()`` over everything
(records/s, signatures checked), ``prove()`` of one record, and the pure hashing cost per
record. Best of ``--repeat`` for the timed appends (tables truncated between repeats).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sinks.audit import LOG_COLUMNS, AuditLog, AuditRecord  # noqa: E402
from sinks.audit_merkle import MerkleFrontier, leaf_hash, payload_digest, record_hash, to_micros  # noqa: E402
from sinks.audit_records import finding_records  # noqa: E402
from sinks.clickhouse import ClickHouseStore  # noqa: E402

PARTITIONS = [f"findings.v1/{i}" for i in range(4)]
KEY = bytes(range(32))


def decision_payloads(n: int) -> list[AuditRecord]:
    findings = [{
        "finding_id": f"{i:016x}", "kind": ("error_rate", "cost_regression", "embedding_drift")[i % 3],
        "severity": "warning", "at": 1_767_225_600 + i * 0.01, "score": (i % 97) / 13,
        "threshold": 3.0, "detector": "BurnRateBudget", "config_version": "2026-01-01",
        "subject": {"tenant": f"t{i % 5}", "route": f"/v1/route-{i % 11}", "model": "gpt-4o-mini"},
        "evidence": {"window_s": 300, "errors": i % 40, "requests": 400 + i % 50, "burn_rate": (i % 9) * 1.7,
                     "policy": "slo-99.5", "trace_ids": [f"{i * 7 + k:032x}" for k in range(2)]},
    } for i in range(n)]
    return finding_records(findings)


def plain_rows(records: list[AuditRecord], partition: str, start_seq: int, prev: bytes) -> list[list[Any]]:
    from sinks.audit import AuditRow

    rows = []
    for seq, r in enumerate(records, start=start_seq):
        at_us = to_micros(r.at)
        digest = record_hash(partition, seq, r.record_id, r.kind, at_us, payload_digest(r.payload), prev)
        rows.append(AuditRow(partition, seq, r.record_id, r.kind, at_us, r.payload, prev.hex(), digest.hex()).values())
        prev = digest
    return rows


def batches(records: list[AuditRecord], batch: int) -> list[tuple[str, list[AuditRecord]]]:
    """Round-robin over partitions, ``batch`` records per append, as sink agents would."""
    out = []
    for b, lo in enumerate(range(0, len(records), batch)):
        out.append((PARTITIONS[b % len(PARTITIONS)], records[lo:lo + batch]))
    return out


def run(store: ClickHouseStore, records: list[AuditRecord], batch: int, repeat: int) -> dict[str, Any]:
    work = batches(records, batch)
    # The peer's rows are built outside its timing, chained the same way, so both write the same bytes.
    heads: dict[str, tuple[int, bytes]] = {p: (0, bytes(32)) for p in PARTITIONS}
    peer_work = []
    for part, chunk in work:
        seq, prev = heads[part]
        rows = plain_rows(chunk, part, seq, prev)
        heads[part] = (seq + len(rows), bytes.fromhex(rows[-1][-1]))
        peer_work.append(rows)
    best_w = best_p = float("inf")
    for _ in range(repeat):
        store.command("TRUNCATE TABLE audit_log")
        store.command("TRUNCATE TABLE audit_checkpoints")
        store.command("TRUNCATE TABLE audit_plain")
        log = AuditLog(store, signing_key=KEY, checkpoint_every=1000)
        t = time.perf_counter()
        for part, chunk in work:
            log.append(part, chunk)
        best_w = min(best_w, time.perf_counter() - t)
        t = time.perf_counter()
        for rows in peer_work:
            store.insert("audit_plain", LOG_COLUMNS, rows)
        best_p = min(best_p, time.perf_counter() - t)
    n = len(records)
    assert store.query_rows("SELECT count() FROM audit_log")[0][0] == n
    assert store.query_rows("SELECT count() FROM audit_plain")[0][0] == n
    t = time.perf_counter()
    for part, chunk in work[-8:]:
        assert log.append(part, chunk) == []
    replay = (time.perf_counter() - t) / sum(len(c) for _, c in work[-8:])
    return {"batch": batch, "records": n, "warden_us_per_record": best_w / n * 1e6,
            "plain_us_per_record": best_p / n * 1e6, "overhead_ratio": best_w / best_p,
            "replay_us_per_record": replay * 1e6}


def hashing_cost(records: list[AuditRecord]) -> float:
    frontier, prev = MerkleFrontier(), bytes(32)
    t = time.perf_counter()
    for seq, r in enumerate(records):
        prev = record_hash("p", seq, r.record_id, r.kind, to_micros(r.at), payload_digest(r.payload), prev)
        frontier.append(leaf_hash(prev))
    frontier.root()
    return (time.perf_counter() - t) / len(records) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8,000 records instead of 40,000")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    n = 8_000 if args.quick else 40_000
    records = decision_payloads(n)
    store = ClickHouseStore(f"chdb://{tempfile.mkdtemp(prefix='bench_audit_')}/ch")
    store.migrate()
    store.command("CREATE TABLE audit_plain AS audit_log")
    cases = [run(store, records, batch, args.repeat) for batch in (100, 1000)]
    log = AuditLog(store, signing_key=KEY, checkpoint_every=1000)
    t = time.perf_counter()
    report = log.verify()
    verify_s = time.perf_counter() - t
    assert report.ok and report.records == n, report
    t = time.perf_counter()
    proof = log.prove(records[n // 3].record_id)
    prove_ms = (time.perf_counter() - t) * 1e3
    store.close()
    results = {
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "payload_bytes_mean": sum(len(r.payload.encode()) for r in records) / n,
        "cases": cases, "hashing_us_per_record": hashing_cost(records),
        "verify": {"records": report.records, "checkpoints": report.checkpoints, "signatures": report.signatures,
                   "seconds": verify_s, "records_per_s": report.records / verify_s},
        "prove": {"tree_size": proof.tree_size, "path_len": len(proof.audit_path), "ms": prove_ms},
    }
    print(f"{n:,} decisions (~{results['payload_bytes_mean']:.0f} B JSON), 4 partitions, checkpoint every 1000")
    print(f"{'batch':>6} {'warden µs/rec':>14} {'plain µs/rec':>13} {'ratio':>6} {'replay µs/rec':>14}")
    for c in cases:
        print(f"{c['batch']:>6} {c['warden_us_per_record']:>14.1f} {c['plain_us_per_record']:>13.1f} "
              f"{c['overhead_ratio']:>6.2f} {c['replay_us_per_record']:>14.1f}")
    v = results["verify"]
    print(f"hashing alone: {results['hashing_us_per_record']:.1f} µs/record")
    print(f"verify: {v['records']:,} records, {v['checkpoints']} checkpoints ({v['signatures']} signatures) "
          f"in {v['seconds']:.2f} s = {v['records_per_s']:,.0f} records/s")
    print(f"prove: tree of {proof.tree_size:,}, path {len(proof.audit_path)} hashes, {prove_ms:.0f} ms")
    out = ROOT / "bench" / "results" / "bench_audit.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
