-- Issue 16: every audit checkpoint names (and its signature covers) the writer's previous
-- checkpoint, so a rolled-back or deleted chain leaves a dangling link that
-- `warden audit verify` reports. '' on checkpoints written before the chain existed.
-- Additive: older checkpoints keep verifying as they were signed (message v1).
ALTER TABLE audit_checkpoints ADD COLUMN IF NOT EXISTS prev_checkpoint String DEFAULT '';
