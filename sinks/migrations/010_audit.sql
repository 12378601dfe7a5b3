-- Tamper-evident audit log (docs/AUDIT.md). Plain MergeTree, NOT ReplacingMergeTree: a
-- second row with the same key is evidence to keep, not a duplicate to merge away.
-- Idempotency lives in sinks.audit.AuditLog.append (it looks up a batch's record ids
-- before appending). Rows are never updated; verification recomputes every hash.
-- Retention: the audit data class keeps 6 years (TTL on the append time, never on the
-- decision time a caller supplied). Checkpoints are a few hundred bytes per 1000 records
-- and carry the Merkle frontier that lets verification resume after old rows expired, so
-- they have no TTL.

CREATE TABLE IF NOT EXISTS audit_log
(
    partition LowCardinality(String),
    seq UInt64,
    record_id String,
    kind LowCardinality(String),
    at DateTime64(6, 'UTC'),
    payload String CODEC(ZSTD(3)),
    prev_hash String,
    record_hash String,
    appended_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX record_id_bloom record_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = MergeTree
ORDER BY (partition, seq)
TTL toDateTime(appended_at) + INTERVAL 6 YEAR;

CREATE TABLE IF NOT EXISTS audit_checkpoints
(
    partition LowCardinality(String),
    from_seq UInt64,
    to_seq UInt64,
    root String,
    frontier Array(String),
    head_hash String,
    first_at DateTime64(6, 'UTC'),
    last_at DateTime64(6, 'UTC'),
    created_at DateTime64(3, 'UTC'),
    key_id String,
    signature String
)
ENGINE = MergeTree
ORDER BY (partition, to_seq);
