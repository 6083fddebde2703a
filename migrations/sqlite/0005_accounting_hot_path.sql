-- PostgreSQL drops the foreign keys of radius_sessions and auth_log in its 0005 (see there); on
-- SQLite they stay (one writer, no lock contention). The store deletes a NAS's sessions and
-- clears a deleted subscriber's link itself on both backends, so the two behave alike.
SELECT 1;
