"""The worker's web server as an attack surface: where it listens, who may query, what runs.

- It binds ``WARDEN_WEB_BIND`` (default 127.0.0.1); ``WARDEN_WEB_HOST`` only names the URL.
  Binding anything but loopback needs a query token (``WARDEN_QUERY_TOKEN`` or
  ``WARDEN_QUERY_TOKEN_FILE``): the worker refuses to start exposed without one.
- ``/sql`` checks ``Authorization: Bearer <token>`` in constant time whenever a token is
  set. ``/metrics`` and ``/healthz`` stay open: counters and route names, no trace content,
  and Prometheus or an orchestrator scrape them (docs/SECURITY.md).
- Faust's own pages (``/router``, ``/table``, the statistics at ``/``, ``/graph``) are off.
- TLS is optional (``WARDEN_WEB_TLS_CERTFILE`` and ``_KEYFILE``).
- A query runs on the analysts' session (sinks.analyst_sql) in its own threads, never the
  sink's, and is killed in ClickHouse when its client goes away.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import ssl
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import structlog
from faust.web import View

from sinks.analyst_sql import AnalystBusy, AnalystLimits, QueryRefused, analyst_views
from sinks.clickhouse import ClickHouseStore
from streams.config import WardenSettings
from streams.metrics import METRICS

log = structlog.get_logger("warden.query_endpoint")

MIN_TOKEN_CHARS = 24
# Analyst queries running or waiting at once; more are answered 503 at once rather than
# queued behind each other for minutes.
MAX_ANALYST_REQUESTS = 4
# How often a running query checks whether its client is still connected.
DISCONNECT_POLL_S = 0.2
# After a client leaves, its query is killed again every second until it returns, at most
# this many times (the execution limit ends it anyway).
KILL_RETRIES = 600


class WebExposureError(RuntimeError):
    """The web server would listen beyond loopback without a query token, or the token is unusable."""


def is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def query_token(settings: WardenSettings) -> str | None:
    """The bearer token for /sql, from WARDEN_QUERY_TOKEN or the file WARDEN_QUERY_TOKEN_FILE names."""
    token: str | None = None
    if settings.query_token is not None:
        token = settings.query_token.get_secret_value().strip()
    elif settings.query_token_file is not None:
        try:
            token = settings.query_token_file.read_text().strip()
            if settings.query_token_file.stat().st_mode & 0o077:
                log.warning("query_token_file_readable_by_others", path=str(settings.query_token_file),
                            fix="chmod 600")
        except OSError as exc:
            raise WebExposureError(f"WARDEN_QUERY_TOKEN_FILE={settings.query_token_file}: {exc.strerror}") from exc
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise WebExposureError(f"the query token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                               "random ones, e.g. `openssl rand -hex 32`")
    return token


def check_web_exposure(settings: WardenSettings) -> str | None:
    """The token /sql requires (None: open, on loopback only); raises when exposed without one."""
    token = query_token(settings)
    if token is None and not is_loopback(settings.web_bind):
        raise WebExposureError(
            f"WARDEN_WEB_BIND={settings.web_bind} would expose the worker's web server (analyst SQL) "
            "beyond this host without authentication: set WARDEN_QUERY_TOKEN (or WARDEN_QUERY_TOKEN_FILE) "
            "to a random secret of 24+ characters, or bind 127.0.0.1")
    if (settings.web_tls_certfile is None) != (settings.web_tls_keyfile is None):
        raise WebExposureError("set both WARDEN_WEB_TLS_CERTFILE and WARDEN_WEB_TLS_KEYFILE, or neither")
    return token


def web_ssl_context(settings: WardenSettings) -> ssl.SSLContext | None:
    if settings.web_tls_certfile is None or settings.web_tls_keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(settings.web_tls_certfile), str(settings.web_tls_keyfile))
    return context


def faust_web_options(settings: WardenSettings) -> dict[str, Any]:
    """Options for ``faust.App``: where to listen, TLS, and Faust's own pages off."""
    return {"web_bind": settings.web_bind, "web_ssl_context": web_ssl_context(settings),
            "web_router_enabled": False, "web_tables_enabled": False, "web_stats_enabled": False,
            "web_graph_enabled": False, "web_metrics_enabled": False}


def analyst_limits(settings: WardenSettings) -> AnalystLimits:
    return AnalystLimits(max_execution_s=settings.analyst_max_execution_s,
                         max_result_rows=settings.analyst_max_result_rows,
                         max_result_bytes=settings.analyst_max_result_bytes,
                         max_memory_bytes=settings.analyst_max_memory_bytes)


def analyst_tables(settings: WardenSettings) -> frozenset[str] | None:
    return analyst_views() if settings.analyst_tables == "views" else None


def bearer_matches(header: str, token: str) -> bool:
    scheme, _, presented = header.partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def register_sql_page(app: faust.App, settings: WardenSettings,
                      store: Callable[[], ClickHouseStore]) -> None:
    token = check_web_exposure(settings)
    # Not the default executor: the sink agents write through that one, and a queue of
    # analyst queries must never delay a batch.
    executor = ThreadPoolExecutor(max_workers=MAX_ANALYST_REQUESTS, thread_name_prefix="analyst-sql")
    in_flight = 0
    pending: set[asyncio.Future[None]] = set()  # kill loops of abandoned queries (kept referenced)

    async def answer(view: Any, request: Any) -> Any:
        nonlocal in_flight
        if token is not None and not bearer_matches(request.headers.get("Authorization", ""), token):
            METRICS.analyst_queries.labels("unauthorized").inc()
            return view.json({"error": "missing or wrong bearer token (Authorization: Bearer ...)"},
                             status=401, headers={"WWW-Authenticate": 'Bearer realm="warden"'})
        try:
            target = store()
        except RuntimeError as exc:  # a govern-only worker holds no ClickHouse
            return view.json({"error": str(exc)}, status=503)
        query = request.query.get("q") or (await request.text())
        fmt = request.query.get("format", "JSONEachRow")
        if in_flight >= MAX_ANALYST_REQUESTS:
            METRICS.analyst_queries.labels("busy").inc()
            return view.json({"error": f"{in_flight} analyst queries are running; try again"}, status=503)
        in_flight += 1
        METRICS.analyst_in_flight.set(in_flight)
        try:
            return await _run(view, request, target, query, fmt)
        finally:
            in_flight -= 1
            METRICS.analyst_in_flight.set(in_flight)

    async def _run(view: Any, request: Any, target: ClickHouseStore, query: str, fmt: str) -> Any:
        loop = asyncio.get_running_loop()
        tag = uuid.uuid4().hex
        future = loop.run_in_executor(executor, lambda: target.query_readonly(query, fmt=fmt, tag=tag))
        try:
            while not future.done():
                await asyncio.wait({future}, timeout=DISCONNECT_POLL_S)
                transport = request.transport
                if not future.done() and (transport is None or transport.is_closing()):
                    # aiohttp does not cancel handlers when the client leaves
                    # (handler_cancellation is off), hence the polling.
                    await _cancel(target, tag)
                    # The kill can arrive before the query reaches ClickHouse's process list
                    # (the executor thread had not started it yet): then it ran on, for up
                    # to the execution limit, and the next analyst queued behind it. Seen in
                    # CI. Keep killing it until its thread returns.
                    killer = asyncio.ensure_future(_kill_until_done(target, tag, future))
                    pending.add(killer)
                    killer.add_done_callback(pending.discard)
                    return view.json({"error": "client went away; query cancelled"}, status=499)
            body = future.result()
        except asyncio.CancelledError:
            await asyncio.shield(_cancel(target, tag))
            raise
        except QueryRefused as exc:
            METRICS.analyst_queries.labels("refused").inc()
            return view.json({"error": str(exc)[:2000]}, status=400)
        except AnalystBusy as exc:
            METRICS.analyst_queries.labels("busy").inc()
            return view.json({"error": str(exc)}, status=503)
        except Exception as exc:  # the analyst sees ClickHouse's own message
            METRICS.analyst_queries.labels("error").inc()
            return view.json({"error": (str(exc).strip().splitlines() or [type(exc).__name__])[0][:2000]},
                             status=400)
        METRICS.analyst_queries.labels("ok").inc()
        return view.bytes(body, content_type="text/plain")

    async def _kill_until_done(target: ClickHouseStore, tag: str, future: Any) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(KILL_RETRIES):
            await asyncio.wait({future}, timeout=DISCONNECT_POLL_S * 5)
            if future.done():
                return
            await loop.run_in_executor(None, target.analyst().cancel, tag)
        log.warning("analyst_query_not_cancelled", tag=tag)

    async def _cancel(target: ClickHouseStore, tag: str) -> None:
        METRICS.analyst_queries.labels("cancelled").inc()
        log.info("analyst_query_cancelled", tag=tag)
        # The default executor: this pool may be full of the very queries being cancelled.
        await asyncio.get_running_loop().run_in_executor(None, target.analyst().cancel, tag)

    class SqlPage(View):
        async def get(self, request: Any) -> Any:
            return await answer(self, request)

        async def post(self, request: Any) -> Any:
            return await answer(self, request)

    app.page("/sql")(SqlPage)
