-- Each access-log entry's own id (issue #18): a tracing query audited while the leader was
-- down waits in the centre's local spool (central/audit.py) and is replayed into this table
-- by id, ON CONFLICT DO NOTHING, so a replay repeated after a crash keeps it once. Older rows
-- have none (NULLs never conflict).
ALTER TABLE access_log ADD COLUMN entry_id TEXT;
CREATE UNIQUE INDEX access_log_entry_id ON access_log (entry_id);
