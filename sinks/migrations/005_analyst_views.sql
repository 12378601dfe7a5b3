-- Analyst-safe views: what the warden_analyst role may read (on a server it is granted
-- SELECT on these views and the rollups only: sinks/migrations/server/).
--
-- Pseudonym keys are never stored anywhere (the worker holds the key in memory only).
-- These views also leave out what links a record to a person even in pseudonymised form
-- or free text that could carry it: principal, roles, message and tool-call text, error
-- messages, metadata, where entities were found, dead-letter source keys. What stays is
-- scope, versions, numbers, statuses and tool names: enough for cost, latency, error,
-- ownership and agent-run questions (docs/ANALYSTS.md). Views read with FINAL so every
-- figure is exact; duplicates of a record always share a partition (the partition key is
-- part of the dedup key), hence do_not_merge_across_partitions_select_final.

CREATE VIEW IF NOT EXISTS analyst_traces AS
SELECT
    trace_id, span_id, parent_span_id, timestamp, tenant, application, route, provider, operation,
    request_model, response_model, model, deployment, region, model_version, system_fingerprint,
    prompt_template_id, prompt_template_version, guardrail_policy_version, retrieval_index_version,
    toolset_version, tool_names, input_tokens, output_tokens, cached_input_tokens, finish_reasons,
    ttft_ms, latency_ms, status, error_type, refused, cost_usd, attempt, data_classification,
    redaction_policy_version, redaction_counts
FROM traces FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;

CREATE VIEW IF NOT EXISTS analyst_tool_calls AS
SELECT trace_id, span_id, parent_span_id, timestamp, tenant, application, route, model, call_index,
       tool_name, status
FROM tool_calls FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;

CREATE VIEW IF NOT EXISTS analyst_findings AS
SELECT finding_id, kind, severity, at, tenant, route, model, score, threshold, detector,
       config_version, evidence
FROM findings FINAL;

CREATE VIEW IF NOT EXISTS analyst_alerts AS
SELECT alert_id, kind, severity, tenant, route, model, summary, finding_ids, owner, oncall, runbook,
       dedup_key, first_seen, last_seen, count, config_version
FROM alerts FINAL;

CREATE VIEW IF NOT EXISTS analyst_breaker_events AS
SELECT signal_id, target, state, reason, policy_version, probe_share, fallback, operator, at, expires_at
FROM breaker_events FINAL;

CREATE VIEW IF NOT EXISTS analyst_change_events AS
SELECT event_id, component_kind, component_id, old_version, new_version, owner, at, scope_routes,
       scope_tenants, link, source
FROM change_events FINAL;

CREATE VIEW IF NOT EXISTS analyst_dead_letters AS
SELECT source_topic, partition, offset, reason, error_kind, original_bytes, received_at
FROM dead_letters FINAL;
