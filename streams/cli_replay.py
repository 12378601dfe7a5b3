"""``warden replay``: the worker's detectors over recorded traces, without Kafka.

Reads JSON lines of ``InferenceTrace`` in order and writes one JSON line per finding
(``Finding.to_dict()`` plus ``config_version``) to ``--output`` or stdout. A line that is
not a valid trace becomes a JSON line on stderr ``{"line", "error_kind", "reason"}`` and
the replay goes on; the exit code is then 1 (0 when every line was replayed).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, TextIO

import typer

from streams.records import ChangeEvent


def read_changes(path: Path) -> list[ChangeEvent]:
    """Change-ledger events (JSON lines of ``ChangeEvent``) to replay against."""
    events = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                events.append(ChangeEvent.model_validate_json(line))
            except ValueError as exc:
                raise typer.BadParameter(f"{path}:{number} is not a ChangeEvent: {exc}") from None
    return events


def replay_stream(source: Iterable[bytes | str], sink: TextIO, errors: TextIO, config: Path | None, *,
                  embeddings: bool = True, changes: list[ChangeEvent] | None = None) -> tuple[int, int, int]:
    """Replay ``source`` into ``sink`` (findings) and ``errors`` (bad lines).

    Returns (traces replayed, findings written, lines skipped).
    """
    from streams.replay import Replay

    replay = Replay(config, embeddings=embeddings, changes=changes or [])
    traces = findings = skipped = 0
    for batch in replay.run(source):
        for error in batch.errors:
            errors.write(json.dumps(error.to_dict()) + "\n")
        for record in batch.findings:
            sink.write(json.dumps(record, default=str) + "\n")
        sink.flush()
        traces += batch.traces
        findings += len(batch.findings)
        skipped += len(batch.errors)
    return traces, findings, skipped


def register(app: typer.Typer) -> None:
    """Add ``replay`` to ``app``."""

    @app.command("replay")
    def replay(
        input: Annotated[Path, typer.Option("--input", "-i", help="JSON lines of InferenceTrace; '-' for stdin")],
        config: Annotated[Path | None, typer.Option(
            "--config", help="config directory (deploy/config) or its detectors.yaml")] = None,
        output: Annotated[Path | None, typer.Option(
            "--output", "-o", help="findings JSON lines (default stdout)")] = None,
        changes: Annotated[Path | None, typer.Option(
            help="change-ledger events (JSON lines of ChangeEvent) known during the replay")] = None,
        embeddings: Annotated[bool, typer.Option(
            help="run embedding drift (loads the sentence encoder)")] = True,
        summary: Annotated[bool, typer.Option(help="print counts to stderr at the end")] = False,
    ) -> None:
        """Run the worker's detectors over recorded traces, in order; findings as JSON lines."""
        from streams.replay import resolve_config_dir

        try:
            config_dir = resolve_config_dir(config)
        except FileNotFoundError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        if str(input) != "-" and not input.is_file():
            typer.echo(f"error: --input {input} is not a file", err=True)
            raise typer.Exit(2)
        events = read_changes(changes) if changes is not None else []
        with ExitStack() as stack:
            # Bytes: a line that is not UTF-8 is reported like the worker reports it.
            source = sys.stdin.buffer if str(input) == "-" else stack.enter_context(input.open("rb"))
            sink = sys.stdout if output is None else stack.enter_context(output.open("w", encoding="utf-8"))
            traces, found, skipped = replay_stream(source, sink, sys.stderr, config_dir,
                                                   embeddings=embeddings, changes=events)
        if summary:
            typer.echo(json.dumps({"traces": traces, "findings": found, "skipped_lines": skipped}), err=True)
        if skipped:
            raise typer.Exit(1)
