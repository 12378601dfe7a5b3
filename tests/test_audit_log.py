"""AuditLog on the real embedded ClickHouse engine (chDB): append, idempotent replay,
tampering detected at the right record, inclusion proofs, time windows, failures."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sinks.audit import AuditLog, AuditRecord
from sinks.audit_merkle import (
    GENESIS_HASH,
    InclusionProof,
    MerkleFrontier,
    checkpoint_message,
    checkpoint_ref,
    leaf_hash,
    payload_digest,
    record_hash,
    verify_inclusion,
)
from sinks.audit_records import breaker_records, finding_records
from sinks.audit_signing import CheckpointSigner
from sinks.audit_verify import (
    BAD_CHECKPOINT_ROOT,
    BAD_SIGNATURE,
    BROKEN_LINK,
    DUPLICATE_SEQ,
    GAP,
    HASH_MISMATCH,
    TRUNCATED,
)
from sinks.clickhouse import ClickHouseStore, SinkError

KEY = bytes(range(32))
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SYNC = " SETTINGS mutations_sync = 2"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    s = ClickHouseStore(f"chdb://{tmp_path}/ch")
    s.migrate()
    yield s
    s.close()


def decisions(prefix: str, n: int, start: int = 0) -> list[AuditRecord]:
    return [AuditRecord.of(f"{prefix}:{i}", "finding", T0 + i, {"i": i, "route": f"r{i % 3}", "score": i / 7})
            for i in range(start, start + n)]


def filled(store: ClickHouseStore, n: int = 250, every: int = 50, key: bytes | None = KEY) -> AuditLog:
    log = AuditLog(store, signing_key=key, checkpoint_every=every)
    for lo in range(0, n, 60):
        log.append("p", decisions("f", min(60, n - lo), lo))
    return log


def rows(store: ClickHouseStore, partition: str = "p") -> list[list[Any]]:
    return [list(r) for r in store.query_rows(
        "SELECT partition, seq, record_id, kind, at, payload, prev_hash, record_hash FROM audit_log "
        "WHERE partition = {p:String} ORDER BY seq", {"p": partition})]


def rewrite_from(store: ClickHouseStore, seq: int, change: Callable[[list[Any]], None]) -> None:
    """What an attacker with write access does: change record ``seq`` and recompute every
    hash and link after it so the chain itself is consistent again."""
    chain = rows(store)
    change(chain[seq])
    prev = bytes.fromhex(chain[seq][6])
    for row in chain[seq:]:
        at_us = round(row[4].timestamp() * 1e6)
        digest = record_hash(row[0], row[1], row[2], row[3], at_us, payload_digest(row[5]), prev)
        row[6], row[7], prev = prev.hex(), digest.hex(), digest
    store.command(f"ALTER TABLE audit_log DELETE WHERE partition = 'p' AND seq >= {seq}{SYNC}")
    store.insert("audit_log", ["partition", "seq", "record_id", "kind", "at", "payload", "prev_hash",
                               "record_hash"], chain[seq:])


def resign_checkpoints(store: ClickHouseStore, signer: CheckpointSigner | None) -> None:
    """Recompute every checkpoint from the (rewritten) records; sign with ``signer``."""
    chain = rows(store)
    cps = store.query_rows("SELECT to_seq, toUnixTimestamp64Milli(created_at), prev_checkpoint "
                           "FROM audit_checkpoints WHERE partition = 'p' ORDER BY to_seq")
    prev = cps[0][2] if cps else ""
    for to_seq, created, _ in cps:  # the checkpoint chain is relinked too
        frontier = MerkleFrontier()
        for row in chain[: to_seq + 1]:
            frontier.append(leaf_hash(bytes.fromhex(row[7])))
        root = frontier.root()
        message = checkpoint_message("p", to_seq + 1, root, created, prev)
        sig = signer.sign(message) if signer else ""
        kid = signer.key_id if signer else ""
        nodes = "[" + ",".join(f"'{n}'" for n in frontier.to_hex()) + "]"
        store.command(f"ALTER TABLE audit_checkpoints UPDATE root = '{root.hex()}', frontier = {nodes}, "
                      f"head_hash = '{chain[to_seq][7]}', signature = '{sig}', key_id = '{kid}', "
                      f"prev_checkpoint = '{prev}' WHERE partition = 'p' AND to_seq = {to_seq}{SYNC}")
        prev = checkpoint_ref("p", to_seq, message)


def only_problem(log: AuditLog) -> Any:
    report = log.verify()
    assert not report.ok and len(report.problems) == 1
    return report.first_problem


def test_thousands_of_records_over_three_partitions(store: ClickHouseStore) -> None:
    log = AuditLog(store, signing_key=KEY, checkpoint_every=1000)
    rng = random.Random(7)
    sizes = {"findings.v1/0": 0, "findings.v1/1": 0, "alerts.v1/0": 0}
    for _ in range(24):
        part = rng.choice(list(sizes))
        n = rng.randint(50, 400)
        written = log.append(part, decisions(part, n, sizes[part]))
        assert [r.seq for r in written] == list(range(sizes[part], sizes[part] + n))
        sizes[part] += n
    report = log.verify()
    assert report.ok, report.problems
    assert report.records == sum(sizes.values()) > 3000
    expected_cps = sum(n // 1000 for n in sizes.values())
    assert report.checkpoints == report.signatures == expected_cps
    for part, n in sizes.items():
        cp = log.checkpoint(part)
        assert cp is not None and cp.to_seq == n - 1
        assert log.checkpoint(part) == cp  # already checkpointed: no second row
    assert log.verify().checkpoints == expected_cps + 3


def test_replayed_batches_append_nothing_twice(store: ClickHouseStore) -> None:
    log = AuditLog(store, checkpoint_every=40)
    batch = decisions("f", 100)
    assert len(log.append("p", batch)) == 100
    assert log.append("p", batch) == []
    overlap = batch[50:] + decisions("f", 30, 100)
    assert [r.record_id for r in log.append("p", overlap)] == [f"f:{i}" for i in range(100, 130)]
    assert log.append("p", decisions("g", 3) * 2) and store.query_rows("SELECT count() FROM audit_log")[0][0] == 133
    # a worker restarting (new instance, empty cache) replays the last batch
    again = AuditLog(store, checkpoint_every=40)
    assert again.append("p", overlap) == []
    assert again.append("p", decisions("f", 5, 130))[0].seq == 133
    report = again.verify()
    assert report.ok and report.records == 138 and report.checkpoints == 3


def test_partition_moving_between_workers_keeps_one_chain(store: ClickHouseStore) -> None:
    a, b = AuditLog(store, KEY, 25), AuditLog(store, KEY, 25)
    for i in range(6):  # a rebalance hands the partition back and forth; caches go stale
        (a if i % 2 == 0 else b).append("p", decisions("f", 17, i * 17))
    report = a.verify()
    assert report.ok and report.records == 102 and report.checkpoints == 4


class LandsThenFails(ClickHouseStore):
    """The real engine, with one write that lands but is reported failed (a timeout after
    the server stored it) or one write that fails outright."""

    fail_table = ""
    land_first = True

    def insert(self, table: str, columns: Any, rows: Any, *, dedup_token: str | None = None) -> None:
        if table == self.fail_table:
            self.fail_table = ""
            if self.land_first:
                super().insert(table, columns, rows, dedup_token=dedup_token)
            raise SinkError(f"insert of {len(rows)} rows into {table} failed: timed out")
        super().insert(table, columns, rows, dedup_token=dedup_token)


@pytest.mark.parametrize("land_first", [True, False])
def test_failed_writes_are_retried_without_forks(tmp_path: Path, land_first: bool) -> None:
    store = LandsThenFails(f"chdb://{tmp_path}/ch")
    store.migrate()
    store.land_first = land_first
    log = AuditLog(store, KEY, 10)
    log.append("p", decisions("f", 15))
    store.fail_table = "audit_log"
    with pytest.raises(SinkError):
        log.append("p", decisions("f", 12, 15))
    assert len(log.append("p", decisions("f", 12, 15))) == (0 if land_first else 12)
    store.fail_table = "audit_checkpoints"  # records durable, checkpoint at seq 29 lost...
    assert len(log.append("p", decisions("f", 8, 27))) == 8
    log.append("p", decisions("f", 1, 35))  # ...and written on the next append
    report = log.verify()
    assert report.ok and report.records == 36 and report.checkpoints == 3
    store.close()


def test_updated_payload_is_a_hash_mismatch_at_that_record(store: ClickHouseStore) -> None:
    log = filled(store)
    store.command(f"ALTER TABLE audit_log UPDATE payload = '{{\"i\":1}}' WHERE seq = 117{SYNC}")
    p = only_problem(log)
    assert (p.kind, p.seq, p.record_id) == (HASH_MISMATCH, 117, "f:117")


def test_recomputed_record_hash_breaks_the_next_link(store: ClickHouseStore) -> None:
    log = filled(store)
    chain = rows(store)
    row = chain[60]
    at_us = round(row[4].timestamp() * 1e6)
    forged = record_hash("p", 60, row[2], row[3], at_us, payload_digest("{}"), bytes.fromhex(row[6]))
    store.command(f"ALTER TABLE audit_log UPDATE payload = '{{}}', record_hash = '{forged.hex()}' "
                  f"WHERE seq = 60{SYNC}")
    p = only_problem(log)
    assert (p.kind, p.seq, p.record_id) == (BROKEN_LINK, 61, "f:61")


def test_deleted_row_is_a_gap(store: ClickHouseStore) -> None:
    log = filled(store)
    store.command(f"ALTER TABLE audit_log DELETE WHERE seq = 88{SYNC}")
    p = only_problem(log)
    assert (p.kind, p.seq) == (GAP, 88) and "next present is seq 89" in p.detail


def test_swapped_seq_is_detected_at_the_first_swapped(store: ClickHouseStore) -> None:
    log = filled(store)
    chain = rows(store)
    a, b = chain[140], chain[141]
    a[1], b[1] = 141, 140
    store.command(f"ALTER TABLE audit_log DELETE WHERE seq IN (140, 141){SYNC}")
    store.insert("audit_log", ["partition", "seq", "record_id", "kind", "at", "payload", "prev_hash",
                               "record_hash"], [b, a])
    p = only_problem(log)
    assert (p.kind, p.seq, p.record_id) == (HASH_MISMATCH, 140, "f:141")


def test_duplicate_row_is_detected(store: ClickHouseStore) -> None:
    log = filled(store)
    store.insert("audit_log", ["partition", "seq", "record_id", "kind", "at", "payload", "prev_hash",
                               "record_hash"], [rows(store)[30]])
    p = only_problem(log)
    assert (p.kind, p.seq) == (DUPLICATE_SEQ, 30)


def test_consistent_rewrite_is_caught_by_the_checkpoint_root(store: ClickHouseStore) -> None:
    log = filled(store)
    rewrite_from(store, 120, lambda row: row.__setitem__(5, '{"i":120,"score":0}'))
    p = only_problem(log)
    assert (p.kind, p.seq, p.record_id) == (BAD_CHECKPOINT_ROOT, 149, "f:149")


def test_forged_checkpoint_root(store: ClickHouseStore) -> None:
    log = filled(store)
    store.command(f"ALTER TABLE audit_checkpoints UPDATE root = '{'ab' * 32}' WHERE to_seq = 99{SYNC}")
    p = only_problem(log)
    assert (p.kind, p.seq) == (BAD_CHECKPOINT_ROOT, 99)


def test_rewrite_with_recomputed_checkpoints_fails_the_signature(store: ClickHouseStore) -> None:
    log = filled(store)
    rewrite_from(store, 120, lambda row: row.__setitem__(5, "{}"))
    resign_checkpoints(store, CheckpointSigner(KEY[::-1]))  # the attacker's own key
    p = only_problem(log)
    assert (p.kind, p.seq) == (BAD_SIGNATURE, 49) and "unknown key id" in p.detail
    resign_checkpoints(store, None)  # or no signature at all
    assert (only_problem(log).kind, only_problem(log).seq) == (BAD_SIGNATURE, 49)
    # the same rewrite passes a verifier that knows no key: that is what signatures add
    assert AuditLog(store, None, 50).verify().ok


def test_wrong_signature_under_the_right_key_id(store: ClickHouseStore) -> None:
    log = filled(store)
    store.command(f"ALTER TABLE audit_checkpoints UPDATE signature = '{'00' * 64}' WHERE to_seq = 199{SYNC}")
    p = only_problem(log)
    assert (p.kind, p.seq) == (BAD_SIGNATURE, 199) and "does not match key" in p.detail


def test_dropped_tail_is_truncation(store: ClickHouseStore) -> None:
    log = filled(store)
    store.command(f"ALTER TABLE audit_log DELETE WHERE seq >= 180{SYNC}")
    p = only_problem(log)
    assert (p.kind, p.seq) == (TRUNCATED, 180)


def test_time_window_checks_only_the_window(store: ClickHouseStore) -> None:
    log = filled(store)
    store.command(f"ALTER TABLE audit_log UPDATE payload = '{{}}' WHERE seq = 20{SYNC}")
    window = log.verify(from_at=T0 + 160, to_at=T0 + 220)
    assert window.ok and window.records == 221 - 150  # resumes at the checkpoint at seq 149
    assert window.checkpoints == 1 + 1  # the anchor (149) and 199
    assert log.verify(from_at=T0 + 10, to_at=T0 + 30).first_problem.seq == 20  # type: ignore[union-attr]


def test_inclusion_proofs(store: ClickHouseStore) -> None:
    log = filled(store, n=230)
    public = CheckpointSigner(KEY).public_key
    for index in (0, 1, 49, 50, 137, 199):
        proof = log.prove(f"f:{index}")
        assert proof.leaf_index == index and proof.tree_size == 200 and proof.signature
        assert verify_inclusion(proof, public)
        body = proof.to_json()
        assert verify_inclusion(InclusionProof.from_json(json.loads(json.dumps(body))), public)
        for name, value in (("payload_sha256", payload_digest("{}").hex()), ("leaf_index", index ^ 1),
                            ("root", "00" * 32), ("audit_path", body["audit_path"][1:])):
            assert not verify_inclusion(InclusionProof.from_json({**body, name: value}), public), name
    recent = log.prove("f:215")  # newer than every checkpoint: against the head, unsigned
    assert recent.checkpoint_to_seq is None and recent.tree_size == 230 and recent.notes
    assert verify_inclusion(recent) and not verify_inclusion(recent, public)
    store.command(f"ALTER TABLE audit_log UPDATE payload = '{{}}' WHERE seq = 3{SYNC}")
    stale = log.prove("f:3")  # the proof is built from stored hashes, the payload no longer matches
    assert not verify_inclusion(stale, public)


def test_decision_mappers(store: ClickHouseStore) -> None:
    log = AuditLog(store)
    findings = finding_records([{"finding_id": "abc", "kind": "error_rate", "at": T0, "score": 1.0}])
    signals = breaker_records([
        {"signal_id": "s1", "target": "r", "state": "open", "reason": "x", "at": "2026-01-01T00:00:00Z"},
        {"signal_id": "s2", "target": "r", "state": "closed", "reason": "y", "at": T0 + 1, "operator": "ann"}])
    assert [r.kind for r in signals] == ["breaker_transition", "override"] and signals[0].at == T0
    log.append("findings.v1/0", findings)
    log.append("breaker.v1/0", signals)
    assert log.verify().ok and log.verify().partitions == 2
    assert json.loads(findings[0].payload)["finding_id"] == "abc"


def test_cli_verify_and_prove(store: ClickHouseStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.cli_audit import register

    filled(store, n=120)
    store.close()  # the CLI opens the engine itself
    monkeypatch.setenv("CLICKHOUSE_DSN", f"chdb://{tmp_path}/ch")
    monkeypatch.setenv("WARDEN_AUDIT_SIGNING_KEY", KEY.hex())
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # keep "audit" a sub-command
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--from", "2026-01-01T00:00:30Z", "--partition", "p"])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output
    proved = runner.invoke(app, ["audit", "prove", "f:7"])
    assert proved.exit_code == 0, proved.output
    body = json.loads(proved.output)
    public = bytes.fromhex(body.pop("public_key"))
    assert verify_inclusion(InclusionProof.from_json(body), public)
    assert runner.invoke(app, ["audit", "prove", "nope"]).exit_code == 1
    assert runner.invoke(app, ["audit", "verify", "--from", "yesterday"]).exit_code == 2
    reopened = ClickHouseStore(f"chdb://{tmp_path}/ch")
    reopened.command(f"ALTER TABLE audit_log UPDATE payload = '{{}}' WHERE seq = 5{SYNC}")
    reopened.close()
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1 and HASH_MISMATCH in broken.output
    monkeypatch.setenv("WARDEN_AUDIT_SIGNING_KEY", "short")
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 2


def test_genesis_and_empty(store: ClickHouseStore) -> None:
    log = AuditLog(store, KEY)
    assert log.verify().ok and log.verify().partitions == 0
    assert log.checkpoint("nothing") is None and log.append("p", []) == []
    first = log.append("p", decisions("f", 1))[0]
    assert first.seq == 0 and first.prev_hash == GENESIS_HASH.hex()
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        AuditLog(store, checkpoint_every=0)
