//! PostgreSQL backend: an application pool (RLS-bound role), a system pool (read-only role for the
//! named cross-tenant reads) and migrations through the owner role.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres, Transaction};

use crate::ids::TenantId;
use crate::store::{StoreOptions, redact_url};

type DbRow = sqlx::postgres::PgRow;

/// Roles the schema grants to (created by infra/postgres/roles.sql).
pub(crate) const REQUIRED_ROLES: [&str; 2] = ["proxpanel_app", "proxpanel_system"];

/// LISTEN/NOTIFY channel of bus wake-ups.
const EVENTS_CHANNEL: &str = "proxpanel_events";

pub(super) struct Db {
    pool: Pool<Postgres>,
    system: Pool<Postgres>,
    admin_url: String,
    url: String,
}

async fn pool(url: &str, max: u32) -> Result<Pool<Postgres>, StoreError> {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|source| StoreError::Connect {
            url: redact_url(url),
            source,
        })
}

impl Db {
    pub(super) async fn connect(opts: &StoreOptions) -> Result<Self, StoreError> {
        let pool_ = pool(&opts.url, opts.max_connections.max(2)).await?;
        let system = match &opts.system_url {
            Some(u) if u != &opts.url => pool(u, (opts.max_connections / 2).max(2)).await?,
            _ => pool_.clone(),
        };
        Ok(Self {
            pool: pool_,
            system,
            admin_url: opts.admin_url.clone().unwrap_or_else(|| opts.url.clone()),
            url: opts.url.clone(),
        })
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let admin = pool(&self.admin_url, 1).await?;
        let have: Vec<String> =
            sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
                .bind(&REQUIRED_ROLES[..])
                .fetch_all(&admin)
                .await?;
        let missing: Vec<&str> = REQUIRED_ROLES
            .iter()
            .copied()
            .filter(|r| !have.iter().any(|h| h == r))
            .collect();
        if !missing.is_empty() {
            admin.close().await;
            return Err(StoreError::Setup(format!(
                "PostgreSQL role(s) {} missing: create them once as a superuser with `psql -f infra/postgres/roles.sql` (see README, PostgreSQL)",
                missing.join(", ")
            )));
        }
        let res = sqlx::migrate!("../migrations/postgres").run(&admin).await;
        admin.close().await;
        res?;
        Ok(())
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
        self.system.close().await;
    }

    /// A transaction bound to one tenant: `app.tenant_id` is set for this transaction only, so
    /// RLS policies see it and a pooled connection never carries it over.
    async fn read(&self, t: TenantId) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(t.0.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn write(&self, t: TenantId) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.read(t).await
    }

    fn sys(&self) -> &Pool<Postgres> {
        &self.system
    }

    fn app(&self) -> &Pool<Postgres> {
        &self.pool
    }

    pub(super) async fn listener(&self) -> Result<sqlx::postgres::PgListener, StoreError> {
        // Its own connection, not a pooled one: a listener held forever would make `close` wait.
        let mut l = sqlx::postgres::PgListener::connect(&self.url).await?;
        l.listen(EVENTS_CHANNEL).await?;
        Ok(l)
    }

    async fn lock_events(&self, tx: &mut Transaction<'static, Postgres>) -> Result<(), StoreError> {
        // Serialises event inserts so ids commit in order (pollers remember the last id seen).
        sqlx::query("SELECT pg_advisory_xact_lock(7201001)")
            .execute(&mut **tx)
            .await?;
        // Delivered at commit: wakes every LISTENing process.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(EVENTS_CHANNEL)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

include!("queries.rs");
