-- Per-tenant QuotaSync interval in seconds (issue 5); NULL = the platform default
-- (`nas.quota_sync_s`).
ALTER TABLE tenants ADD COLUMN quota_sync_s integer CHECK (quota_sync_s BETWEEN 10 AND 3600);
