"""One typed settings object, built once at start and passed down.

Read from the environment (``WARDEN_*``; ``KAFKA_BOOTSTRAP`` and ``CLICKHOUSE_DSN`` are
accepted unprefixed because the test fixtures and docker-compose use them) and from CLI
options. No other module reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "deploy" / "config"


class KafkaSecurity(BaseSettings):
    """TLS and SASL for the Kafka clients; all optional (plaintext on loopback by default)."""

    model_config = SettingsConfigDict(env_prefix="WARDEN_KAFKA_", extra="ignore")
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def confluent(self) -> dict[str, str]:
        """Options for confluent-kafka clients (librdkafka names)."""
        conf: dict[str, str] = {"security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        if self.ssl_certfile:
            conf["ssl.certificate.location"] = self.ssl_certfile
        if self.ssl_keyfile:
            conf["ssl.key.location"] = self.ssl_keyfile
        return conf


class WardenSettings(BaseSettings):
    """Everything a worker, the CLI or a test needs to know about its surroundings."""

    model_config = SettingsConfigDict(env_prefix="WARDEN_", extra="ignore")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "WARDEN_KAFKA_BOOTSTRAP"),
    )
    clickhouse_dsn: str = Field(
        default=f"chdb://{REPO_ROOT / 'var' / 'clickhouse'}",
        validation_alias=AliasChoices("CLICKHOUSE_DSN", "WARDEN_CLICKHOUSE_DSN"),
    )
    topic_prefix: str = "warden"
    app_id: str = "warden"
    partitions: int = 4
    # Copies of every topic Warden creates (its own and its tables' changelogs), and how many
    # must hold a write before it counts (producers send with acks=all): 1 on one broker; 3
    # on a cluster, where min.insync.replicas defaults to 2 so one broker can be lost without
    # losing data or refusing writes (docs/SCALING.md, "A replicated Kafka cluster").
    kafka_replication_factor: int = Field(default=1, ge=1, le=7)
    kafka_min_insync_replicas: int | None = Field(default=None, ge=1, le=7)
    raw_retention_hours: float = 24.0
    # How long the group waits for a silent member before its partitions move: the failover
    # time after a worker dies without leaving (kill -9, a lost host). Heartbeats run on the
    # worker's event loop, so a loop stalled longer than this costs a rebalance.
    kafka_session_timeout_s: float = Field(default=30.0, ge=6.0, le=300.0)
    kafka_heartbeat_interval_s: float = Field(default=3.0, gt=0.0, le=30.0)
    # Faust web server: metrics, health and read-only SQL for analysts. web_host names the
    # URL clients use; web_bind is the interface it listens on (loopback unless a query
    # token is set: streams/query_endpoint.py, docs/SECURITY.md "Query port").
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    # Bearer token for /sql (required when web_bind is not loopback), or a file holding it.
    query_token: SecretStr | None = None
    query_token_file: Path | None = None
    # Optional TLS for the web server (PEM certificate chain and key).
    web_tls_certfile: Path | None = None
    web_tls_keyfile: Path | None = None
    # With a server DSN, analysts' SQL logs in as this read-only user rather than the writer's.
    analyst_clickhouse_dsn: SecretStr | None = None
    # Limits of every analyst query; fixed on the session, a query cannot raise them.
    analyst_max_execution_s: int = Field(default=30, ge=1, le=3600)
    analyst_max_result_rows: int = Field(default=10_000, ge=1)
    analyst_max_result_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    analyst_max_memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=16 * 1024 * 1024)
    # What analyst SQL may read: "all" tables, or only the analyst "views" (the warden_analyst
    # role's grants; a server enforces those itself, chDB has no grants).
    analyst_tables: Literal["all", "views"] = "all"
    data_dir: Path = REPO_ROOT / "var" / "worker"
    sink_batch_size: int = 2000
    # The drift encoder is throughput work sharing CPUs with the breaker's latency path:
    # torch threads it may use, and the OS priority (nice) of the thread that runs it.
    drift_threads: int = Field(default=1, ge=1)
    drift_nice: int = Field(default=10, ge=0, le=19)
    sink_batch_seconds: float = 1.0
    commit_interval_s: float = 1.0
    # Longest a consumer fetch waits at the broker for data (streams/kafka_transport.py):
    # bounds what a quiet partition adds to the breaker's reaction time.
    fetch_max_wait_ms: int = Field(default=20, ge=1, le=1500)
    # How often the economics agent writes its state (every open agent run) to its table;
    # usage records since the last write are replayed after a crash.
    economics_checkpoint_s: float = Field(default=5.0, gt=0, le=300)
    config_dir: Path = CONFIG_DIR
    # Which agents this worker runs: "all", or "govern" (validate/redact/score, scales
    # out), or "sink" (owns ClickHouse; one process with the embedded engine).
    role: Literal["all", "govern", "sink", "drift", "ingest"] = "all"
    # Whether --role govern workers also run the drift agent; false when --role drift
    # workers (their own consumer group) run it.
    govern_drift: bool = True
    log_level: str = "INFO"
    pseudonym_key: SecretStr | None = None
    # Names, places and organisations by spaCy NER in the redactor (detectors/redaction/ner.py).
    # Off by default: on the CPU it costs ~30x the patterns per trace, on the event loop
    # (docs/REDACTION.md, "Cost"); announced names and street addresses are found without it.
    # WARDEN_NER=on loads it; the policy's `disabled` list turns single entities off.
    ner: bool = False
    # Cardinality caps (streams/cardinality.py, docs/SECURITY.md "Cardinality"): route and
    # model are producer-chosen, so the (route, model) scopes holding detector state are
    # capped per worker, per route and per tenant; beyond them a trace is stored and
    # redacted but updates no detector. Decoded detectors idle scope_idle_s leave memory (the
    # table keeps them); at the cap a scope idle scope_reclaim_s gives its slot; a scope idle
    # scope_ttl_s is deleted (a changelog tombstone) even below the cap.
    scope_max_total: int = Field(default=5_000, ge=1)
    scope_max_per_route: int = Field(default=64, ge=1)
    scope_max_per_tenant: int = Field(default=2_000, ge=1)
    scope_idle_s: float = Field(default=600.0, gt=0)
    scope_reclaim_s: float = Field(default=900.0, gt=0)
    scope_ttl_s: float = Field(default=86_400.0, gt=0)
    # At most one cardinality.scope_cap finding (and log line) per this many seconds.
    scope_alert_every_s: float = Field(default=60.0, gt=0)
    # Ed25519 seed (64 hex digits, or a file holding them) that signs audit checkpoints;
    # unsigned when absent. Verifiers need only the public half (docs/AUDIT.md "Keys").
    audit_signing_key: SecretStr | None = None
    audit_public_key: str | None = None  # 64 hex digits or a file: what `warden audit verify` checks with
    audit_checkpoint_every: int = Field(default=1000, ge=1)
    # A partition's newest records get a signed checkpoint at most this long after they were
    # appended, however few they are (a quiet chain, such as the overrides', is signed too).
    audit_checkpoint_interval_s: float = Field(default=10.0, gt=0.0, le=3600.0)
    # Control records (docs/SECURITY.md "Control records"): this process's Ed25519 seed (64
    # hex digits or a file) signs the findings and breaker signals a worker writes, or the
    # overrides an operator's CLI sends, under the name signal_key_name.
    signal_key: SecretStr | None = None
    signal_key_name: str = "warden"
    # Trusted public keys, name=hex,... (or a file, one per line): workers' for findings and
    # breaker signals, operators' for overrides. With any key trusted, decide, the sinks and
    # BreakerClient reject what no trusted key signed.
    worker_public_keys: str = ""
    operator_public_keys: str = ""
    # Producer event time is bounded by the worker's clock (streams/guard/clock.py): at most
    # this far ahead of receive time (clock skew between producers and workers) ...
    event_time_skew_s: float = Field(default=300.0, ge=0.0, le=86_400.0)
    # ... and at most this far behind it (late backfill); below the traces table's 30-day
    # TTL, so a clamped trace is still stored rather than dropped at the next merge.
    event_time_max_age_s: float = Field(default=7 * 86_400.0, ge=60.0, le=25 * 86_400.0)
    # A governed (redacted) trace larger than this is dead-lettered, not sent: below the
    # producer's and broker's 20 MiB message limit, which would fail the whole batch.
    max_output_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=20 * 1024 * 1024)
    # Distinct ClickHouse partitions one insert may touch (ClickHouse refuses more than
    # max_partitions_per_insert_block, 100 by default).
    sink_max_partitions: int = Field(default=50, ge=1, le=100)
    # Fault-injection hook (tests, game days): ClickHouse writes fail while this file exists.
    sink_outage_file: Path | None = None
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    # OTLP ingest (streams/otlp, README "OpenTelemetry GenAI spans"): topics the Collector's
    # kafka exporter writes, each "name" (encoding recognised from the bytes) or
    # "name=otlp_proto|otlp_json"; not prefixed, since the Collector owns them. Read by
    # --role all and --role ingest workers. WARDEN_OTLP_TOPICS is a JSON list.
    otlp_topics: list[str] = Field(default_factory=lambda: ["otlp_spans"])
    otlp_mapping_file: Path | None = None  # default: config_dir / otlp-mapping.yaml
    # `warden otlp serve` (streams/otlp/receiver.py): OTLP/HTTP POST /v1/traces, published
    # to the first OTLP topic. Loopback by default; any other bind needs the bearer token,
    # since whoever can post spans chooses what Warden stores and what trips breakers.
    otlp_http_host: str = "127.0.0.1"
    otlp_http_port: int = Field(default=4318, ge=0, le=65535)
    otlp_http_token: SecretStr | None = None
    # Largest body, compressed or not (the exporter's batch size bounds it); below the
    # producer's 20 MiB message limit.
    otlp_http_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    # How long a request waits for Kafka's acknowledgement before answering 503.
    otlp_http_publish_timeout_s: float = Field(default=15.0, gt=0, le=300)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    @property
    def min_insync_replicas(self) -> int:
        """Replicas that must hold a write: as set, else 2 with three or more copies (one
        broker may be down), else all of them."""
        if self.kafka_min_insync_replicas is not None:
            return self.kafka_min_insync_replicas
        return 2 if self.kafka_replication_factor >= 3 else self.kafka_replication_factor

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> WardenSettings:
        if self.min_insync_replicas > self.kafka_replication_factor:
            raise ValueError(
                f"WARDEN_KAFKA_MIN_INSYNC_REPLICAS={self.min_insync_replicas} exceeds "
                f"WARDEN_KAFKA_REPLICATION_FACTOR={self.kafka_replication_factor}: every write "
                "would be refused; lower it or add replicas")
        return self

    def replicated_topic_config(self) -> dict[str, str]:
        """Topic settings every topic Warden creates carries (with its replication factor)."""
        return {"min.insync.replicas": str(self.min_insync_replicas)}

    @property
    def otlp_mapping_path(self) -> Path:
        return self.otlp_mapping_file or self.config_dir / "otlp-mapping.yaml"

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb://")
