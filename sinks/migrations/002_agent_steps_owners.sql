-- Agent steps (one row per tool call) and the ownership registry.
--
-- traces.refused: 1 when the model declined (finish reason content_filter or a refusal
-- text); the worker fills it, older rows read 0.
-- tool_calls is filled by a materialized view from every insert into traces, so it
-- needs no writer of its own. Like traces it is a ReplacingMergeTree on the call's own
-- identity (trace, span, position), and it keeps non_replicated_deduplication_window so
-- a retried batch (same insert_deduplication_token) is dropped here too: ClickHouse
-- derives the view's block token from the source block's
-- (deduplicate_blocks_in_dependent_materialized_views, on by default).
-- Arguments and results are the redacted text the worker stored in traces.tool_calls.

ALTER TABLE traces ADD COLUMN IF NOT EXISTS refused UInt8 DEFAULT 0;

CREATE TABLE IF NOT EXISTS tool_calls
(
    trace_id String,
    span_id String,
    parent_span_id Nullable(String),
    timestamp DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    application LowCardinality(String),
    route LowCardinality(String),
    model LowCardinality(String),
    call_index UInt16,
    tool_name LowCardinality(String),
    status LowCardinality(String),
    arguments String CODEC(ZSTD(3)),
    result String CODEC(ZSTD(3)),
    ingested_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (tenant, route, tool_name, timestamp, trace_id, span_id, call_index)
TTL toDateTime(timestamp) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS tool_calls_mv TO tool_calls AS
SELECT
    trace_id, span_id, parent_span_id, timestamp, tenant, application, route, model,
    toUInt16(call_number - 1) AS call_index,
    JSONExtractString(call, 'name') AS tool_name,
    JSONExtractString(call, 'status') AS status,
    if(JSONType(call, 'arguments') = 'String', JSONExtractString(call, 'arguments'),
       JSONExtractRaw(call, 'arguments')) AS arguments,
    if(JSONType(call, 'result') = 'String', JSONExtractString(call, 'result'),
       JSONExtractRaw(call, 'result')) AS result,
    ingested_at
FROM traces
ARRAY JOIN JSONExtractArrayRaw(tool_calls) AS call, arrayEnumerate(JSONExtractArrayRaw(tool_calls)) AS call_number;

-- One row per (registry version, kind, pattern): the registry file flattened
-- (sinks.owners.registry_records). Kept for every version, so "who owned X on day D"
-- has an answer; owners_current is the version loaded last.
CREATE TABLE IF NOT EXISTS owners
(
    registry_version LowCardinality(String),
    kind LowCardinality(String),
    pattern String,
    team LowCardinality(String),
    oncall String,
    contact String,
    loaded_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY (registry_version, kind, pattern)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE VIEW IF NOT EXISTS owners_current AS
SELECT registry_version, kind, pattern, team, oncall, contact, loaded_at
FROM owners FINAL
WHERE registry_version = (SELECT argMax(registry_version, loaded_at) FROM owners);
