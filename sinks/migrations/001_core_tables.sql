-- Core tables. Every table deduplicates on the record's own id (ReplacingMergeTree), so
-- a batch replayed from Kafka after a crash never counts twice; a retried identical batch
-- is also dropped at insert time by its insert_deduplication_token.
-- Query with FINAL for exact counts. dead_letters keeps the reason, size and sha256 of the
-- original bytes, never the bytes: they are unredacted and stay in the dead-letter topic.

CREATE TABLE IF NOT EXISTS traces
(
    trace_id String,
    span_id String,
    parent_span_id Nullable(String),
    timestamp DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    application LowCardinality(String),
    route LowCardinality(String),
    principal Nullable(String),
    roles Array(LowCardinality(String)),
    provider LowCardinality(String),
    operation LowCardinality(String),
    request_model LowCardinality(String),
    response_model LowCardinality(String),
    model LowCardinality(String),
    deployment LowCardinality(String),
    region LowCardinality(String),
    model_version LowCardinality(String),
    system_fingerprint LowCardinality(String),
    prompt_template_id LowCardinality(String),
    prompt_template_version LowCardinality(String),
    guardrail_policy_version LowCardinality(String),
    retrieval_index_version LowCardinality(String),
    toolset_version LowCardinality(String),
    input_messages String CODEC(ZSTD(3)),
    output_messages String CODEC(ZSTD(3)),
    tool_calls String CODEC(ZSTD(3)),
    tool_names Array(LowCardinality(String)),
    input_tokens UInt32,
    output_tokens UInt32,
    cached_input_tokens UInt32,
    finish_reasons Array(LowCardinality(String)),
    ttft_ms Nullable(Float32),
    latency_ms Float32,
    status LowCardinality(String),
    error_type LowCardinality(String),
    error_message String CODEC(ZSTD(3)),
    cost_usd Nullable(Float64),
    attempt UInt16,
    data_classification LowCardinality(String),
    metadata Map(String, String) CODEC(ZSTD(3)),
    redaction_policy_version LowCardinality(String),
    redaction_counts Map(LowCardinality(String), UInt32),
    redaction_findings String CODEC(ZSTD(3)),
    kafka_partition UInt16,
    kafka_offset UInt64,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (tenant, route, model, timestamp, trace_id, span_id)
TTL toDateTime(timestamp) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS findings
(
    finding_id String,
    kind LowCardinality(String),
    severity LowCardinality(String),
    at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    route LowCardinality(String),
    model LowCardinality(String),
    subject Map(String, String),
    score Float64,
    threshold Float64,
    detector LowCardinality(String),
    config_version LowCardinality(String),
    evidence String CODEC(ZSTD(3)),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(at)
ORDER BY (kind, at, finding_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String,
    kind LowCardinality(String),
    severity LowCardinality(String),
    tenant LowCardinality(String),
    route LowCardinality(String),
    model LowCardinality(String),
    summary String,
    evidence String CODEC(ZSTD(3)),
    finding_ids Array(String),
    owner LowCardinality(String),
    oncall LowCardinality(String),
    runbook String,
    dedup_key String,
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC'),
    count UInt32,
    config_version LowCardinality(String),
    created_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(last_seen)
PARTITION BY toYYYYMM(first_seen)
ORDER BY (alert_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS breaker_events
(
    signal_id String,
    target String,
    state LowCardinality(String),
    reason String,
    finding_ids Array(String),
    evidence String CODEC(ZSTD(3)),
    policy_version LowCardinality(String),
    probe_share Float32,
    fallback Nullable(String),
    operator Nullable(String),
    at DateTime64(3, 'UTC'),
    expires_at Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (target, at, signal_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS change_events
(
    event_id String,
    component_kind LowCardinality(String),
    component_id String,
    old_version Nullable(String),
    new_version String,
    owner LowCardinality(String),
    at DateTime64(3, 'UTC'),
    scope_routes Array(String),
    scope_tenants Array(String),
    link String,
    source LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (component_kind, component_id, at, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS dead_letters
(
    source_topic LowCardinality(String),
    partition Int32,
    offset Int64,
    key Nullable(String),
    reason String,
    error_kind LowCardinality(String),
    original_bytes UInt64,
    original_sha256 String,
    received_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (source_topic, partition, offset)
SETTINGS non_replicated_deduplication_window = 1000;
