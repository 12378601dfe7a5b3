"""Recompute an audit log: every record hash, chain link, checkpoint root and signature.

Per partition the scan starts at seq 0 (empty tree, genesis hash) or, for a time window,
at the last checkpoint before the window, whose frontier and head hash are taken once its
own root and signature check out. Records are read in seq order in chunks, so memory stays
flat. The first problem of a partition stops that partition (everything after a broken
link is unanchored); other partitions are still checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sinks.audit_merkle import (
    GENESIS_HASH,
    InclusionProof,
    MerkleFrontier,
    inclusion_path,
    leaf_hash,
    merkle_root,
    payload_digest,
    record_hash,
)

if TYPE_CHECKING:
    from sinks.audit import AuditLog, Checkpoint

CHUNK = 50_000  # records per query while scanning

HASH_MISMATCH = "hash_mismatch"  # a record's fields no longer hash to its record_hash
BROKEN_LINK = "broken_link"  # prev_hash is not the previous record's hash
GAP = "gap"  # a seq is missing
DUPLICATE_SEQ = "duplicate_seq"  # two rows claim one position
BAD_CHECKPOINT_ROOT = "bad_checkpoint_root"  # records no longer give the checkpoint's root
BAD_SIGNATURE = "bad_signature"  # missing, unknown-key or invalid signature
TRUNCATED = "truncated"  # a checkpoint covers records that are gone from the end
MISSING_CHECKPOINT = "missing_checkpoint"  # a checkpoint links to one that is gone (rollback, deleted chain)


@dataclass(frozen=True)
class Problem:
    partition: str
    seq: int
    record_id: str
    kind: str
    detail: str


@dataclass
class VerifyReport:
    partitions: int = 0
    records: int = 0
    checkpoints: int = 0
    signatures: int = 0  # checkpoint signatures checked against a configured key
    problems: list[Problem] = field(default_factory=list)  # first problem of each broken partition
    # Checkpoints no other checkpoint links to yet (each writer's newest). Record them: a
    # later verify given them (``expect``) detects a rollback of the newest checkpoints too.
    tips: list[str] = field(default_factory=list)
    newest_checkpoint_ms: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None


class _Broken(Exception):
    def __init__(self, problem: Problem):
        self.problem = problem


def verify_log(log: AuditLog, partition: str | None, from_at: float | None, to_at: float | None,
               expect: tuple[str, ...] = ()) -> VerifyReport:
    report = VerifyReport()
    for part in [partition] if partition is not None else log.partitions():
        report.partitions += 1
        try:
            _verify_partition(log, part, from_at, to_at, report)
        except _Broken as broken:
            report.problems.append(broken.problem)
    _check_links(log, partition, expect, report)
    return report


def _check_links(log: AuditLog, partition: str | None, expect: tuple[str, ...], report: VerifyReport) -> None:
    """Every checkpoint's ``prev_checkpoint`` must name a checkpoint still in the log (its
    hash recomputed from its fields, which the partition checks verified against records
    and signature). Deleting a partition's chain, or rolling a partition back to an older
    checkpoint, removes checkpoints a later one links to. ``expect``: checkpoint refs from
    an earlier verify (its tips), which must all still be there."""
    from sinks.audit import CHECKPOINT_SELECT, checkpoint_from_row
    from sinks.audit_merkle import GENESIS_CHECKPOINT

    checkpoints = [checkpoint_from_row(r) for r in log.store.query_rows(CHECKPOINT_SELECT)]
    refs = set()
    for cp in checkpoints:
        with suppress(ValueError):  # a root that is not hex: its partition's check reports it
            refs.add(cp.ref)
    linked = {cp.prev_checkpoint for cp in checkpoints}
    report.tips = sorted(refs - linked)
    report.newest_checkpoint_ms = max((cp.created_at_ms for cp in checkpoints), default=None)
    broken = {p.partition for p in report.problems}
    for cp in sorted(checkpoints, key=lambda c: (c.partition, c.to_seq)):
        if partition is not None and cp.partition != partition or cp.partition in broken:
            continue
        if cp.prev_checkpoint not in ("", GENESIS_CHECKPOINT) and cp.prev_checkpoint not in refs:
            gone = cp.prev_checkpoint.rsplit(":", 1)[0]
            report.problems.append(Problem(cp.partition, cp.to_seq, "", MISSING_CHECKPOINT,
                                           f"checkpoint at seq {cp.to_seq} links to checkpoint {gone}, which is "
                                           "gone: that chain was deleted or rolled back"))
            broken.add(cp.partition)
    for ref in expect:
        if ref not in refs:
            where = ref.rsplit(":", 1)[0]
            report.problems.append(Problem(where.rsplit("@", 1)[0], -1, "", MISSING_CHECKPOINT,
                                           f"expected checkpoint {where} is gone (or altered): rolled back or "
                                           "deleted since the verify that recorded it"))



def _bounds(log: AuditLog, part: str, from_at: float | None, to_at: float | None) -> tuple[int, int | None]:
    """First and last seq to check: the decisions inside [from_at, to_at] and all between."""
    start, end = 0, None
    if from_at is not None:
        row = log.store.query_rows("SELECT min(seq), count() FROM audit_log WHERE partition = {p:String} AND "
                                   "at >= fromUnixTimestamp64Micro({t:Int64})", {"p": part, "t": round(from_at * 1e6)})
        start = int(row[0][0]) if int(row[0][1]) else -1
    if to_at is not None:
        row = log.store.query_rows("SELECT max(seq), count() FROM audit_log WHERE partition = {p:String} AND "
                                   "at <= fromUnixTimestamp64Micro({t:Int64})", {"p": part, "t": round(to_at * 1e6)})
        end = int(row[0][0]) if int(row[0][1]) else -1
    return start, end


def _check_checkpoint(log: AuditLog, cp: Checkpoint, frontier: MerkleFrontier | None, head_hash: bytes | None,
                      record_id: str, report: VerifyReport) -> None:
    """Root (and, when given, frontier and head) against what the records gave; then the signature."""
    report.checkpoints += 1
    stored = MerkleFrontier.from_hex(cp.tree_size, cp.frontier) if len(cp.frontier) == bin(cp.tree_size).count("1") \
        else None
    if stored is None or stored.root().hex() != cp.root or (
            frontier is not None and (frontier.nodes != stored.nodes or frontier.root().hex() != cp.root)) or (
            head_hash is not None and head_hash.hex() != cp.head_hash):
        got = frontier.root().hex() if frontier is not None else "?"
        raise _Broken(Problem(cp.partition, cp.to_seq, record_id, BAD_CHECKPOINT_ROOT,
                              f"checkpoint at seq {cp.to_seq} has root {cp.root[:16]}…, records give {got[:16]}…"))
    if not log.verify_keys:
        return
    key = log.verify_keys.get(cp.key_id)
    if not cp.signature or key is None:
        why = "is unsigned" if not cp.signature else f"is signed by unknown key id {cp.key_id!r}"
        raise _Broken(Problem(cp.partition, cp.to_seq, record_id, BAD_SIGNATURE, f"checkpoint at seq {cp.to_seq} {why}"))
    from sinks.audit_signing import verify_signature

    if not verify_signature(key, cp.message, cp.signature):
        raise _Broken(Problem(cp.partition, cp.to_seq, record_id, BAD_SIGNATURE,
                              f"checkpoint at seq {cp.to_seq}: signature does not match key {cp.key_id}"))
    report.signatures += 1


def _records(log: AuditLog, part: str, lo: int, hi: int | None) -> Iterator[tuple[Any, ...]]:
    while True:
        upper = lo + CHUNK if hi is None else min(lo + CHUNK, hi + 1)
        rows = log.store.query_rows(
            "SELECT seq, record_id, kind, toUnixTimestamp64Micro(at), payload, prev_hash, record_hash "
            "FROM audit_log WHERE partition = {p:String} AND seq >= {lo:UInt64} AND seq < {hi:UInt64} "
            "ORDER BY seq", {"p": part, "lo": lo, "hi": upper})
        yield from rows
        if hi is not None and upper > hi:
            return
        if not rows:
            more = log.store.query_rows("SELECT count() FROM audit_log WHERE partition = {p:String} AND "
                                        "seq >= {lo:UInt64}", {"p": part, "lo": upper})
            if not int(more[0][0]):
                return
        lo = upper


def _verify_partition(log: AuditLog, part: str, from_at: float | None, to_at: float | None,
                      report: VerifyReport) -> None:
    from sinks.audit import CHECKPOINT_SELECT, checkpoint_from_row

    start, end = _bounds(log, part, from_at, to_at)
    if start < 0 or (end is not None and end < start):
        return  # no decisions in the window
    checkpoints = [checkpoint_from_row(r) for r in log.store.query_rows(
        CHECKPOINT_SELECT + " WHERE partition = {p:String} ORDER BY to_seq, created_at", {"p": part})]
    by_seq: dict[int, list[Checkpoint]] = {}
    for cp in checkpoints:
        by_seq.setdefault(cp.to_seq, []).append(cp)
    frontier, prev, expected = MerkleFrontier(), GENESIS_HASH, 0
    before = [cp for cp in checkpoints if cp.to_seq < start]
    if before:  # resume from the last checkpoint before the window, once it checks out alone
        anchor = before[-1]
        _check_checkpoint(log, anchor, None, None, "", report)
        frontier = MerkleFrontier.from_hex(anchor.tree_size, anchor.frontier)
        prev, expected = bytes.fromhex(anchor.head_hash), anchor.to_seq + 1
    for seq, record_id, kind, at_us, payload, prev_hash, stored_hash in _records(log, part, expected, end):
        seq = int(seq)
        if seq < expected:
            raise _Broken(Problem(part, seq, record_id, DUPLICATE_SEQ, f"a second record claims seq {seq}"))
        if seq > expected:
            missing = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}..{seq - 1}"
            raise _Broken(Problem(part, expected, "", GAP, f"{missing} missing; next present is seq {seq} ({record_id})"))
        digest = record_hash(part, seq, record_id, kind, int(at_us), payload_digest(payload), bytes.fromhex(prev_hash))
        if digest.hex() != stored_hash:
            raise _Broken(Problem(part, seq, record_id, HASH_MISMATCH,
                                  "record fields do not hash to the stored record_hash (altered or moved)"))
        if prev_hash != prev.hex():
            raise _Broken(Problem(part, seq, record_id, BROKEN_LINK,
                                  f"prev_hash {prev_hash[:16]}… is not the hash of seq {seq - 1} ({prev.hex()[:16]}…)"))
        frontier.append(leaf_hash(digest))
        prev, expected = digest, seq + 1
        report.records += 1
        for cp in by_seq.get(seq, ()):
            _check_checkpoint(log, cp, frontier, digest, record_id, report)
    if end is None:
        beyond = [cp for cp in checkpoints if cp.to_seq >= expected]
        if beyond:
            raise _Broken(Problem(part, expected, "", TRUNCATED,
                                  f"checkpoint at seq {beyond[-1].to_seq} covers records, but the log ends "
                                  f"at seq {expected - 1}"))


def prove_record(log: AuditLog, record_id: str, partition: str | None) -> InclusionProof:
    """Inclusion proof of a record in the latest checkpoint that covers it (or in the
    current head, unsigned, when no checkpoint covers it yet)."""
    from sinks.audit import CHECKPOINT_SELECT, LOG_TABLE, AuditError, checkpoint_from_row

    where = "record_id = {r:String}" + (" AND partition = {p:String}" if partition is not None else "")
    found = log.store.query_rows(
        f"SELECT partition, seq, kind, toUnixTimestamp64Micro(at), payload, prev_hash, record_hash "
        f"FROM {LOG_TABLE} WHERE {where}", {"r": record_id, "p": partition})
    if not found:
        raise AuditError(f"no audit record with id {record_id!r}" + (f" in partition {partition!r}" if partition else ""))
    if len({r[0] for r in found}) > 1:
        raise AuditError(f"record id {record_id!r} is in partitions {sorted({r[0] for r in found})}; "
                         "name one with --partition")
    part, seq, kind, at_us, payload, prev_hash, stored_hash = found[0]
    seq = int(seq)
    cps = log.store.query_rows(
        CHECKPOINT_SELECT + " WHERE partition = {p:String} AND to_seq >= {s:UInt64} ORDER BY to_seq DESC LIMIT 1",
        {"p": part, "s": seq})
    cp = checkpoint_from_row(cps[0]) if cps else None
    if cp is None:
        size = int(log.store.query_rows(
            f"SELECT max(seq) + 1 FROM {LOG_TABLE} WHERE partition = {{p:String}}", {"p": part})[0][0])
    else:
        size = cp.tree_size
    hashes = log.store.query_rows(
        f"SELECT seq, record_hash FROM {LOG_TABLE} WHERE partition = {{p:String}} AND seq < {{n:UInt64}} "
        "ORDER BY seq", {"p": part, "n": size})
    if [int(h[0]) for h in hashes] != list(range(size)):
        raise AuditError(f"partition {part!r} is missing or repeats records below seq {size}; "
                         f"run `warden audit verify --partition {part}`")
    leaves = [leaf_hash(bytes.fromhex(h[1])) for h in hashes]

    root = merkle_root(leaves).hex()
    notes = []
    if cp is None:
        notes.append(f"no checkpoint covers seq {seq} yet: proof is against the current head (unsigned)")
    elif root != cp.root:
        raise AuditError(f"partition {part!r} no longer matches its checkpoint at seq {cp.to_seq}; "
                         f"run `warden audit verify --partition {part}`")
    return InclusionProof(
        partition=part, record_id=record_id, kind=str(kind), at_us=int(at_us),
        payload_sha256=payload_digest(payload).hex(), prev_hash=str(prev_hash), record_hash=str(stored_hash),
        leaf_index=seq, tree_size=size, audit_path=[p.hex() for p in inclusion_path(seq, leaves)], root=root,
        checkpoint_to_seq=None if cp is None else cp.to_seq,
        checkpoint_created_at_ms=None if cp is None else cp.created_at_ms,
        key_id="" if cp is None else cp.key_id, signature="" if cp is None else cp.signature, notes=notes,
        prev_checkpoint="" if cp is None else cp.prev_checkpoint)
