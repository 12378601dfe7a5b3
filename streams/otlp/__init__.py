"""OpenTelemetry GenAI spans → ``InferenceTrace`` v1: the OTLP ingest stage.

Public surface: :func:`decode_request` (bytes of one OTLP export, protobuf or JSON),
:class:`OtlpMapping` (where tenant, application and route come from) and
:func:`map_request` (one export → traces, skipped spans, rejected spans).
"""

from streams.otlp.decode import OtlpEncoding, UndecodableOtlp, decode_request
from streams.otlp.mapping import OtlpMapping
from streams.otlp.stage import IngestResult, RejectedSpan, SeenSpans, SkippedSpan, map_request

__all__ = ["IngestResult", "OtlpEncoding", "OtlpMapping", "RejectedSpan", "SeenSpans", "SkippedSpan",
           "UndecodableOtlp", "decode_request", "map_request"]
