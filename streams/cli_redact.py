"""``warden redact``: redact JSON lines ``{"text": ...}`` from stdin or a file.

Each input line ``{"text": "..."}`` becomes
``{"text": <redacted>, "findings": [{"entity", "start", "end"}]}`` with offsets into the
ORIGINAL text. Lines that are not a JSON object with a string ``text`` are reported on
stderr by line number only (never their content) and make the exit code 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer

from detectors.redaction import RedactionPolicy, RedactionPolicyError, Redactor
from streams.jsonl import text_records

DEFAULT_POLICY = Path("deploy/config/redaction-policy.yaml")


def redact_lines(redactor: Redactor, source: TextIO, sink: TextIO) -> list[int]:
    """Redact every line of ``source`` into ``sink``; returns the numbers of bad lines."""
    bad: list[int] = []
    for _number, record in text_records(source, bad):
        result = redactor.redact(record["text"])
        out = {
            "text": result.text,
            "findings": [{"entity": f.entity, "start": f.start, "end": f.end} for f in result.findings],
        }
        sink.write(json.dumps(out, ensure_ascii=False) + "\n")
    return bad


def register(app: typer.Typer) -> None:
    """Add the ``redact`` command to ``app``."""

    @app.command("redact")
    def redact(
        input: Annotated[Path | None, typer.Option("--input", "-i", help="JSON lines file (default: stdin)")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="output file (default: stdout)")] = None,
        policy: Annotated[Path, typer.Option("--policy", help="redaction policy YAML")] = DEFAULT_POLICY,
    ) -> None:
        """Redact PII and secrets in JSON lines {"text": ...} (entity names: docs/REDACTION.md)."""
        try:
            loaded = RedactionPolicy.load(policy)
            # The worker's plug-ins (street addresses; NER unless WARDEN_NER=off or the
            # policy disables its entities), so the output is what the worker would store.
            from streams.config import WardenSettings
            from streams.redaction import plugin_recognizers

            redactor = Redactor(loaded, loaded.resolve_key(),
                                recognizers=plugin_recognizers(loaded, ner=WardenSettings().ner))
        except RedactionPolicyError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        source = input.open(encoding="utf-8") if input else sys.stdin
        sink = output.open("w", encoding="utf-8") if output else sys.stdout
        try:
            bad = redact_lines(redactor, source, sink)
        finally:
            if input:
                source.close()
            if output:
                sink.close()
        if bad:
            shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
            typer.echo(f"error: {len(bad)} line(s) are not JSON objects with a string 'text': {shown}", err=True)
            raise typer.Exit(1)
