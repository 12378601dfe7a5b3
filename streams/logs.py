"""Structured JSON logs (structlog) for workers and the CLI."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was configured.

    Loggers are cached on first use; one bound to a stream that was later replaced and
    closed (a test runner's capture, a daemonised CLI) raised ``ValueError`` in whichever
    thread logged next, which killed the BreakerClient's consumer thread.
    """

    def write(self, text: str) -> int:
        return _stream().write(text)

    def flush(self) -> None:
        _stream().flush()


def _stream() -> TextIO:
    stream = sys.stderr
    if stream.closed and sys.__stderr__ is not None:
        return sys.__stderr__
    return stream


def configure_logging(level: str = "INFO", *, json_logs: bool = True) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s")
    renderer = structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
