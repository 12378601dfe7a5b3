"""``warden drift scan``: embedding drift over JSON lines ``{"text", "stream"?}``.

Reads the file in order, encodes texts in batches with the configured sentence encoder, runs
one ``EmbeddingDriftDetector`` per stream (``detectors.drift.StreamDriftScan``) and writes one
JSON line per detection: ``{"stream", "index", "score", "p_value", "detector"}``, ``index``
being the 0-based input line at which drift was declared. Exit 0 when the input was read
(detections or not); 1 on bad lines, which are reported by line number only (never text).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from streams.jsonl import text_records

if TYPE_CHECKING:  # the detectors (river, scikit-learn, scipy) load with the command, not with `warden`
    from detectors.drift.config import DriftConfig

ENCODE_BATCH = 2048  # lines per encoder call: big enough to sort by length, small in memory


def read_records(source: TextIO, bad: list[int]) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line index, stream, text)`` per valid line (index 0-based); blank lines are
    skipped; bad line numbers (1-based) are appended to ``bad``."""
    for number, record in text_records(source, bad):
        stream = record.get("stream", "default")
        if not isinstance(stream, str):
            bad.append(number)
            continue
        yield number - 1, stream, record["text"]


def scan_file(source: TextIO, sink: TextIO, drift: DriftConfig, version: str) -> list[int]:
    """Run the scan from ``source`` to ``sink``; returns bad line numbers."""
    from detectors.drift.scan import StreamDriftScan
    from detectors.embeddings import SentenceEncoder

    enc_cfg = drift.encoder
    encoder = SentenceEncoder(enc_cfg.model, enc_cfg.device, enc_cfg.batch_size,
                              enc_cfg.max_seq_length, enc_cfg.half_precision)
    scan = StreamDriftScan(drift.embedding, version)
    bad: list[int] = []
    batch: list[tuple[int, str, str]] = []

    def flush() -> None:
        vectors = encoder.encode([text for _, _, text in batch])
        indices = [index for index, _, _ in batch]
        for hit in scan.feed([stream for _, stream, _ in batch], vectors, indices):
            sink.write(json.dumps(hit) + "\n")
        sink.flush()
        batch.clear()

    for record in read_records(source, bad):
        batch.append(record)
        if len(batch) >= ENCODE_BATCH:
            flush()
    if batch:
        flush()
    return bad


def _config(path: Path | None, reference_size: int | None, test_every: int | None,
            window_size: int | None) -> tuple[DriftConfig, str]:
    from detectors.config import DetectorsConfig, load_detectors_config

    loaded = load_detectors_config(path) if path is not None else DetectorsConfig(version="builtin-defaults")
    drift = loaded.drift_or_default()
    emb = drift.embedding.model_dump()
    if reference_size is not None:
        emb["reference"]["size"] = reference_size
    if test_every is not None:
        emb["test_every"] = test_every
    if window_size is not None:
        emb["window_size"] = window_size
    return drift.model_copy(update={"embedding": type(drift.embedding).model_validate(emb)}), loaded.version


def register(app: typer.Typer) -> None:
    """Add the ``drift`` command group (``drift scan``) to ``app``."""
    drift_app = typer.Typer(help="Embedding drift over text streams.", no_args_is_help=True)
    app.add_typer(drift_app, name="drift")

    @drift_app.command("scan")
    def scan(
        input: Annotated[Path, typer.Option("--input", "-i", help='JSON lines {"text", "stream"?}; "-" for stdin')],
        config: Annotated[Path | None, typer.Option("--config", help="detectors YAML (default: built-in defaults)")] = None,
        reference_size: Annotated[int | None, typer.Option(help="reference items per stream (default 1000)")] = None,
        test_every: Annotated[int | None, typer.Option(help="MMD test cadence in items (default 100)")] = None,
        window_size: Annotated[int | None, typer.Option(help="items in the MMD test window (default 200)")] = None,
        threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's)")] = None,
    ) -> None:
        """Detect embedding drift per stream; one JSON line per detection (docs/DRIFT.md)."""
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        try:
            drift, version = _config(config, reference_size, test_every, window_size)
        except (ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        if str(input) == "-":
            bad = scan_file(sys.stdin, sys.stdout, drift, version)
        else:
            if not input.is_file():
                typer.echo(f"error: --input {input} is not a file", err=True)
                raise typer.Exit(2)
            with input.open(encoding="utf-8") as source:
                bad = scan_file(source, sys.stdout, drift, version)
        if bad:
            shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
            typer.echo(f'error: {len(bad)} line(s) are not {{"text": str, "stream"?: str}}: {shown}', err=True)
            raise typer.Exit(1)
