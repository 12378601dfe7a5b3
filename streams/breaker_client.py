"""``BreakerClient``: serving's local view of the compacted breaker topic.

It reads the topic from the beginning (the compacted log *is* the current state), then
follows it in a background thread. ``allow(target)`` is a dictionary lookup: no network,
no lock on the read path. When the broker cannot be reached the last known state is kept
and ``staleness_s`` grows; past ``stale_after_s`` the configured fail mode applies.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from streams.config import KafkaSecurity, WardenSettings
from streams.guard.signing import MALFORMED, RecordVerifier, Unauthenticated, parse_public_keys
from streams.records import BreakerSignal, BreakerState

log = structlog.get_logger("warden.breaker_client")

FailMode = Literal["last_known", "open", "closed"]


class BreakerClient:
    """Follow breaker signals and answer ``allow(target)`` locally.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers.
    topic
        The breaker topic, by default ``warden.breaker.v1``.
    stale_after_s
        Seconds without contact with the broker after which ``fail_mode`` applies.
    fail_mode
        ``"last_known"`` keeps answering from the last state, ``"open"`` allows all
        traffic (fail open), ``"closed"`` refuses all traffic (fail closed).
    verifier
        Public keys of the Warden workers (``streams.guard.signing``, built from settings by
        :func:`worker_verifier`). With one, a record that is unsigned, signed by an unknown
        key, forged, published under another target's key or older than the target's
        current record is ignored, counted in ``rejected`` by reason, logged, and kept in
        ``last_rejection``: anyone who can write the topic could otherwise open a breaker.
        Without one every well-formed record is trusted (compatibility; docs/SECURITY.md).
    """

    def __init__(self, bootstrap: str, topic: str = "warden.breaker.v1", *,
                 stale_after_s: float = 30.0, fail_mode: FailMode = "last_known",
                 security: KafkaSecurity | None = None, rng: random.Random | None = None,
                 verifier: RecordVerifier | None = None):
        self.topic = topic
        self.stale_after_s = stale_after_s
        self.fail_mode: FailMode = fail_mode
        self._states: dict[str, BreakerSignal] = {}
        self._rng = rng or random.Random()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._last_contact = time.monotonic()
        self.updates_seen = 0
        self.invalid_records = 0
        self.apply_errors = 0  # records whose handling raised (skipped; the thread goes on)
        self.verifier = verifier if verifier else None
        self.rejected: dict[str, int] = {}
        self.last_rejection = ""
        self.on_update: list[Any] = []
        self._conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": f"warden-breaker-client-{id(self)}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
            "socket.keepalive.enable": True,
            "reconnect.backoff.max.ms": 1000,
            **(security or KafkaSecurity()).confluent(),
        }
        self._thread = threading.Thread(target=self._run, name="breaker-client", daemon=True)

    # -- lifecycle -------------------------------------------------------------------
    def start(self, wait_s: float | None = 30.0) -> BreakerClient:
        """Start following; by default block until the compacted history is loaded."""
        self._thread.start()
        if wait_s is not None and not self._ready.wait(wait_s):
            raise TimeoutError(f"breaker topic {self.topic} not loaded within {wait_s} s: "
                               "is Kafka reachable at the configured bootstrap servers?")
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> BreakerClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the read path -----------------------------------------------------------------
    @property
    def staleness_s(self) -> float:
        """Seconds since the broker last answered (0 while connected)."""
        return max(0.0, time.monotonic() - self._last_contact)

    @property
    def stale(self) -> bool:
        return self.staleness_s > self.stale_after_s

    def state(self, target: str) -> BreakerSignal | None:
        """The current record for ``target`` (state, reason, fallback hint), or None."""
        return self._states.get(target)

    def states(self) -> Mapping[str, BreakerSignal]:
        return dict(self._states)

    def allow(self, target: str) -> bool:
        """May a request go to ``target`` now? Half-open lets a share through as probes."""
        if self.fail_mode != "last_known" and self.stale:
            return self.fail_mode == "open"
        signal = self._states.get(target)
        if signal is None or signal.state is BreakerState.closed:
            return True
        if signal.state is BreakerState.open:
            return False
        return self._rng.random() < signal.probe_share

    # -- the follower thread -----------------------------------------------------------
    def _run(self) -> None:
        consumer = Consumer(self._conf)
        try:
            metadata = consumer.list_topics(self.topic, timeout=30)
            partitions = sorted(metadata.topics[self.topic].partitions) or [0]
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            pending_eof = set(partitions)
            last_probe = 0.0
            while not self._stop.is_set():
                msg = consumer.poll(0.05)
                now = time.monotonic()
                if msg is not None:
                    self._last_contact = now
                    err = msg.error()
                    if err is None:
                        self._apply_guarded(msg.key(), msg.value())
                    elif err.code() == KafkaError._PARTITION_EOF:
                        pending_eof.discard(msg.partition())
                        if not pending_eof:
                            self._ready.set()
                if now - last_probe > 1.0:
                    last_probe = now
                    self._probe(consumer, partitions[0])
        finally:
            consumer.close()

    def _apply_guarded(self, key: bytes | None, value: bytes | None) -> None:
        # This thread is serving's only view of the breakers: an unexpected error on one
        # record (even a failed log write) is counted and skipped, never the end of it.
        try:
            self._apply(key, value)
        except Exception:  # noqa: BLE001 - see above
            self.apply_errors += 1

    def _probe(self, consumer: Consumer, partition: int) -> None:
        # A round trip to the broker proves we are connected even when nothing changes.
        try:
            consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=1.0, cached=False)
            self._last_contact = time.monotonic()
        except Exception:  # unreachable: staleness grows, the last state stays
            pass

    def _reject(self, reason: str, detail: str) -> None:
        from streams.metrics import METRICS

        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.last_rejection = f"{reason}: {detail}"[:300]
        METRICS.control_rejected.labels("breaker_client", reason).inc()
        log.warning("breaker_signal_rejected", topic=self.topic, reason=reason, detail=detail[:300])

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # tombstone: the target was released
            if key and self.verifier is None:  # unsigned: with a verifier, only a signed record moves state
                self._states.pop(key.decode("utf-8", "replace"), None)
            elif key:
                self._reject("unsigned", f"tombstone for {key.decode('utf-8', 'replace')[:128]!r} ignored")
            return
        try:
            record = json.loads(value)
            if self.verifier is not None:
                if not isinstance(record, dict):
                    raise Unauthenticated(MALFORMED, "not a JSON object")
                self.verifier.verify(record)
            signal = BreakerSignal.model_validate(record)
        except Unauthenticated as exc:
            self._reject(exc.reason, str(exc))
            return
        except (ValueError, ValidationError):
            self.invalid_records += 1
            return
        if self.verifier is not None:
            # A signed record replayed under another target's key, or an old one written
            # again, must not move a target's state.
            if key is not None and key.decode("utf-8", "replace") != signal.target:
                self._reject("wrong_key", f"record for {signal.target[:128]!r} published under another key")
                return
            current = self._states.get(signal.target)
            if current is not None and signal.at < current.at:
                self._reject("stale", f"record for {signal.target[:128]!r} older than the current one")
                return
        self._states[signal.target] = signal
        self.updates_seen += 1
        for callback in self.on_update:
            callback(signal)


def worker_verifier(settings: WardenSettings) -> RecordVerifier | None:
    """The workers' public keys (``WARDEN_WORKER_PUBLIC_KEYS``) as serving's verifier, or
    None when none is configured (then the client trusts every record)."""
    keys = parse_public_keys(settings.worker_public_keys, "WARDEN_WORKER_PUBLIC_KEYS")
    return RecordVerifier(keys) if keys else None
