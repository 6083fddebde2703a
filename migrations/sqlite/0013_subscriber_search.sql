-- Subscriber search on SQLite stays a substring scan of the tenant's rows (no row-level security
-- there to keep an index out; embedded deployments are small). The PostgreSQL migration of the
-- same number adds the suffix index; this one keeps the numbering of both in step.
SELECT 1;
