"""Pure audit hashing: RFC 6962 trees against the recursive definition, inclusion proofs,
frontier, record hashes, signatures."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.audit_merkle import (
    EMPTY_ROOT,
    GENESIS_HASH,
    InclusionProof,
    MerkleFrontier,
    canonical_json,
    checkpoint_message,
    inclusion_path,
    leaf_hash,
    merkle_root,
    payload_digest,
    record_hash,
    root_from_inclusion,
    verify_inclusion,
)
from sinks.audit_signing import CheckpointSigner, parse_seed


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 written as the RFC states it, independent of the module's frontier."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def tree(n: int, salt: int = 0) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(f"{salt}/{i}".encode()).digest()) for i in range(n)]


def test_rfc6962_shapes() -> None:
    leaves = tree(3)
    assert merkle_root([]) == EMPTY_ROOT
    assert merkle_root(leaves[:1]) == leaves[0]
    left = hashlib.sha256(b"\x01" + leaves[0] + leaves[1]).digest()
    assert merkle_root(leaves) == hashlib.sha256(b"\x01" + left + leaves[2]).digest()
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.integers(min_value=0, max_value=10**6))
def test_every_leaf_proves_in_random_trees(n: int, salt: int) -> None:
    leaves = tree(n, salt)
    root = mth(leaves)
    frontier = MerkleFrontier()
    for leaf in leaves:
        frontier.append(leaf)
    assert frontier.root() == root == merkle_root(leaves)
    assert len(frontier.nodes) == bin(n).count("1")
    for index in range(n):
        path = inclusion_path(index, leaves)
        assert root_from_inclusion(index, n, leaves[index], path) == root
        assert len(path) <= max(1, (n - 1).bit_length())


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=2, max_value=200), st.data())
def test_altered_proofs_fail(n: int, data: st.DataObject) -> None:
    leaves = tree(n)
    root = mth(leaves)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    path = inclusion_path(index, leaves)
    other = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != index))
    assert root_from_inclusion(index, n, leaves[other], path) != root  # wrong leaf
    assert root_from_inclusion(other, n, leaves[index], path) != root  # wrong position
    if path:
        flip = data.draw(st.integers(min_value=0, max_value=len(path) - 1))
        bad = list(path)
        bad[flip] = hashlib.sha256(bad[flip]).digest()
        assert root_from_inclusion(index, n, leaves[index], bad) != root
        assert root_from_inclusion(index, n, leaves[index], path[:-1]) != root
    assert root_from_inclusion(index, n, leaves[index], path + [leaves[0]]) != root


def test_frontier_round_trip_and_resume() -> None:
    leaves = tree(77)
    frontier = MerkleFrontier()
    for leaf in leaves[:50]:
        frontier.append(leaf)
    resumed = MerkleFrontier.from_hex(frontier.size, frontier.to_hex())
    for leaf in leaves[50:]:
        resumed.append(leaf)
    assert resumed.root() == mth(leaves)
    with pytest.raises(ValueError, match="size 5 has 2 nodes"):
        MerkleFrontier(5, [leaves[0]])


def test_record_hash_binds_every_field() -> None:
    base = dict(partition="p", seq=3, record_id="r", kind="finding", at_us=10,
                payload_sha256=payload_digest("{}"), prev_hash=GENESIS_HASH)
    reference = record_hash(**base)  # type: ignore[arg-type]
    changes = dict(partition="q", seq=4, record_id="s", kind="alert", at_us=11,
                   payload_sha256=payload_digest("{ }"), prev_hash=b"\x01" * 32)
    for name, value in changes.items():
        assert record_hash(**{**base, name: value}) != reference, name  # type: ignore[arg-type]
    # length prefixes: moving a character between adjacent fields changes the hash
    digest = payload_digest("{}")
    assert record_hash("pr", 3, "x", "finding", 10, digest, GENESIS_HASH) != \
        record_hash("p", 3, "rx", "finding", 10, digest, GENESIS_HASH)
    assert canonical_json({"b": 2, "a": 1}) == canonical_json({"a": 1, "b": 2})


def make_proof(n: int = 9, index: int = 4) -> tuple[InclusionProof, CheckpointSigner]:
    signer = CheckpointSigner(bytes(range(32)))
    hashes, prev = [], GENESIS_HASH
    for seq in range(n):
        digest = record_hash("p", seq, f"r{seq}", "finding", seq, payload_digest(str(seq)), prev)
        hashes.append((digest, prev))
        prev = digest
    leaves = [leaf_hash(h) for h, _ in hashes]
    root = merkle_root(leaves)
    created = 1_700_000_000_000
    proof = InclusionProof(
        partition="p", record_id=f"r{index}", kind="finding", at_us=index,
        payload_sha256=payload_digest(str(index)).hex(), prev_hash=hashes[index][1].hex(),
        record_hash=hashes[index][0].hex(), leaf_index=index, tree_size=n,
        audit_path=[p.hex() for p in inclusion_path(index, leaves)], root=root.hex(), checkpoint_to_seq=n - 1,
        checkpoint_created_at_ms=created, key_id=signer.key_id,
        signature=signer.sign(checkpoint_message("p", n, root, created)))
    return proof, signer


def test_verify_inclusion_checks_record_path_and_signature() -> None:
    proof, signer = make_proof()
    assert verify_inclusion(proof) and verify_inclusion(proof, signer.public_key)
    assert verify_inclusion(InclusionProof.from_json(proof.to_json()), signer.public_key)
    other = CheckpointSigner(bytes(32)).public_key
    assert not verify_inclusion(proof, other)
    altered = {
        "record_id": "r5", "kind": "alert", "at_us": 5, "payload_sha256": payload_digest("x").hex(),
        "leaf_index": 5, "tree_size": 10, "root": "00" * 32, "checkpoint_created_at_ms": 1,
        "audit_path": proof.audit_path[:-1], "prev_hash": "11" * 32, "record_hash": "zz",
    }
    for name, value in altered.items():
        bad = InclusionProof.from_json({**proof.to_json(), name: value})
        assert not verify_inclusion(bad, signer.public_key), name
    unsigned = InclusionProof.from_json({**proof.to_json(), "signature": ""})
    assert verify_inclusion(unsigned) and not verify_inclusion(unsigned, signer.public_key)


def test_seed_parsing_names_the_variable() -> None:
    assert parse_seed("ab" * 32) == b"\xab" * 32
    with pytest.raises(ValueError, match="WARDEN_AUDIT_SIGNING_KEY must be 64 hex digits"):
        parse_seed("abc")
