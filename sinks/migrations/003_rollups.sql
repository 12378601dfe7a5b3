-- Per-minute rollups for dashboards and analysts (docs/ANALYSTS.md).
--
-- Materialized views turn every insert into traces / findings into partial aggregates
-- (-State) per minute and scope; AggregatingMergeTree merges them in the background and
-- the *_v views finish them (-Merge). Keys follow the common questions: by tenant,
-- application, route, model, over time.
--
-- How the rollups stay right under replays. A view sees every insert, not the
-- deduplicated table, so:
--  * a retried identical batch (same insert_deduplication_token, what the sink sends
--    after a failed or unacknowledged write) is dropped in the rollup too: the target
--    keeps non_replicated_deduplication_window and ClickHouse derives the view's block
--    token from the source's (deduplicate_blocks_in_dependent_materialized_views = 1,
--    the default). Replicated tables do the same with replicated_deduplication_window.
--  * a batch re-cut differently after a crash (some records sent twice in batches with
--    different tokens) is collapsed by traces' ReplacingMergeTree but counted twice
--    here. Exact figures come from the raw tables with FINAL; rollups are the fast,
--    possibly slightly high path. tests/test_schema_rollups.py shows both cases.

CREATE TABLE IF NOT EXISTS traces_per_minute
(
    minute DateTime('UTC'),
    tenant LowCardinality(String),
    application LowCardinality(String),
    route LowCardinality(String),
    model LowCardinality(String),
    requests AggregateFunction(count),
    errors AggregateFunction(countIf, UInt8),
    refusals AggregateFunction(countIf, UInt8),
    latency_ms_quantiles AggregateFunction(quantiles(0.5, 0.95, 0.99), Float32),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cached_input_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, application, route, model, minute)
TTL minute + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS traces_per_minute_mv TO traces_per_minute AS
SELECT
    toStartOfMinute(timestamp) AS minute,
    tenant, application, route, model,
    countState() AS requests,
    countIfState(status = 'error') AS errors,
    countIfState(refused = 1) AS refusals,
    quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms_quantiles,
    sum(toUInt64(input_tokens)) AS input_tokens,
    sum(toUInt64(output_tokens)) AS output_tokens,
    sum(toUInt64(cached_input_tokens)) AS cached_input_tokens,
    sum(ifNull(cost_usd, 0)) AS cost_usd
FROM traces
GROUP BY minute, tenant, application, route, model;

CREATE VIEW IF NOT EXISTS traces_per_minute_v AS
SELECT
    minute, tenant, application, route, model,
    countMerge(requests) AS requests,
    countIfMerge(errors) AS errors,
    errors / requests AS error_rate,
    countIfMerge(refusals) AS refusals,
    refusals / requests AS refusal_rate,
    quantilesMerge(0.5, 0.95, 0.99)(latency_ms_quantiles) AS latency_ms_q,
    latency_ms_q[1] AS latency_ms_p50,
    latency_ms_q[2] AS latency_ms_p95,
    latency_ms_q[3] AS latency_ms_p99,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(cost_usd) AS cost_usd
FROM traces_per_minute
GROUP BY minute, tenant, application, route, model;

CREATE TABLE IF NOT EXISTS findings_per_minute
(
    minute DateTime('UTC'),
    tenant LowCardinality(String),
    route LowCardinality(String),
    model LowCardinality(String),
    kind LowCardinality(String),
    severity LowCardinality(String),
    findings AggregateFunction(count),
    max_score SimpleAggregateFunction(max, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, route, model, kind, severity, minute)
TTL minute + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS findings_per_minute_mv TO findings_per_minute AS
SELECT
    toStartOfMinute(at) AS minute,
    tenant, route, model, kind, severity,
    countState() AS findings,
    max(score) AS max_score
FROM findings
GROUP BY minute, tenant, route, model, kind, severity;

CREATE VIEW IF NOT EXISTS findings_per_minute_v AS
SELECT
    minute, tenant, route, model, kind, severity,
    countMerge(findings) AS findings,
    max(max_score) AS max_score
FROM findings_per_minute
GROUP BY minute, tenant, route, model, kind, severity;
