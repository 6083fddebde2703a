-- Traffic per tenant, username and hour (see the PostgreSQL 0010): triggers on radius_sessions
-- add every rise of a session's counters to the hour (UTC, RFC 3339 text as sqlx stores times)
-- of the reading.
CREATE TABLE usage_hourly (
    tenant_id     BLOB NOT NULL,
    hour          TEXT NOT NULL,
    username      TEXT NOT NULL,
    input_octets  INTEGER NOT NULL DEFAULT 0,
    output_octets INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, hour, username)
);

CREATE TRIGGER radius_sessions_usage_hourly_insert AFTER INSERT ON radius_sessions
WHEN NEW.input_octets > 0 OR NEW.output_octets > 0
BEGIN
    INSERT INTO usage_hourly (tenant_id, hour, username, input_octets, output_octets)
    VALUES (NEW.tenant_id, strftime('%Y-%m-%dT%H:00:00+00:00', NEW.updated_at), NEW.username,
            NEW.input_octets, NEW.output_octets)
    ON CONFLICT (tenant_id, hour, username) DO UPDATE SET
        input_octets = input_octets + excluded.input_octets,
        output_octets = output_octets + excluded.output_octets;
END;

CREATE TRIGGER radius_sessions_usage_hourly_update AFTER UPDATE OF input_octets, output_octets ON radius_sessions
WHEN NEW.input_octets > OLD.input_octets OR NEW.output_octets > OLD.output_octets
BEGIN
    INSERT INTO usage_hourly (tenant_id, hour, username, input_octets, output_octets)
    VALUES (NEW.tenant_id, strftime('%Y-%m-%dT%H:00:00+00:00', NEW.updated_at), NEW.username,
            max(NEW.input_octets - OLD.input_octets, 0), max(NEW.output_octets - OLD.output_octets, 0))
    ON CONFLICT (tenant_id, hour, username) DO UPDATE SET
        input_octets = input_octets + excluded.input_octets,
        output_octets = output_octets + excluded.output_octets;
END;
