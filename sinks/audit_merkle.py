"""Pure hashing for the audit log: record hashes, the hash chain and RFC 6962 Merkle trees.

No ClickHouse, no I/O: values in, hashes out, so a verifier outside Warden can re-implement
or import this module alone.

* **Record hash** (the chain): SHA-256 over length-prefixed canonical bytes of
  ``(partition, seq, record_id, kind, at_us, payload_sha256, prev_hash)`` behind a domain tag,
  so no two different records share an encoding and a record can't be moved to another
  partition or position without changing its hash.
* **Merkle tree** (checkpoints): Certificate Transparency's tree (RFC 6962 §2.1, RFC 9162
  §2.1): leaf = H(0x00 || record_hash), node = H(0x01 || left || right), the split at the
  largest power of two below n. A checkpoint is a tree head over the whole partition log
  ``seq 0 .. to_seq``, as CT signs tree heads, so one signed root commits to every record
  before it.
* **Frontier**: the roots of the perfect subtrees that make up a tree of size n (one per set
  bit of n, left to right). Appending a leaf is O(log n) amortised O(1), the root is folded
  from the frontier, and a checkpoint stores its frontier so verification can resume there.

>>> leaves = [leaf_hash(bytes([i]) * 32) for i in range(5)]
>>> root = merkle_root(leaves)
>>> frontier = MerkleFrontier()
>>> for leaf in leaves:
...     frontier.append(leaf)
>>> frontier.root() == root
True
>>> path = inclusion_path(3, leaves)
>>> root_from_inclusion(3, 5, leaves[3], path) == root
True
>>> root_from_inclusion(2, 5, leaves[3], path) == root
False
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

RECORD_TAG = b"warden.audit.record.v1"
CHECKPOINT_TAG = b"warden.audit.checkpoint.v1"
# v2 also covers the previous checkpoint (``prev_checkpoint``): checkpoints form one signed
# hash chain per writer, so a deleted or rolled-back checkpoint leaves a dangling link.
CHAINED_CHECKPOINT_TAG = b"warden.audit.checkpoint.v2"
GENESIS_HASH = bytes(32)  # prev_hash of seq 0 in every partition
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962: MTH of the empty list


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a payload: sorted keys, no spaces, UTF-8 kept.

    >>> canonical_json({"b": 1, "a": [1, "é"]})
    '{"a":[1,"é"],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def payload_digest(payload: str) -> bytes:
    """SHA-256 of the payload's UTF-8 bytes (the chain hashes this, not the payload)."""
    return hashlib.sha256(payload.encode("utf-8")).digest()


def to_micros(at: float) -> int:
    """Epoch seconds → integer microseconds, the exact value stored and hashed.

    >>> to_micros(1700000000.1234567)
    1700000000123457
    """
    return round(at * 1_000_000)


def record_hash(partition: str, seq: int, record_id: str, kind: str, at_us: int,
                payload_sha256: bytes, prev_hash: bytes) -> bytes:
    """Hash of one audit record, chained to its predecessor through ``prev_hash``.

    >>> h = record_hash("findings.v1/0", 0, "finding:abc", "finding", 1, payload_digest("{}"), GENESIS_HASH)
    >>> len(h), h == record_hash("findings.v1/1", 0, "finding:abc", "finding", 1, payload_digest("{}"),
    ...                          GENESIS_HASH)
    (32, False)
    """
    digest = hashlib.sha256(RECORD_TAG)
    for part in (partition.encode("utf-8"), seq.to_bytes(8, "big"), record_id.encode("utf-8"),
                 kind.encode("utf-8"), at_us.to_bytes(8, "big", signed=True), payload_sha256, prev_hash):
        digest.update(_field(part))
    return digest.digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf: H(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node: H(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (RFC 6962 §2.1), built through the frontier: O(n)."""
    frontier = MerkleFrontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def _subtree_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return leaves[lo]
    k = _split(hi - lo)
    return node_hash(_subtree_root(leaves, lo, lo + k), _subtree_root(leaves, lo + k, hi))


def inclusion_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Audit path of leaf ``index`` in the tree over ``leaves`` (RFC 6962 §2.1.1), leaf to root."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    siblings: list[bytes] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append(_subtree_root(leaves, lo + k, hi))
            hi = lo + k
        else:
            siblings.append(_subtree_root(leaves, lo, lo + k))
            lo = lo + k
    path.extend(reversed(siblings))
    return path


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """Root implied by an inclusion proof (RFC 9162 §2.1.3.2), or None if the path can't fit."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


class MerkleFrontier:
    """Compact state of an append-only RFC 6962 tree: size and perfect-subtree roots.

    >>> f = MerkleFrontier()
    >>> f.root() == EMPTY_ROOT
    True
    >>> for i in range(6):
    ...     f.append(leaf_hash(bytes([i])))
    >>> f.size, len(f.nodes)      # 6 = 4 + 2: two perfect subtrees
    (6, 2)
    >>> MerkleFrontier.from_hex(f.size, f.to_hex()).root() == f.root()
    True
    """

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()):
        if len(nodes) != bin(size).count("1"):
            raise ValueError(f"a frontier of size {size} has {bin(size).count('1')} nodes, got {len(nodes)}")
        self.size = size
        self.nodes = list(nodes)

    def append(self, leaf: bytes) -> None:
        node, size = leaf, self.size
        while size & 1:  # merge equal-height subtrees, like a binary counter's carry
            node = node_hash(self.nodes.pop(), node)
            size >>= 1
        self.nodes.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        r = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            r = node_hash(node, r)
        return r

    def copy(self) -> MerkleFrontier:
        return MerkleFrontier(self.size, self.nodes)

    def to_hex(self) -> list[str]:
        return [n.hex() for n in self.nodes]

    @classmethod
    def from_hex(cls, size: int, nodes: Sequence[str]) -> MerkleFrontier:
        return cls(size, [bytes.fromhex(n) for n in nodes])


def checkpoint_message(partition: str, tree_size: int, root: bytes, created_at_ms: int,
                       prev_checkpoint: str = "") -> bytes:
    """The bytes a checkpoint signature covers: partition, tree size (= to_seq + 1), root,
    time and, for a chained (v2) checkpoint, the previous checkpoint's reference
    (:func:`checkpoint_ref`). It is also the checkpoint's hash, which the next one names."""
    fields = [partition.encode("utf-8"), tree_size.to_bytes(8, "big"), root,
              created_at_ms.to_bytes(8, "big", signed=True)]
    if prev_checkpoint:
        fields.append(prev_checkpoint.encode("utf-8"))
    digest = hashlib.sha256(CHAINED_CHECKPOINT_TAG if prev_checkpoint else CHECKPOINT_TAG)
    for part in fields:
        digest.update(_field(part))
    return digest.digest()


def checkpoint_ref(partition: str, to_seq: int, message: bytes) -> str:
    """How a checkpoint names its predecessor: ``<partition>@<to_seq>:<hash hex>``. The
    partition and seq only make a dangling link readable; the hash is what binds.

    >>> checkpoint_ref("findings.v1/0", 999, bytes(32))[:18]
    'findings.v1/0@999:'
    """
    return f"{partition}@{to_seq}:{message.hex()}"


GENESIS_CHECKPOINT = "genesis"  # prev_checkpoint of a writer's first checkpoint in an empty log


@dataclass(frozen=True)
class InclusionProof:
    """Everything needed to check that one record is in a partition's signed tree head.

    ``leaf_index`` is the record's ``seq``; ``record_hash`` is recomputed from the record
    fields below by :func:`verify_inclusion`, so the proof binds the decision itself, not
    just a hash. ``checkpoint_to_seq`` is None when the record is newer than every checkpoint
    and the proof is against the current (unsigned) head.
    """

    partition: str
    record_id: str
    kind: str
    at_us: int
    payload_sha256: str
    prev_hash: str
    record_hash: str
    leaf_index: int
    tree_size: int
    audit_path: list[str]
    root: str
    checkpoint_to_seq: int | None
    checkpoint_created_at_ms: int | None
    key_id: str = ""
    signature: str = ""
    notes: list[str] = field(default_factory=list)
    prev_checkpoint: str = ""  # what the checkpoint's signature also covers (v2)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InclusionProof:
        return cls(**data)


def verify_inclusion(proof: InclusionProof, public_key: bytes | None = None) -> bool:
    """True when the record fields hash to ``record_hash``, the audit path leads to ``root``,
    and, given a public key (raw 32-byte Ed25519), the checkpoint signature is valid."""
    try:
        expected = record_hash(proof.partition, proof.leaf_index, proof.record_id, proof.kind, proof.at_us,
                               bytes.fromhex(proof.payload_sha256), bytes.fromhex(proof.prev_hash))
        if expected.hex() != proof.record_hash:
            return False
        path = [bytes.fromhex(p) for p in proof.audit_path]
        root = root_from_inclusion(proof.leaf_index, proof.tree_size, leaf_hash(expected), path)
    except ValueError:
        return False
    if root is None or root.hex() != proof.root:
        return False
    if public_key is None:
        return True
    if not proof.signature or proof.checkpoint_created_at_ms is None:
        return False
    from sinks.audit_signing import verify_signature

    message = checkpoint_message(proof.partition, proof.tree_size, root, proof.checkpoint_created_at_ms,
                                 proof.prev_checkpoint)
    return verify_signature(public_key, message, proof.signature)
