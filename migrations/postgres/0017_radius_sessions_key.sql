-- Sessions found by their key (NAS, Acct-Session-Id) whether open or closed. The partial index of
-- open sessions left a record for a closed one (a repeated Stop, a spool replayed after a crash
-- that had committed it already) to a scan of the whole table, once per record (measured: a
-- replay of 10,000 records over 3 million sessions took minutes). Keyed on all sessions, with the
-- start time, it serves both lookups; and as no indexed column changes when a session is updated
-- or closed, an Interim-Update or Stop can be a HOT update (no index entry written) where the page
-- has room. Building it locks radius_sessions against writes once, for seconds on a big table.
CREATE INDEX radius_sessions_key ON radius_sessions (tenant_id, nas_id, acct_session_id, started_at);
DROP INDEX radius_sessions_open;
