"""``warden redact``: redact JSON lines from stdin or a file.

Each input line ``{"text": "..."}`` becomes
``{"text": <redacted>, "findings": [{"entity", "start", "end"}]}`` with offsets into the
ORIGINAL text. With ``--traces`` each line is an ``InferenceTrace`` and comes out
redacted exactly as the worker stores it (same validation, walk, policy, plug-ins and
fail-closed rule, with its ``redaction`` record): to check a policy on recorded traffic,
or to clean traces before sharing them. Bad lines are reported on stderr by line number
(and, for traces, the rejection kind) only, never their content, and make the exit code 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from streams.jsonl import text_records

if TYPE_CHECKING:  # the engine loads with the command, not with every `warden` invocation
    from detectors.redaction import Redactor

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


def redact_trace_lines(redactor: Redactor, source: TextIO, sink: TextIO) -> list[str]:
    """Redact every InferenceTrace line of ``source`` into ``sink`` as ``govern`` stores it;
    returns ``"<line number> (<rejection kind>)"`` for each line that is not a valid trace."""
    from streams.governor import redact_for_storage
    from streams.ingest import RejectedTrace, decode_trace

    bad: list[str] = []
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            trace = decode_trace(line.encode("utf-8", "surrogatepass"))
        except RejectedTrace as rejection:
            bad.append(f"{number} ({rejection.kind})")
            continue
        redacted, _, _ = redact_for_storage(redactor, trace)
        sink.write(json.dumps(redacted, ensure_ascii=False) + "\n")
    return bad


def register(app: typer.Typer) -> None:
    """Add the ``redact`` command to ``app``."""

    @app.command("redact")
    def redact(
        input: Annotated[Path | None, typer.Option("--input", "-i", help="JSON lines file (default: stdin)")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="output file (default: stdout)")] = None,
        policy: Annotated[Path, typer.Option("--policy", help="redaction policy YAML")] = DEFAULT_POLICY,
        traces: Annotated[bool, typer.Option("--traces", help="lines are InferenceTrace records; "
                                             "write each as the worker stores it")] = False,
    ) -> None:
        """Redact PII and secrets in JSON lines {"text": ...}, or in traces with --traces
        (entity names: docs/REDACTION.md)."""
        from detectors.redaction import RedactionPolicy, RedactionPolicyError, Redactor

        try:
            loaded = RedactionPolicy.load(policy)
            # The worker's plug-ins (street addresses and name cues; NER with WARDEN_NER=on
            # unless the policy disables its entities): the output is what the worker stores.
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
            bad: list[int] | list[str] = (redact_trace_lines(redactor, source, sink) if traces
                                          else redact_lines(redactor, source, sink))
        finally:
            if input:
                source.close()
            if output:
                sink.close()
        if bad:
            shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
            what = "valid InferenceTrace records" if traces else "JSON objects with a string 'text'"
            typer.echo(f"error: {len(bad)} line(s) are not {what}: {shown}", err=True)
            raise typer.Exit(1)
