-- ProxPanel SaaS: PostgreSQL roles (DESIGN.md §3).
--
-- Run once per cluster as a PostgreSQL superuser, e.g.
--     psql -v ON_ERROR_STOP=1 -U postgres -d postgres -f infra/postgres/roles.sql
-- The script is idempotent: it creates missing roles and (re)applies the role
-- attributes of existing ones, so running it again is harmless.
--
--   proxpanel_owner   owns the tables and runs migrations
--                     (PROXPANEL_DATABASE_ADMIN_URL). Not superuser, not BYPASSRLS.
--   proxpanel_app     the application role (PROXPANEL_DATABASE_URL): row-level
--                     security applies to it; it owns nothing.
--   proxpanel_system  the read-only SystemScope role (PROXPANEL_DATABASE_SYSTEM_URL).
--
-- Passwords: none are set here. Local test clusters (infra/test-services.sh)
-- use trust authentication on 127.0.0.1. Production sets passwords separately,
-- outside version control, for example:
--     ALTER ROLE proxpanel_owner  PASSWORD '...';
--     ALTER ROLE proxpanel_app    PASSWORD '...';
--     ALTER ROLE proxpanel_system PASSWORD '...';
--
-- Privileges on tables (GRANTs, RLS policies) are given by the migrations,
-- which run as proxpanel_owner.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'proxpanel_owner') THEN
        CREATE ROLE proxpanel_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'proxpanel_app') THEN
        CREATE ROLE proxpanel_app LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'proxpanel_system') THEN
        CREATE ROLE proxpanel_system LOGIN;
    END IF;
END
$$;

-- Attributes are (re)applied every run so that drift is corrected.
ALTER ROLE proxpanel_owner  LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB   NOCREATEROLE NOREPLICATION INHERIT;
ALTER ROLE proxpanel_app    LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT;
ALTER ROLE proxpanel_system LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT;

-- Production database (run once, as superuser), e.g.:
-- CREATE DATABASE proxpanel OWNER proxpanel_owner ENCODING 'UTF8' TEMPLATE template0;
-- REVOKE ALL ON DATABASE proxpanel FROM PUBLIC;
-- GRANT CONNECT ON DATABASE proxpanel TO proxpanel_app, proxpanel_system;
