-- Server only (a chDB engine has no access management): the read-only analyst role.
-- Applied by sinks.migrations_runner after the numbered migrations when the DSN is a
-- server, recorded in schema_migrations as version 1001.
--
-- The views run with the definer's rights (SQL SECURITY DEFINER, the user that ran
-- `warden schema apply`), so the role needs SELECT on the views only, never on the raw
-- tables they read. No INSERT, ALTER or CREATE is granted. Give it to people with
--   CREATE USER alice IDENTIFIED WITH sha256_password BY '...' DEFAULT ROLE warden_analyst
--   GRANT warden_analyst TO alice
-- and add SETTINGS PROFILE readonly = 2 to their user if they may also set limits.

CREATE ROLE IF NOT EXISTS warden_analyst;

ALTER TABLE analyst_traces MODIFY SQL SECURITY DEFINER;
ALTER TABLE analyst_tool_calls MODIFY SQL SECURITY DEFINER;
ALTER TABLE analyst_findings MODIFY SQL SECURITY DEFINER;
ALTER TABLE analyst_alerts MODIFY SQL SECURITY DEFINER;
ALTER TABLE analyst_breaker_events MODIFY SQL SECURITY DEFINER;
ALTER TABLE analyst_change_events MODIFY SQL SECURITY DEFINER;
ALTER TABLE analyst_dead_letters MODIFY SQL SECURITY DEFINER;
ALTER TABLE traces_per_minute_v MODIFY SQL SECURITY DEFINER;
ALTER TABLE findings_per_minute_v MODIFY SQL SECURITY DEFINER;
ALTER TABLE owners_current MODIFY SQL SECURITY DEFINER;

GRANT SELECT ON analyst_traces TO warden_analyst;
GRANT SELECT ON analyst_tool_calls TO warden_analyst;
GRANT SELECT ON analyst_findings TO warden_analyst;
GRANT SELECT ON analyst_alerts TO warden_analyst;
GRANT SELECT ON analyst_breaker_events TO warden_analyst;
GRANT SELECT ON analyst_change_events TO warden_analyst;
GRANT SELECT ON analyst_dead_letters TO warden_analyst;
GRANT SELECT ON traces_per_minute_v TO warden_analyst;
GRANT SELECT ON findings_per_minute_v TO warden_analyst;
GRANT SELECT ON traces_per_minute TO warden_analyst;
GRANT SELECT ON findings_per_minute TO warden_analyst;
GRANT SELECT ON owners_current TO warden_analyst;
GRANT SELECT ON owners TO warden_analyst;
