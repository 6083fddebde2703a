-- Traffic per tenant, username and hour (issue 8: the dashboard's 24-h traffic chart and its
-- top users by the true last-24-h delta, not lifetime counters). A trigger on radius_sessions
-- adds every rise of a session's counters to the hour (UTC) of the reading, so both accounting
-- paths (the bulk statement and the one-by-one one) feed it without code of their own.
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

CREATE FUNCTION usage_hourly_add() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d_in  bigint;
    d_out bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        d_in := NEW.input_octets;
        d_out := NEW.output_octets;
    ELSE
        d_in := GREATEST(NEW.input_octets - OLD.input_octets, 0);
        d_out := GREATEST(NEW.output_octets - OLD.output_octets, 0);
    END IF;
    IF d_in > 0 OR d_out > 0 THEN
        INSERT INTO usage_hourly (tenant_id, hour, username, input_octets, output_octets)
        VALUES (NEW.tenant_id, date_trunc('hour', NEW.updated_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                NEW.username, d_in, d_out)
        ON CONFLICT (tenant_id, hour, username) DO UPDATE SET
            input_octets = usage_hourly.input_octets + EXCLUDED.input_octets,
            output_octets = usage_hourly.output_octets + EXCLUDED.output_octets;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER radius_sessions_usage_hourly
    AFTER INSERT OR UPDATE OF input_octets, output_octets ON radius_sessions
    FOR EACH ROW EXECUTE FUNCTION usage_hourly_add();
