-- The two tables every RADIUS packet writes to carry no foreign keys on PostgreSQL: a foreign-key
-- check takes a FOR KEY SHARE lock on the tenant, NAS and subscriber rows for every inserted row,
-- and concurrent writers sharing those rows turn the locks into MultiXacts (measured: about half
-- of PostgreSQL's time per accounting record). The store keeps the links itself: deleting a NAS
-- deletes its sessions, deleting a subscriber clears `subscriber_id` in its sessions, and a tenant
-- purge deletes both tables' rows (saas-core/src/store/queries.rs). Row-level security is unchanged.
ALTER TABLE radius_sessions DROP CONSTRAINT IF EXISTS radius_sessions_tenant_id_fkey;
ALTER TABLE radius_sessions DROP CONSTRAINT IF EXISTS radius_sessions_nas_id_fkey;
ALTER TABLE radius_sessions DROP CONSTRAINT IF EXISTS radius_sessions_subscriber_id_fkey;
ALTER TABLE auth_log DROP CONSTRAINT IF EXISTS auth_log_tenant_id_fkey;

-- Interim-Updates rewrite counters only (no indexed column): room on the page lets PostgreSQL
-- update them in place (HOT) instead of adding index entries.
ALTER TABLE radius_sessions SET (fillfactor = 80);


-- Every session leaves dead index entries behind (its Start's entry in radius_sessions_open, each
-- update's old version): vacuum after 2 % of the table changed instead of PostgreSQL's 20 %, so
-- the open-session lookups of a busy accounting stream stay short (measured: a bloated open index
-- made the batch statements ten times slower).
ALTER TABLE radius_sessions SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE auth_log SET (autovacuum_vacuum_insert_scale_factor = 0.05);
