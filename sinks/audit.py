"""Tamper-evident audit log of governance decisions in ClickHouse (docs/AUDIT.md).

Each partition (one writer at a time: use ``"<source topic>/<kafka partition>"``) is a hash
chain of records (``seq`` 0, 1, ..., each ``record_hash`` covering the previous one) and an
RFC 6962 Merkle tree over those hashes, whose root is written as a checkpoint every
``checkpoint_every`` records (at ``seq = k * checkpoint_every - 1``) and on demand, signed with
Ed25519 when a key is configured. Pure hashing lives in :mod:`sinks.audit_merkle`,
verification in :mod:`sinks.audit_verify`.

``append`` is safe to repeat: per batch it looks up which record ids of the batch are
already in the partition and reads the partition's current head, so a batch replayed after a
crash appends only what is new, and a head cached by a worker that lost and regained the
partition (rebalance) is noticed and rebuilt instead of forking the chain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from sinks.audit_merkle import (
    GENESIS_HASH,
    InclusionProof,
    MerkleFrontier,
    canonical_json,
    checkpoint_message,
    inclusion_path,
    leaf_hash,
    payload_digest,
    record_hash,
    to_micros,
)
from sinks.clickhouse import ClickHouseStore, SinkError

log = structlog.get_logger("warden.audit")

LOG_TABLE = "audit_log"
CHECKPOINT_TABLE = "audit_checkpoints"
LOG_COLUMNS = ("partition", "seq", "record_id", "kind", "at", "payload", "prev_hash", "record_hash")
CHECKPOINT_COLUMNS = ("partition", "from_seq", "to_seq", "root", "frontier", "head_hash", "first_at",
                      "last_at", "created_at", "key_id", "signature")
KINDS = ("finding", "alert", "breaker_transition", "override", "policy_load", "registry_load")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AuditError(RuntimeError):
    """The audit log cannot answer (unknown record, damaged log); the message says what to do."""


def micros_to_datetime(at_us: int) -> datetime:
    """Exact: DateTime64(6) stores the same integer the chain hashed."""
    return EPOCH + timedelta(microseconds=at_us)


@dataclass(frozen=True)
class AuditRecord:
    """One governance decision: ``payload`` is its canonical JSON as Warden stores it
    (already redacted; never raw trace text)."""

    record_id: str
    kind: str
    at: float  # epoch seconds of the decision
    payload: str

    @classmethod
    def of(cls, record_id: str, kind: str, at: float, payload: Mapping[str, Any]) -> AuditRecord:
        return cls(record_id, kind, float(at), canonical_json(payload))


@dataclass(frozen=True)
class AuditRow:
    """A record as appended: its place in the chain and its hash (hex)."""

    partition: str
    seq: int
    record_id: str
    kind: str
    at_us: int
    payload: str
    prev_hash: str
    record_hash: str

    def values(self) -> list[Any]:
        return [self.partition, self.seq, self.record_id, self.kind, micros_to_datetime(self.at_us),
                self.payload, self.prev_hash, self.record_hash]


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head over ``seq 0 .. to_seq`` of one partition."""

    partition: str
    from_seq: int  # first seq since the previous checkpoint (the range this one adds)
    to_seq: int
    root: str
    frontier: tuple[str, ...]
    head_hash: str
    first_at_us: int
    last_at_us: int
    created_at_ms: int
    key_id: str = ""
    signature: str = ""

    @property
    def tree_size(self) -> int:
        return self.to_seq + 1

    def values(self) -> list[Any]:
        return [self.partition, self.from_seq, self.to_seq, self.root, list(self.frontier), self.head_hash,
                micros_to_datetime(self.first_at_us), micros_to_datetime(self.last_at_us),
                EPOCH + timedelta(milliseconds=self.created_at_ms), self.key_id, self.signature]


CHECKPOINT_SELECT = (
    "SELECT partition, from_seq, to_seq, root, frontier, head_hash, toUnixTimestamp64Micro(first_at), "
    "toUnixTimestamp64Micro(last_at), toUnixTimestamp64Milli(created_at), key_id, signature "
    f"FROM {CHECKPOINT_TABLE}"
)


def checkpoint_from_row(row: Sequence[Any]) -> Checkpoint:
    return Checkpoint(str(row[0]), int(row[1]), int(row[2]), str(row[3]), tuple(row[4]), str(row[5]),
                      int(row[6]), int(row[7]), int(row[8]), str(row[9]), str(row[10]))


@dataclass
class _Head:
    """In-memory state of one partition's tail: enough to append and to checkpoint."""

    frontier: MerkleFrontier
    head_hash: bytes
    last_checkpoint_to_seq: int  # -1: none yet
    range_first_at_us: int | None = None  # decision times since the last checkpoint
    range_last_at_us: int | None = None
    dirty: bool = False  # a due checkpoint failed to write: rebuild (and write it) next time

    def add(self, leaf_record_hash: bytes, at_us: int) -> None:
        self.frontier.append(leaf_hash(leaf_record_hash))
        self.head_hash = leaf_record_hash
        self.range_first_at_us = at_us if self.range_first_at_us is None else min(self.range_first_at_us, at_us)
        self.range_last_at_us = at_us if self.range_last_at_us is None else max(self.range_last_at_us, at_us)


class AuditLog:
    """Append, checkpoint, verify and prove over ``audit_log`` / ``audit_checkpoints``.

    ``signing_key``: 32-byte Ed25519 seed, or None for unsigned checkpoints.
    ``verify_keys``: key id → raw public key accepted by :meth:`verify`; defaults to the
    signing key's public half. When any key is known, an unsigned checkpoint fails verify.
    """

    def __init__(self, store: ClickHouseStore, signing_key: bytes | None = None, checkpoint_every: int = 1000,
                 *, verify_keys: Mapping[str, bytes] | None = None, clock: Callable[[], float] = time.time):
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 records, got {checkpoint_every}")
        self.store = store
        self.checkpoint_every = checkpoint_every
        self.clock = clock
        self.signer = None
        if signing_key is not None:
            from sinks.audit_signing import CheckpointSigner

            self.signer = CheckpointSigner(signing_key)
        self.verify_keys = dict(verify_keys or {})
        if self.signer is not None and not verify_keys:
            self.verify_keys[self.signer.key_id] = self.signer.public_key
        self._heads: dict[str, _Head] = {}
        self._lock = threading.Lock()  # sink agents call from executor threads

    # -- append ----------------------------------------------------------------------
    def append(self, partition: str, records: Sequence[AuditRecord]) -> list[AuditRow]:
        """Append the records of the batch not yet in ``partition``; returns the rows written.

        Raises ``SinkError`` when the insert failed (nothing of the batch is then assumed
        stored; calling again with the same batch is the retry).
        """
        batch = _unique(records)
        if not batch:
            return []
        with self._lock:
            present, db_head = self._lookup(partition, [r.record_id for r in batch])
            head = self._head(partition, db_head)
            rows, checkpoints = self._chain(partition, head, [r for r in batch if r.record_id not in present])
            if not rows:
                self._heads[partition] = head
                return []
            try:
                self.store.insert(LOG_TABLE, LOG_COLUMNS, [r.values() for r in rows])
            except SinkError:
                self._heads.pop(partition, None)  # whatever landed, the next call re-reads it
                raise
            self._heads[partition] = head
            self._write_checkpoints(partition, head, checkpoints)
            return rows

    def append_until_durable(self, partition: str, records: Sequence[AuditRecord], *,
                             should_stop: Callable[[], bool] = lambda: False) -> list[AuditRow] | None:
        """``append`` with the sink's capped back-off; None if ``should_stop()`` turned true first."""
        delay = self.store.retry_backoff_s
        while True:
            try:
                return self.append(partition, records)
            except SinkError as exc:
                log.warning("audit_append_failed", partition=partition, records=len(records), error=str(exc)[:300])
                if should_stop():
                    return None
                time.sleep(delay)
                delay = min(delay * 2, self.store.max_backoff_s)

    def _lookup(self, partition: str, ids: list[str]) -> tuple[set[str], tuple[int, str] | None]:
        """Ids of the batch already in the partition (bloom-filter index on record_id), and
        the partition's head (the last primary-key granule). Two small queries: on chDB they
        cost 15 ms per 1000 ids where one UNION ALL of both cost 25 ms."""
        present = {str(r[0]) for r in self.store.query_rows(
            f"SELECT record_id FROM {LOG_TABLE} WHERE partition = {{p:String}} AND record_id IN {{ids:Array(String)}}",
            {"p": partition, "ids": ids})} if ids else set()
        heads = self.store.query_rows(
            f"SELECT seq, record_hash FROM {LOG_TABLE} WHERE partition = {{p:String}} ORDER BY seq DESC LIMIT 1",
            {"p": partition})
        return present, (int(heads[0][0]), str(heads[0][1])) if heads else None

    def _head(self, partition: str, db_head: tuple[int, str] | None) -> _Head:
        cached = self._heads.get(partition)
        if db_head is None and cached is None:
            return _Head(MerkleFrontier(), GENESIS_HASH, -1)
        if cached is not None and not cached.dirty and db_head is not None and cached.frontier.size == db_head[0] + 1 \
                and cached.head_hash.hex() == db_head[1]:
            return cached
        if cached is not None:
            log.warning("audit_head_changed", partition=partition, cached_size=cached.frontier.size,
                        stored_size=None if db_head is None else db_head[0] + 1)
        return self._rebuild(partition)

    def _rebuild(self, partition: str) -> _Head:
        """Tail state from the latest checkpoint plus the records after it (at most about
        ``checkpoint_every`` of them); missing checkpoints on the way are written now."""
        rows = self.store.query_rows(
            CHECKPOINT_SELECT + " WHERE partition = {p:String} ORDER BY to_seq DESC LIMIT 1", {"p": partition})
        if rows:
            cp = checkpoint_from_row(rows[0])
            head = _Head(MerkleFrontier.from_hex(cp.tree_size, cp.frontier), bytes.fromhex(cp.head_hash), cp.to_seq)
        else:
            head = _Head(MerkleFrontier(), GENESIS_HASH, -1)
        tail = self.store.query_rows(
            f"SELECT seq, record_hash, toUnixTimestamp64Micro(at) FROM {LOG_TABLE} "
            "WHERE partition = {p:String} AND seq > {s:Int64} ORDER BY seq", {"p": partition, "s": head.last_checkpoint_to_seq})
        missed: list[Checkpoint] = []
        for seq, stored_hash, at_us in tail:
            if int(seq) != head.frontier.size:
                raise AuditError(f"audit partition {partition!r} has a gap or a duplicate at seq {seq} (expected "
                                 f"{head.frontier.size}); run `warden audit verify --partition {partition}`")
            head.add(bytes.fromhex(stored_hash), int(at_us))
            if head.frontier.size % self.checkpoint_every == 0:
                missed.append(self._snapshot(partition, head))
        self._write_checkpoints(partition, head, missed)
        return head

    def _chain(self, partition: str, head: _Head, new: Sequence[AuditRecord]) -> tuple[list[AuditRow], list[Checkpoint]]:
        """Rows for ``new`` chained onto ``head`` (advanced in place), and the checkpoints due."""
        rows: list[AuditRow] = []
        checkpoints: list[Checkpoint] = []
        for record in new:
            seq, at_us = head.frontier.size, to_micros(record.at)
            digest = record_hash(partition, seq, record.record_id, record.kind, at_us,
                                 payload_digest(record.payload), head.head_hash)
            rows.append(AuditRow(partition, seq, record.record_id, record.kind, at_us, record.payload,
                                 head.head_hash.hex(), digest.hex()))
            head.add(digest, at_us)
            if head.frontier.size % self.checkpoint_every == 0:
                checkpoints.append(self._snapshot(partition, head))
        return rows, checkpoints

    # -- checkpoints -----------------------------------------------------------------
    def _snapshot(self, partition: str, head: _Head) -> Checkpoint:
        """A checkpoint of the head as it is now; resets the range to start after it."""
        root = head.frontier.root()
        created_at_ms = int(self.clock() * 1000)
        key_id = signature = ""
        if self.signer is not None:
            key_id = self.signer.key_id
            signature = self.signer.sign(checkpoint_message(partition, head.frontier.size, root, created_at_ms))
        cp = Checkpoint(partition, head.last_checkpoint_to_seq + 1, head.frontier.size - 1, root.hex(),
                        tuple(head.frontier.to_hex()), head.head_hash.hex(), head.range_first_at_us or 0,
                        head.range_last_at_us or 0, created_at_ms, key_id, signature)
        head.last_checkpoint_to_seq = cp.to_seq
        head.range_first_at_us = head.range_last_at_us = None
        return cp

    def _write_checkpoints(self, partition: str, head: _Head, checkpoints: list[Checkpoint]) -> None:
        if not checkpoints:
            return
        try:
            self.store.insert(CHECKPOINT_TABLE, CHECKPOINT_COLUMNS, [c.values() for c in checkpoints])
        except SinkError as exc:
            # The records are durable; a dirty head makes the next call rebuild from the last
            # stored checkpoint and write the missing ones then.
            head.dirty = True
            log.warning("audit_checkpoint_failed", partition=partition, error=str(exc)[:300])

    def checkpoint(self, partition: str) -> Checkpoint | None:
        """Checkpoint the partition's head now (None for an empty partition); no new row
        when the head is already checkpointed."""
        with self._lock:
            _, db_head = self._lookup(partition, [])
            if db_head is None:
                return None
            head = self._head(partition, db_head)
            self._heads[partition] = head
            if head.last_checkpoint_to_seq == head.frontier.size - 1:
                rows = self.store.query_rows(
                    CHECKPOINT_SELECT + " WHERE partition = {p:String} AND to_seq = {s:UInt64} LIMIT 1",
                    {"p": partition, "s": head.last_checkpoint_to_seq})
                return checkpoint_from_row(rows[0]) if rows else None
            cp = self._snapshot(partition, head)
            self.store.insert(CHECKPOINT_TABLE, CHECKPOINT_COLUMNS, [cp.values()])
            return cp

    # -- reading ---------------------------------------------------------------------
    def partitions(self) -> list[str]:
        rows = self.store.query_rows(
            f"SELECT DISTINCT partition FROM (SELECT partition FROM {LOG_TABLE} "
            f"UNION ALL SELECT partition FROM {CHECKPOINT_TABLE}) ORDER BY partition")
        return [str(r[0]) for r in rows]

    def verify(self, partition: str | None = None, from_at: float | None = None,
               to_at: float | None = None) -> Any:
        """Recompute chain and checkpoints; see :func:`sinks.audit_verify.verify_log`."""
        from sinks.audit_verify import verify_log

        return verify_log(self, partition, from_at, to_at)

    def prove(self, record_id: str, partition: str | None = None) -> InclusionProof:
        """Inclusion proof of a record in the latest checkpoint that covers it (or in the
        current head, unsigned, when no checkpoint covers it yet)."""
        where = "record_id = {r:String}" + (" AND partition = {p:String}" if partition is not None else "")
        found = self.store.query_rows(
            f"SELECT partition, seq, kind, toUnixTimestamp64Micro(at), payload, prev_hash, record_hash "
            f"FROM {LOG_TABLE} WHERE {where}", {"r": record_id, "p": partition})
        if not found:
            raise AuditError(f"no audit record with id {record_id!r}" + (f" in partition {partition!r}" if partition else ""))
        if len({r[0] for r in found}) > 1:
            raise AuditError(f"record id {record_id!r} is in partitions {sorted({r[0] for r in found})}; "
                             "name one with --partition")
        part, seq, kind, at_us, payload, prev_hash, stored_hash = found[0]
        seq = int(seq)
        cps = self.store.query_rows(
            CHECKPOINT_SELECT + " WHERE partition = {p:String} AND to_seq >= {s:UInt64} ORDER BY to_seq DESC LIMIT 1",
            {"p": part, "s": seq})
        cp = checkpoint_from_row(cps[0]) if cps else None
        if cp is None:
            size = int(self.store.query_rows(
                f"SELECT max(seq) + 1 FROM {LOG_TABLE} WHERE partition = {{p:String}}", {"p": part})[0][0])
        else:
            size = cp.tree_size
        hashes = self.store.query_rows(
            f"SELECT seq, record_hash FROM {LOG_TABLE} WHERE partition = {{p:String}} AND seq < {{n:UInt64}} "
            "ORDER BY seq", {"p": part, "n": size})
        if [int(h[0]) for h in hashes] != list(range(size)):
            raise AuditError(f"partition {part!r} is missing or repeats records below seq {size}; "
                             f"run `warden audit verify --partition {part}`")
        leaves = [leaf_hash(bytes.fromhex(h[1])) for h in hashes]
        from sinks.audit_merkle import merkle_root

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
            key_id="" if cp is None else cp.key_id, signature="" if cp is None else cp.signature, notes=notes)


def _unique(records: Sequence[AuditRecord]) -> list[AuditRecord]:
    """The batch without repeated ids (first wins), in order."""
    seen: set[str] = set()
    out = []
    for record in records:
        if record.record_id not in seen:
            seen.add(record.record_id)
            out.append(record)
    return out


# -- decision records as the sinks store them -----------------------------------------
def _epoch(value: Any) -> float:
    from sinks.tables import _ts

    return _ts(value).timestamp()


def finding_records(findings: Sequence[Mapping[str, Any]]) -> list[AuditRecord]:
    return [AuditRecord.of(f"finding:{f['finding_id']}", "finding", _epoch(f["at"]), f) for f in findings]


def alert_records(alerts: Sequence[Mapping[str, Any]]) -> list[AuditRecord]:
    """One record per alert version (an alert is re-emitted with a higher ``count``)."""
    return [AuditRecord.of(f"alert:{a['alert_id']}/{a.get('count', 1)}", "alert", _epoch(a["last_seen"]), a)
            for a in alerts]


def breaker_records(signals: Sequence[Mapping[str, Any]]) -> list[AuditRecord]:
    """Breaker transitions; one forced by an operator is an ``override``."""
    return [AuditRecord.of(f"breaker:{b['signal_id']}", "override" if b.get("operator") else "breaker_transition",
                           _epoch(b["at"]), b) for b in signals]
