-- Fresh statistics for radius_sessions on demand (the accounting writer calls it as it goes).
-- The bulk accounting statements join a batch to the partial index radius_sessions_open. When
-- the statistics were taken while few sessions were open (a fresh install, after a NAS reboot,
-- right after a VACUUM ANALYZE), the planner takes that index for tiny and scans all of the
-- tenant's entries, dead ones of closed sessions included, once per statement: the cost then
-- grows with the traffic since the last vacuum (measured: 30k accounting records/s falling to
-- 18k within 30 s). With statistics taken under traffic it looks each session up by its key.
-- Only the owner may ANALYZE; this function runs as the owner and does nothing else.
CREATE FUNCTION radius_sessions_analyze() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    ANALYZE radius_sessions;
END
$$;
REVOKE ALL ON FUNCTION radius_sessions_analyze() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION radius_sessions_analyze() TO proxpanel_app;
