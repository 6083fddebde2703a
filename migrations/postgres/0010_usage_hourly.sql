-- Traffic per tenant, username and hour (issue 8: the dashboard's 24-h traffic chart and its
-- top users by the true last-24-h delta, not lifetime counters). Statement-level triggers on
-- radius_sessions add every rise of a session's counters to the hour (UTC) of the reading, so
-- both accounting paths (the batch statement and the one-by-one one) feed it without code of
-- their own. Per statement, not per row: an accounting batch of hundreds of sessions costs one
-- aggregated upsert, and its rows are taken in key order so two concurrent writers lock the
-- shared hour rows in the same order (no deadlock).
-- No foreign key (as radius_sessions since 0005: nothing to check on the hot path); a tenant's
-- purge deletes its rows.
CREATE TABLE usage_hourly (
    tenant_id     uuid NOT NULL,
    hour          timestamptz NOT NULL,
    username      text NOT NULL,
    input_octets  bigint NOT NULL DEFAULT 0,
    output_octets bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, hour, username)
);
ALTER TABLE usage_hourly ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_hourly
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON usage_hourly TO proxpanel_app;

CREATE FUNCTION usage_hourly_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_hourly (tenant_id, hour, username, input_octets, output_octets)
    SELECT n.tenant_id, date_trunc('hour', n.updated_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           n.username, sum(n.input_octets), sum(n.output_octets)
    FROM new_rows n
    WHERE n.input_octets > 0 OR n.output_octets > 0
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, hour, username) DO UPDATE SET
        input_octets = usage_hourly.input_octets + EXCLUDED.input_octets,
        output_octets = usage_hourly.output_octets + EXCLUDED.output_octets;
    RETURN NULL;
END $$;

CREATE FUNCTION usage_hourly_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_hourly (tenant_id, hour, username, input_octets, output_octets)
    SELECT n.tenant_id, date_trunc('hour', n.updated_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           n.username, sum(GREATEST(n.input_octets - o.input_octets, 0)),
           sum(GREATEST(n.output_octets - o.output_octets, 0))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.input_octets > o.input_octets OR n.output_octets > o.output_octets
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, hour, username) DO UPDATE SET
        input_octets = usage_hourly.input_octets + EXCLUDED.input_octets,
        output_octets = usage_hourly.output_octets + EXCLUDED.output_octets;
    RETURN NULL;
END $$;

-- PostgreSQL allows transition tables only on single-event triggers without a column list.
CREATE TRIGGER radius_sessions_usage_hourly_ins
    AFTER INSERT ON radius_sessions REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_inserted();
CREATE TRIGGER radius_sessions_usage_hourly_upd
    AFTER UPDATE ON radius_sessions REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_updated();

-- Retention: the platform's housekeeping drops hours older than it keeps, for every tenant at
-- once. Only this function may (it runs as the owner and deletes old hours and nothing else);
-- the application role stays held to one tenant by the policy above.
CREATE FUNCTION usage_hourly_prune(before timestamptz) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH gone AS (DELETE FROM usage_hourly WHERE hour < before RETURNING 1)
    SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION usage_hourly_prune(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_hourly_prune(timestamptz) TO proxpanel_app;
