-- Subscriber search (`?search=`, a case-insensitive substring) that row-level security lets use an
-- index. PostgreSQL keeps operators that are not leakproof (LIKE, and so the trigram index of
-- 0007) out of index scans on a table with a policy, so every search read all of the tenant's
-- subscribers. Instead each suffix of every lowercased username is indexed: "contains T" is "some
-- suffix starts with T", a range scan with plain text comparisons, which are leakproof.
CREATE TABLE subscriber_suffixes (
    tenant_id     uuid NOT NULL,
    suffix        text COLLATE "C" NOT NULL,
    subscriber_id uuid NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE
);
CREATE INDEX subscriber_suffixes_lookup ON subscriber_suffixes (tenant_id, suffix) INCLUDE (subscriber_id);
CREATE INDEX subscriber_suffixes_subscriber ON subscriber_suffixes (subscriber_id);
ALTER TABLE subscriber_suffixes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON subscriber_suffixes
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
-- The application only reads it; the triggers below (run as the table owner) keep it.
GRANT SELECT ON subscriber_suffixes TO proxpanel_app;

-- Runs as the owner so a subscriber change by any role keeps the suffixes; it only ever touches
-- the rows of the subscriber being changed.
CREATE FUNCTION subscriber_suffixes_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    name text := lower(NEW.username);
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM subscriber_suffixes WHERE subscriber_id = OLD.id;
    END IF;
    INSERT INTO subscriber_suffixes (tenant_id, suffix, subscriber_id)
    SELECT NEW.tenant_id, substr(name, i), NEW.id FROM generate_series(1, length(name)) AS i;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION subscriber_suffixes_sync() FROM PUBLIC;

CREATE TRIGGER subscriber_suffixes_insert AFTER INSERT ON subscribers
    FOR EACH ROW EXECUTE FUNCTION subscriber_suffixes_sync();
CREATE TRIGGER subscriber_suffixes_rename AFTER UPDATE OF username ON subscribers
    FOR EACH ROW WHEN (OLD.username IS DISTINCT FROM NEW.username)
    EXECUTE FUNCTION subscriber_suffixes_sync();

INSERT INTO subscriber_suffixes (tenant_id, suffix, subscriber_id)
SELECT s.tenant_id, substr(lower(s.username), i), s.id
FROM subscribers s, generate_series(1, length(lower(s.username))) AS i;

-- The trigram index cannot serve the application role (see above); it only cost writes.
DROP INDEX IF EXISTS subscribers_username_trgm;
