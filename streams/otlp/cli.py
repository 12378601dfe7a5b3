"""``warden otlp serve`` (the OTLP/HTTP receiver, streams/otlp/receiver.py) and ``warden otlp
map`` (check a mapping file against what a Collector sends: one OTLP message on stdin →
InferenceTrace JSON lines on stdout, skipped and rejected spans on stderr)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from streams.config import WardenSettings
from streams.otlp.decode import OtlpEncoding, UndecodableOtlp, decode_request

otlp_app = typer.Typer(help="OpenTelemetry GenAI spans: the OTLP/HTTP receiver, the mapping check.",
                       no_args_is_help=True)


@otlp_app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option(help="bind address (default WARDEN_OTLP_HTTP_HOST, 127.0.0.1; "
                                                  "any other needs WARDEN_OTLP_HTTP_TOKEN)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default WARDEN_OTLP_HTTP_PORT, 4318)")] = None,
) -> None:
    """Accept OTLP/HTTP ``POST /v1/traces`` and publish each export to the first OTLP topic.

    Its own process (no worker state): run as many as the exporters need, beside or apart
    from the workers. Exit 2 when the settings are unsafe (a non-loopback bind without a
    token) or name no topic it can write.
    """
    from streams.logs import configure_logging
    from streams.otlp.agent import ensure_otlp_topics
    from streams.otlp.receiver import ReceiverConfigError, check_settings, serve

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["otlp_http_host"] = host
    if port is not None:
        overrides["otlp_http_port"] = port
    settings = WardenSettings().model_copy(update=overrides)
    configure_logging(settings.log_level)
    try:
        check_settings(settings)
    except ReceiverConfigError as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        ensure_otlp_topics(settings, timeout_s=10)
    except Exception as exc:  # Kafka down at start: the receiver answers 503 until it is back
        typer.echo(f"could not check the OTLP topics ({str(exc)[:300]}); serving anyway", err=True)
    serve(settings)


@otlp_app.command("map")
def map_command(
    encoding: Annotated[OtlpEncoding, typer.Option(help="auto recognises the encoding from the bytes")] = OtlpEncoding.auto,
    mapping: Annotated[Path | None, typer.Option(help="mapping file (default: deploy/config/otlp-mapping.yaml)")] = None,
) -> None:
    """Read one OTLP trace export on stdin; print the InferenceTrace JSON lines it maps to.

    Exit 0 when the message was read (whatever was skipped), 1 when a span was rejected,
    2 when the message or the mapping file cannot be read.
    """
    from streams.otlp.mapping import MappingError, OtlpMapping
    from streams.otlp.stage import map_request

    try:
        rules = OtlpMapping.load(mapping or WardenSettings().otlp_mapping_path)
        result = map_request(decode_request(sys.stdin.buffer.read(), encoding), rules)
    except (MappingError, UndecodableOtlp) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    for trace in result.traces:
        sys.stdout.write(trace.model_dump_json(exclude_none=True) + "\n")
    for span in result.skipped:
        typer.echo(json.dumps({"skipped": span.reason, "trace_id": span.trace_id, "span_id": span.span_id,
                               "name": span.name}), err=True)
    for bad in result.rejected:
        typer.echo(json.dumps({"rejected": bad.reason, "trace_id": bad.trace_id, "span_id": bad.span_id,
                               "name": bad.name}), err=True)
    raise typer.Exit(1 if result.rejected else 0)


def register(app: typer.Typer) -> None:
    app.add_typer(otlp_app, name="otlp")
