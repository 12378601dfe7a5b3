-- Retention per data class (defaults; sinks/retention.py and
-- `warden schema apply --retention FILE` / `--ttl CLASS=N` change them later):
--   operational traces and agent steps 30 days (001, 002), rollups 400 days (003),
--   findings and alerts 365 days, dead letters 30 days (they hold a hash, not the bytes),
--   audit records (breaker transitions, the change ledger, audit_log) 6 years.
-- TTL is on the record's event time; rows past it are dropped by background merges.

ALTER TABLE findings MODIFY TTL toDateTime(at) + INTERVAL 365 DAY;
ALTER TABLE alerts MODIFY TTL toDateTime(last_seen) + INTERVAL 365 DAY;
ALTER TABLE dead_letters MODIFY TTL toDateTime(received_at) + INTERVAL 30 DAY;
ALTER TABLE breaker_events MODIFY TTL toDateTime(at) + INTERVAL 6 YEAR;
ALTER TABLE change_events MODIFY TTL toDateTime(at) + INTERVAL 6 YEAR;
