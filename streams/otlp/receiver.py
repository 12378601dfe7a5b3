"""``warden otlp serve``: an OTLP/HTTP receiver, ``POST /v1/traces``, for serving layers that
export OTLP themselves and have no Collector in front of Warden.

It only publishes. A valid export is produced, as protobuf, to the first OTLP topic
(``WARDEN_OTLP_TOPICS``), where the ingest agent maps it exactly like an export from the
Collector's ``kafka`` exporter. The reply waits for Kafka's acknowledgement, never for a
detector: a slow or stopped worker never slows the serving layer's exporter, and an export
answered 200 is durable.

Replies follow the OTLP specification ("OTLP/HTTP"): 200 with an ``ExportTraceServiceResponse``
in the request's encoding, whose ``partial_success`` counts spans without valid ids (they
could never be mapped, so they are not published); 400 for a body that is not an export;
401 without the bearer token; 413 past ``WARDEN_OTLP_HTTP_MAX_BODY_BYTES`` (before or after
decompression); 415 for other content types; 429 when the producer's buffer is full and 503
when Kafka does not acknowledge in time, both with ``Retry-After`` (retryable, so exporters
back off and send again). Error bodies are a ``google.rpc.Status``. Messages never quote
the body: it holds unredacted prompts.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import threading
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from confluent_kafka import KafkaError, Producer
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.code_pb2 import Code
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from streams.config import WardenSettings
from streams.otlp.agent import otlp_sources
from streams.otlp.decode import OtlpEncoding, UndecodableOtlp, decode_request

log = structlog.get_logger("warden.otlp.receiver")

CONTENT_TYPES = {"application/x-protobuf": OtlpEncoding.otlp_proto,
                 "application/json": OtlpEncoding.otlp_json}
RETRY_AFTER_S = 5
# librdkafka's local buffer: past it a request is answered 429 rather than queued.
BUFFER_KBYTES = 128 * 1024


class ReceiverConfigError(ValueError):
    """A setting that makes the receiver unsafe or unable to publish; it does not start."""


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address; any other bind needs the bearer token.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("otlp.internal")
    (True, True, False, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def receiver_topic(settings: WardenSettings) -> str:
    """The first OTLP topic: the receiver writes protobuf, so that topic must accept it."""
    topic, encoding = next(iter(otlp_sources(settings).items()), (None, None))
    if topic is None:
        raise ReceiverConfigError("WARDEN_OTLP_TOPICS is empty: the receiver publishes to its first topic")
    if encoding is OtlpEncoding.otlp_json:
        raise ReceiverConfigError(f"the receiver publishes protobuf, but the first OTLP topic {topic!r} is fixed "
                                  "to otlp_json: list a topic without an encoding (or =otlp_proto) first")
    return topic


class KafkaPublisher:
    """A producer whose deliveries resolve asyncio futures (a thread serves the callbacks, so
    the event loop never blocks in librdkafka)."""

    def __init__(self, settings: WardenSettings, topic: str) -> None:
        self.topic = topic
        self._producer = Producer({
            "bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, "compression.type": "lz4", "message.max.bytes": 20 * 1024 * 1024,
            "queue.buffering.max.kbytes": BUFFER_KBYTES,
            "message.timeout.ms": int(settings.otlp_http_publish_timeout_s * 1000),
            **settings.security.confluent()})
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="otlp-http-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def publish(self, value: bytes, key: bytes | None) -> asyncio.Future[None]:
        """Queue one message; the future settles on Kafka's answer. Raises ``BufferError``
        when the local buffer is full."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(err: KafkaError | None) -> None:
            if done.done():
                return
            if err is None:
                done.set_result(None)
            else:
                done.set_exception(RuntimeError(str(err)))

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            loop.call_soon_threadsafe(settle, err)

        self._producer.produce(self.topic, value=value, key=key, on_delivery=delivered)
        return done

    def close(self, timeout_s: float = 10.0) -> int:
        left = int(self._producer.flush(timeout_s))
        self._stop.set()
        self._poller.join(timeout_s)
        return left


def _reply(status: int, message: Message, encoding: OtlpEncoding,
           headers: dict[str, str] | None = None) -> web.Response:
    """A reply in the request's encoding, as the specification asks."""
    if encoding is OtlpEncoding.otlp_json:
        return web.Response(status=status, headers=headers, content_type="application/json",
                            text=json_format.MessageToJson(message, indent=None))
    return web.Response(status=status, headers=headers, content_type="application/x-protobuf",
                        body=message.SerializeToString())


def _error(status: int, code: int, text: str, encoding: OtlpEncoding, retry: bool = False) -> web.Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    return _reply(status, Status(code=code, message=text), encoding, headers)


def without_invalid_ids(export: ExportTraceServiceRequest) -> int:
    """Drop spans whose ids are not 16 and 8 bytes (the ingest stage could never map them);
    returns how many went. Empty scopes and resources are dropped with them."""
    rejected = 0
    for resource_spans in export.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            keep = [s for s in scope_spans.spans if len(s.trace_id) == 16 and len(s.span_id) == 8]
            rejected += len(scope_spans.spans) - len(keep)
            if len(keep) != len(scope_spans.spans):
                del scope_spans.spans[:]
                scope_spans.spans.extend(keep)
    if rejected:
        for resource_spans in export.resource_spans:
            kept = [ss for ss in resource_spans.scope_spans if ss.spans]
            del resource_spans.scope_spans[:]
            resource_spans.scope_spans.extend(kept)
        kept_resources = [rs for rs in export.resource_spans if rs.scope_spans]
        del export.resource_spans[:]
        export.resource_spans.extend(kept_resources)
    return rejected


def _key(export: ExportTraceServiceRequest) -> bytes | None:
    """The first span's trace id: an exporter's retry of the same export lands on the same
    partition, so the ingest worker that saw it recognises its spans as duplicates."""
    for resource_spans in export.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                return bytes(span.trace_id).hex().encode()
    return None


def check_settings(settings: WardenSettings) -> str:
    """The topic the receiver writes; raises :class:`ReceiverConfigError` for a bind off
    loopback without a token (whoever can post spans chooses what Warden stores and which
    breakers trip) or for no usable topic."""
    token = settings.otlp_http_token.get_secret_value() if settings.otlp_http_token else None
    if not token and not is_loopback(settings.otlp_http_host):
        raise ReceiverConfigError(
            f"the OTLP receiver bound to {settings.otlp_http_host} needs WARDEN_OTLP_HTTP_TOKEN (clients "
            "send 'Authorization: Bearer <token>'); or bind it to 127.0.0.1")
    return receiver_topic(settings)


def create_receiver(settings: WardenSettings, publisher: KafkaPublisher | None = None) -> web.Application:
    """The aiohttp application. Raises :class:`ReceiverConfigError` (see :func:`check_settings`)."""
    topic = check_settings(settings)
    token = settings.otlp_http_token.get_secret_value() if settings.otlp_http_token else None
    expected = f"Bearer {token}".encode() if token else None
    limit = settings.otlp_http_max_body_bytes
    too_big = f"body over {limit} bytes: lower the exporter's batch size"
    # aiohttp decompresses gzip/deflate bodies as it reads them and stops past this size.
    app = web.Application(client_max_size=limit)
    kafka = publisher or KafkaPublisher(settings, topic)

    async def traces(request: web.Request) -> web.Response:
        encoding = CONTENT_TYPES.get(request.content_type)
        if encoding is None:
            return web.Response(status=415, text="use Content-Type application/x-protobuf or application/json")
        if expected is not None and not hmac.compare_digest(
                request.headers.get("Authorization", "").encode("utf-8", "replace"), expected):
            return _error(401, Code.UNAUTHENTICATED, "missing or wrong bearer token", encoding)
        if (request.content_length or 0) > limit:
            return _error(413, Code.RESOURCE_EXHAUSTED, too_big, encoding)
        try:
            body = await request.read()
        except (web.HTTPRequestEntityTooLarge, web.RequestPayloadError, HttpProcessingError) as exc:
            # The rest of the body stays unread (or cannot be read: a corrupt gzip stream), so
            # the connection cannot carry another request.
            reply = (_error(413, Code.RESOURCE_EXHAUSTED, f"{too_big} (decompressed)", encoding)
                     if isinstance(exc, web.HTTPRequestEntityTooLarge) else
                     _error(400, Code.INVALID_ARGUMENT, f"body cannot be read: {str(exc)[:200]}", encoding))
            reply.force_close()
            return reply
        try:
            export = decode_request(body, encoding)
        except UndecodableOtlp as exc:
            return _error(400, Code.INVALID_ARGUMENT, str(exc)[:1000], encoding)
        response = ExportTraceServiceResponse()
        rejected = without_invalid_ids(export)
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = "spans need a 16-byte trace_id and an 8-byte span_id"
        if not export.resource_spans:
            return _reply(200, response, encoding)
        try:
            delivery = kafka.publish(export.SerializeToString(), _key(export))
        except BufferError:
            return _error(429, Code.UNAVAILABLE, "Warden's Kafka buffer is full: retry later", encoding, retry=True)
        try:
            # librdkafka's message timeout settles the future first; this bound is a backstop.
            await asyncio.wait_for(delivery, settings.otlp_http_publish_timeout_s + 5)
        except (RuntimeError, TimeoutError) as exc:
            log.warning("otlp_http_publish_failed", error=str(exc)[:300])
            return _error(503, Code.UNAVAILABLE, "Kafka unavailable: retry later", encoding, retry=True)
        return _reply(200, response, encoding)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def close(app_: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, kafka.close)

    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/healthz", healthz)
    app.on_cleanup.append(close)
    return app


def serve(settings: WardenSettings) -> None:
    """Run until SIGINT/SIGTERM; on the way out, flush what Kafka has not acknowledged."""
    app = create_receiver(settings)
    log.info("otlp_http_receiver_starting", host=settings.otlp_http_host, port=settings.otlp_http_port,
             topic=check_settings(settings), auth=settings.otlp_http_token is not None)
    web.run_app(app, host=settings.otlp_http_host, port=settings.otlp_http_port, print=None,
                handle_signals=True)
