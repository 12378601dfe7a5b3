"""``warden audit verify|prove``: check the tamper-evident audit log (docs/AUDIT.md).

``verify`` recomputes every record hash, chain link, checkpoint root, checkpoint link and
signature and exits 1 at the first broken record of any partition (0 when all hold). It needs
only the Ed25519 PUBLIC key (``WARDEN_AUDIT_PUBLIC_KEY`` or ``--public-key``): whoever
verifies cannot forge. ``prove RECORD_ID`` prints an RFC 6962 inclusion proof of one decision
as JSON, checkable with ``sinks.audit_merkle.verify_inclusion`` and the public key alone.
``public-key`` prints the public half of the worker's signing seed, to hand to verifiers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from streams.config import WardenSettings

if TYPE_CHECKING:
    from sinks.audit import AuditLog

audit_app = typer.Typer(help="Tamper-evident audit log: verify the chain, prove a record.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def signing_key() -> bytes | None:
    """The Ed25519 seed from settings (``WARDEN_AUDIT_SIGNING_KEY``, 64 hex digits), or None."""
    secret = WardenSettings().audit_signing_key
    if secret is None:
        return None
    text = secret.get_secret_value()
    from sinks.audit_signing import parse_seed

    try:
        return parse_seed(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def parse_time(text: str | None, option: str) -> float | None:
    """ISO 8601 (``2026-01-31``, ``2026-01-31T12:00:00Z``) → epoch seconds; naive means UTC."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError as exc:
        raise typer.BadParameter(f"{option} {text!r} is not an ISO 8601 time, e.g. 2026-01-31T12:00:00Z") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def verify_keys(public_key: str | None) -> dict[str, bytes]:
    """Key id -> public key to check signatures with: ``--public-key``, else
    ``WARDEN_AUDIT_PUBLIC_KEY``, else (on a worker's machine) the seed's public half."""
    from sinks.audit_signing import CheckpointSigner, key_id, parse_public_key

    text = public_key or WardenSettings().audit_public_key
    if text:
        try:
            raw = parse_public_key(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        return {key_id(raw): raw}
    seed = signing_key()
    if seed is None:
        return {}
    signer = CheckpointSigner(seed)
    return {signer.key_id: signer.public_key}


def open_log(keys: dict[str, bytes] | None = None) -> AuditLog:
    from sinks.audit import AuditLog
    from sinks.clickhouse import ClickHouseStore

    store = ClickHouseStore(WardenSettings().clickhouse_dsn)  # keys are parsed before: no engine left open
    try:
        store.migrate()
    except Exception:
        store.close()
        raise
    return AuditLog(store, verify_keys=keys or {})


@audit_app.command("verify")
def verify(
    from_: Annotated[str | None, typer.Option("--from", help="first decision time, ISO 8601 (UTC if no zone)")] = None,
    to: Annotated[str | None, typer.Option("--to", help="last decision time, ISO 8601")] = None,
    partition: Annotated[str | None, typer.Option(help="only this partition, e.g. findings.v1/0")] = None,
    public_key: Annotated[str | None, typer.Option(
        help="Ed25519 public key (64 hex digits) or a file holding it; default WARDEN_AUDIT_PUBLIC_KEY")] = None,
    expect: Annotated[list[str] | None, typer.Option(
        help="a checkpoint tip printed by an earlier verify; fails if it is gone (rollback). Repeatable")] = None,
) -> None:
    """Recompute chain, checkpoints and their links; exit 1 at the first broken record."""
    keys = verify_keys(public_key)
    log = open_log(keys)
    try:
        report = log.verify(partition, parse_time(from_, "--from"), parse_time(to, "--to"), expect or ())
    finally:
        log.store.close()
    table = Table(title="audit verify", show_header=False)
    for name, value in (("partitions", report.partitions), ("records", report.records),
                        ("checkpoints", report.checkpoints), ("signatures checked", report.signatures)):
        table.add_row(name, f"{value:,}")
    console.print(table)
    if not log.verify_keys:
        console.print("[yellow]no WARDEN_AUDIT_PUBLIC_KEY (or --public-key): checkpoint signatures were not "
                      "checked[/yellow]")
    if report.newest_checkpoint_ms is not None:
        newest = datetime.fromtimestamp(report.newest_checkpoint_ms / 1000, UTC)
        console.print(f"newest checkpoint: {newest.isoformat(timespec='seconds')}")
    if report.ok:
        console.print("[green]OK[/green]: every record hash, link, checkpoint root, checkpoint link"
                      + (" and signature" if log.verify_keys else "") + " holds")
        for tip in report.tips:  # soft_wrap: a tip is copied whole into the next --expect
            console.print(f"tip: {tip}", soft_wrap=True, highlight=False)
        return
    broken = Table(title="first broken record per partition")
    for column in ("partition", "seq", "record_id", "problem", "detail"):
        broken.add_column(column)
    for p in report.problems:
        broken.add_row(p.partition, str(p.seq), p.record_id, p.kind, p.detail)
    console.print(broken)
    raise typer.Exit(1)


@audit_app.command("prove")
def prove(
    record_id: Annotated[str, typer.Argument(help="e.g. finding:<finding_id>, alert:<alert_id>/<count>")],
    partition: Annotated[str | None, typer.Option(help="when the id is in several partitions")] = None,
) -> None:
    """Print an inclusion proof of RECORD_ID against the latest checkpoint covering it (JSON)."""
    from sinks.audit import AuditError

    keys = verify_keys(None)
    log = open_log(keys)
    try:
        proof = log.prove(record_id, partition)
    except AuditError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        log.store.close()
    body = proof.to_json()
    if proof.key_id in keys:
        body["public_key"] = keys[proof.key_id].hex()
    typer.echo(json.dumps(body, indent=2))


@audit_app.command("public-key")
def public_key() -> None:
    """Print the Ed25519 public key of WARDEN_AUDIT_SIGNING_KEY (hex), for verifiers."""
    from sinks.audit_signing import CheckpointSigner

    seed = signing_key()
    if seed is None:
        err.print("[red]WARDEN_AUDIT_SIGNING_KEY is not set: there is no signing key on this machine[/red]")
        raise typer.Exit(1)
    typer.echo(CheckpointSigner(seed).public_key.hex())


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
