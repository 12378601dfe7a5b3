"""OpenTelemetry GenAI spans → ``InferenceTrace`` v1: the OTLP ingest stage.

Public surface: :func:`decode_request` (bytes of one OTLP export, protobuf or JSON),
:class:`OtlpMapping` (where tenant, application and route come from) and
:func:`map_request` (one export → traces, skipped spans, rejected spans).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.otlp.decode import OtlpEncoding, UndecodableOtlp, decode_request
    from streams.otlp.mapping import OtlpMapping
    from streams.otlp.stage import IngestResult, RejectedSpan, SeenSpans, SkippedSpan, map_request

# Loaded on first use: `warden otlp serve` and `warden --help` need neither Faust nor the
# stage (the stage pulls the worker's state codecs, and with them Faust).
_HOMES = {"OtlpEncoding": "decode", "UndecodableOtlp": "decode", "decode_request": "decode",
          "OtlpMapping": "mapping", "IngestResult": "stage", "RejectedSpan": "stage", "SeenSpans": "stage",
          "SkippedSpan": "stage", "map_request": "stage"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'streams.otlp' has no attribute {name!r}")
    return getattr(importlib.import_module(f"streams.otlp.{_HOMES[name]}"), name)


__all__ = ["IngestResult", "OtlpEncoding", "OtlpMapping", "RejectedSpan", "SeenSpans", "SkippedSpan",
           "UndecodableOtlp", "decode_request", "map_request"]
