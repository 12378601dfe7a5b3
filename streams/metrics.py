"""Prometheus metrics a worker exposes on ``/metrics`` (names documented in the README)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.traces = Counter("warden_traces_governed_total", "Traces validated, redacted and scored",
                              registry=self.registry)
        self.dead_letters = Counter("warden_dead_letters_total", "Input sent to the dead-letter topic",
                                    ["kind"], registry=self.registry)
        self.findings = Counter("warden_findings_total", "Detector findings", ["kind"], registry=self.registry)
        self.drift_shed = Counter("warden_drift_shed_total",
                                  "Traces the drift agent skipped unscored because its buffer was over half "
                                  "full (encoder slower than traffic)",
                                  registry=self.registry)
        self.batches_fenced = Counter("warden_batches_fenced_total",
                                      "Batches dropped unacknowledged because a rebalance began during them "
                                      "(replayed by the partitions' next owner)", ["agent"], registry=self.registry)
        self.economics_rewinds = Counter(
            "warden_economics_rewinds_total",
            "Seeks back on the usage topic because a record after the economics state's last "
            "counted offset arrived first (records the state never counted are read again)",
            registry=self.registry)
        self.economics_checkpoint = Gauge("warden_economics_checkpoint_offset",
                                          "Usage offset the last economics checkpoint counts up to",
                                          registry=self.registry)
        self.economics_lost = Counter("warden_economics_records_lost_total",
                                      "Usage records given up on: no longer in the topic when sought",
                                      registry=self.registry)
        self.analyst_queries = Counter("warden_analyst_queries_total",
                                       "Requests to /sql by outcome: ok, refused (not an allowed read-only "
                                       "statement), unauthorized, busy, cancelled (client went away), error",
                                       ["outcome"], registry=self.registry)
        self.analyst_in_flight = Gauge("warden_analyst_queries_in_flight",
                                       "/sql queries running or waiting for the analysts' session",
                                       registry=self.registry)
        self.rows_written = Counter("warden_sink_rows_total", "Rows durably written to ClickHouse",
                                    ["table"], registry=self.registry)
        self.sink_failures = Counter("warden_sink_write_failures_total", "Failed ClickHouse writes (retried)",
                                     ["table"], registry=self.registry)
        self.stage_seconds = Histogram("warden_stage_seconds", "Seconds per batch and stage", ["stage"],
                                       buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                       registry=self.registry)
        self.breaker_open = Gauge("warden_breaker_open", "1 when a target's breaker is open or half-open",
                                  ["target"], registry=self.registry)
        self.consumer_lag = Gauge("warden_consumer_lag", "Records behind the partition end, per topic",
                                  ["topic"], registry=self.registry)
        self.control_rejected = Counter(
            "warden_control_rejected_total",
            "Findings, overrides and breaker signals refused for want of a trusted signature "
            "(streams/guard/control.py), by stage and reason", ["stage", "reason"], registry=self.registry)
        self.state_rejected = Counter("warden_state_rejected_total",
                                      "Stored state records that failed validation (old version, hostile "
                                      "or corrupt content): the key started afresh", ["table"],
                                      registry=self.registry)
        self.clamped_event_times = Counter(
            "warden_event_time_clamped_total",
            "Event times outside the worker's bounds (WARDEN_EVENT_TIME_SKEW_S ahead, "
            "WARDEN_EVENT_TIME_MAX_AGE_S behind), clamped into them", ["stage", "direction"],
            registry=self.registry)
        self.redactions = Counter("warden_redactions_total", "Values redacted", ["entity"],
                                  registry=self.registry)
        self.redaction_echoes = Counter(
            "warden_redaction_echoes_total",
            "Values in an answer that the same request's user or tools gave (redacted; a PII "
            "echo is no finding, a secret one still is)", ["category", "source"], registry=self.registry)

        self.scope_overflow = Counter(
            "warden_scope_overflow_total",
            "Traces whose (route, model) scope was beyond a cardinality cap (reason: total, per_route, "
            "per_tenant): stored and redacted, no detector state", ["reason"], registry=self.registry)
        self.scopes_held = Gauge("warden_scopes_held", "Scopes holding detector state in this worker",
                                 registry=self.registry)
        self.scopes_removed = Counter(
            "warden_scopes_removed_total",
            "Scope states deleted (a changelog tombstone) by why: reclaimed (gave its slot at the cap), "
            "expired (idle WARDEN_SCOPE_TTL_S), trimmed (beyond the cap at restore), route (an idle "
            "breaker route), drift (idle drift state)", ["why"], registry=self.registry)
        self.scopes_evicted = Counter("warden_scopes_evicted_total",
                                      "Idle scopes whose decoded detectors left memory (state kept in the table)",
                                      registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = WorkerMetrics()
