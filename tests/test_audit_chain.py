"""Issue 16, part 6: an audit log a verifier can trust, on the real embedded engine.

Quiet tails are signed on a time interval; each checkpoint signs over the writer's previous
one, so rolling a partition back to an older checkpoint or deleting a partition's chain
leaves a dangling link that verify reports; verify needs only the public key, and a wrong
key fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sinks.audit import AuditLog, AuditRecord
from sinks.audit_merkle import GENESIS_CHECKPOINT
from sinks.audit_signing import CheckpointSigner, key_id
from sinks.audit_verify import BAD_SIGNATURE, MISSING_CHECKPOINT
from sinks.clickhouse import ClickHouseStore

SEED = bytes(range(32))
PUBLIC = CheckpointSigner(SEED).public_key
T0 = 1_767_225_600.0
SYNC = " SETTINGS mutations_sync = 2"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    s = ClickHouseStore(f"chdb://{tmp_path}/ch")
    s.migrate()
    yield s
    s.close()


def decisions(prefix: str, n: int, start: int = 0) -> list[AuditRecord]:
    return [AuditRecord.of(f"{prefix}:{i}", "override", T0 + i, {"i": i, "operator": "alice"})
            for i in range(start, start + n)]


def public_only(store: ClickHouseStore, public: bytes = PUBLIC) -> AuditLog:
    """A verifier's view: the public key, no seed."""
    return AuditLog(store, verify_keys={key_id(public): public})


def checkpoints(store: ClickHouseStore, partition: str) -> list[tuple[int, str]]:
    return [(int(r[0]), str(r[1])) for r in store.query_rows(
        "SELECT to_seq, signature FROM audit_checkpoints WHERE partition = {p:String} ORDER BY to_seq",
        {"p": partition})]


def delete(store: ClickHouseStore, partition: str, from_seq: int = 0) -> None:
    """What an attacker with write access does to roll a chain back (or remove it)."""
    for table in ("audit_log", "audit_checkpoints"):
        column = "seq" if table == "audit_log" else "to_seq"
        store.command(f"ALTER TABLE {table} DELETE WHERE partition = '{partition}' AND {column} >= {from_seq}{SYNC}")


def test_a_quiet_tail_is_signed_after_the_interval(store: ClickHouseStore) -> None:
    clock = Clock()
    log = AuditLog(store, SEED, checkpoint_every=1000, clock=clock, checkpoint_interval_s=10)
    log.append("breaker.v1/0", decisions("o", 3))
    clock.now += 5
    assert log.checkpoint_due() == [] and checkpoints(store, "breaker.v1/0") == []
    clock.now += 6
    [cp] = log.checkpoint_due()
    assert (cp.to_seq, cp.prev_checkpoint) == (2, GENESIS_CHECKPOINT)
    assert checkpoints(store, "breaker.v1/0")[0][1]  # signed
    clock.now += 60
    assert log.checkpoint_due() == []  # nothing pending: no new checkpoint
    log.append("breaker.v1/0", decisions("o", 1, 3))
    clock.now += 10
    assert [c.to_seq for c in log.checkpoint_due()] == [3]
    report = public_only(store).verify()
    assert report.ok and report.signatures == 2 and report.records == 4


def test_checkpoints_chain_across_partitions_and_restarts(store: ClickHouseStore) -> None:
    clock = Clock()
    first = AuditLog(store, SEED, checkpoint_every=5, clock=clock)
    first.append("a", decisions("a", 5))
    clock.now += 1
    restarted = AuditLog(store, SEED, checkpoint_every=5, clock=clock)  # links to the newest in the log
    restarted.append("b", decisions("b", 5))
    [(a_cp, _)] = checkpoints(store, "a")
    prev = store.query_rows("SELECT prev_checkpoint FROM audit_checkpoints WHERE partition = 'b'")[0][0]
    assert prev.startswith(f"a@{a_cp}:")
    report = public_only(store).verify()
    assert report.ok and len(report.tips) == 1 and report.tips[0].startswith("b@4:")


def _two_partitions(store: ClickHouseStore) -> AuditLog:
    clock = Clock()
    log = AuditLog(store, SEED, checkpoint_every=5, clock=clock)
    log.append("findings.v1/0", decisions("a", 10))  # checkpoints at seq 4 and 9
    clock.now += 1
    log.append("breaker.v1/0", decisions("b", 5))  # its checkpoint links to findings.v1/0@9
    assert public_only(store).verify().ok
    return log


def test_rollback_to_an_older_checkpoint_is_detected(store: ClickHouseStore) -> None:
    _two_partitions(store)
    delete(store, "findings.v1/0", from_seq=5)  # back to the checkpoint at seq 4: consistent on its own
    report = public_only(store).verify()
    assert not report.ok
    [problem] = report.problems
    assert (problem.kind, problem.partition) == (MISSING_CHECKPOINT, "breaker.v1/0")
    assert "findings.v1/0@9" in problem.detail


def test_rollback_of_the_newest_checkpoint_is_detected_against_a_recorded_tip(store: ClickHouseStore) -> None:
    _two_partitions(store)
    tips = public_only(store).verify().tips
    delete(store, "breaker.v1/0", from_seq=0)  # nothing links to the newest checkpoint yet
    assert public_only(store).verify().ok  # hence the tips a verifier records
    report = public_only(store).verify(expect=tips)
    assert [p.kind for p in report.problems] == [MISSING_CHECKPOINT] and "breaker.v1/0@4" in report.problems[0].detail


def test_a_deleted_chain_is_detected(store: ClickHouseStore) -> None:
    _two_partitions(store)
    delete(store, "findings.v1/0")
    report = public_only(store).verify()
    assert "findings.v1/0" not in {p.partition for p in report.problems}  # nothing of it is left...
    assert [(p.kind, p.partition) for p in report.problems] == [(MISSING_CHECKPOINT, "breaker.v1/0")]
    assert "findings.v1/0@9" in report.problems[0].detail  # ...but its successor names it


def test_a_wrong_public_key_fails(store: ClickHouseStore) -> None:
    _two_partitions(store)
    other = CheckpointSigner(bytes(32)).public_key
    report = public_only(store, other).verify()
    assert not report.ok and {p.kind for p in report.problems} == {BAD_SIGNATURE}


def test_cli_verifies_with_the_public_key_only(store: ClickHouseStore, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.cli_audit import register

    _two_partitions(store)
    store.close()  # the CLI opens the engine itself
    monkeypatch.setenv("CLICKHOUSE_DSN", f"chdb://{tmp_path}/ch")
    monkeypatch.delenv("WARDEN_AUDIT_SIGNING_KEY", raising=False)
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    monkeypatch.setenv("WARDEN_AUDIT_SIGNING_KEY", SEED.hex())  # on the worker: print the public half
    printed = runner.invoke(app, ["audit", "public-key"])
    assert printed.exit_code == 0 and printed.output.strip() == PUBLIC.hex()
    monkeypatch.delenv("WARDEN_AUDIT_SIGNING_KEY")
    key_file = tmp_path / "audit.pub"
    key_file.write_text(printed.output)
    ok = runner.invoke(app, ["audit", "verify", "--public-key", str(key_file)])
    assert ok.exit_code == 0 and "OK" in ok.output and "signature" in ok.output, ok.output
    tip = next(line.split("tip: ", 1)[1] for line in ok.output.splitlines() if line.startswith("tip: "))
    monkeypatch.setenv("WARDEN_AUDIT_PUBLIC_KEY", PUBLIC.hex())
    assert runner.invoke(app, ["audit", "verify", "--expect", tip]).exit_code == 0
    wrong = runner.invoke(app, ["audit", "verify", "--public-key", CheckpointSigner(bytes(32)).public_key.hex()])
    assert wrong.exit_code == 1 and BAD_SIGNATURE in wrong.output
    assert runner.invoke(app, ["audit", "verify", "--public-key", "not-a-key"]).exit_code == 2
    assert runner.invoke(app, ["audit", "public-key"]).exit_code == 1  # no seed on a verifier's machine


def test_the_demo_signs_by_default(tmp_path: Path) -> None:
    from sinks.audit_signing import parse_public_key, parse_seed
    from streams.demo import demo_audit_key

    env: dict[str, str] = {}
    public = demo_audit_key(env, tmp_path)
    assert CheckpointSigner(parse_seed(env["WARDEN_AUDIT_SIGNING_KEY"])).public_key == parse_public_key(public)
    assert parse_public_key(str(tmp_path / "audit-public.key")).hex() == public
    assert demo_audit_key({"WARDEN_AUDIT_SIGNING_KEY": SEED.hex()}, tmp_path) == PUBLIC.hex()  # configured wins
