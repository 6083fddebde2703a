//! SQLite backend (embedded mode): WAL, busy timeout, foreign keys. Isolation rests on the tenant
//! filter in every query; SQLite has no row-level security.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite, Transaction};

use crate::ids::TenantId;
use crate::store::{SQLITE_BUSY_TIMEOUT, StoreOptions, redact_url};

type DbRow = sqlx::sqlite::SqliteRow;
type DbKind = Sqlite;

pub(super) struct Db {
    pool: Pool<Sqlite>,
}

impl Db {
    pub(super) async fn connect(opts: &StoreOptions) -> Result<Self, StoreError> {
        let connect_err = |source| StoreError::Connect {
            url: redact_url(&opts.url),
            source,
        };
        let co = SqliteConnectOptions::from_str(&opts.url)
            .map_err(connect_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true);
        if let Some(parent) = co.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| connect_err(sqlx::Error::Io(e)))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.clamp(1, 16))
            .connect_with(co)
            .await
            .map_err(connect_err)?;
        Ok(Self { pool })
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    /// A read transaction of one tenant (deferred: never upgrades, so never deadlocks).
    async fn read(&self, _t: TenantId) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// As [`Self::read`] (SQLite plans every statement anyway).
    async fn read_generic(&self, t: TenantId) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.read(t).await
    }

    /// A write transaction: BEGIN IMMEDIATE takes the write lock up front, so the busy timeout
    /// applies instead of an immediate SQLITE_BUSY on lock upgrade.
    async fn write(&self, _t: TenantId) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn sys(&self) -> &Pool<Sqlite> {
        &self.pool
    }

    fn app(&self) -> &Pool<Sqlite> {
        &self.pool
    }

    /// Appends an event. SQLite has one writer at a time: ids commit in order already.
    pub(super) async fn event_insert(
        &self,
        tenant: Option<TenantId>,
        kind: &str,
        corr: Option<uuid::Uuid>,
        payload: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO events (at, tenant_id, kind, correlation_id, payload) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(now)
        .bind(tenant.map(|t| t.0))
        .bind(kind)
        .bind(corr)
        .bind(payload)
        .fetch_one(self.app())
        .await?;
        Ok(id)
    }
}

impl Db {
    /// Nothing to do: SQLite's planner uses no table statistics unless asked to.
    #[allow(clippy::unused_async)]
    pub(super) async fn sessions_analyze(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Drops every tenant's hourly traffic older than `before`.
    pub(super) async fn usage_hourly_prune(
        &self,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let res = sqlx::query("DELETE FROM usage_hourly WHERE hour < $1")
            .bind(before)
            .execute(self.app())
            .await?;
        Ok(res.rows_affected())
    }

    /// A run of accounting groups with distinct sessions. SQLite is in-process: a statement
    /// costs no round trip, so records go one by one.
    async fn acct_run(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        t: TenantId,
        run: &[super::AcctGroup<'_>],
    ) -> Result<(), StoreError> {
        self.acct_each(tx, t, run).await
    }

    pub(super) async fn auth_log_insert(
        &self,
        t: TenantId,
        entries: &[AuthLogEntry],
    ) -> Result<()> {
        let mut tx = self.write(t).await?;
        for e in entries {
            sqlx::query("INSERT INTO auth_log (tenant_id, at, nas_id, username, method, outcome, reason, calling_station_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(t.0).bind(e.at).bind(e.nas_id.map(|n| n.0)).bind(&e.username).bind(e.method.as_deref()).bind(&e.outcome).bind(e.reason.as_deref()).bind(e.calling_station_id.as_deref())
                .execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

include!("queries.rs");

/// Expiry sort key: no expiry sorts after every date (sqlx stores SQLite timestamps as RFC 3339).
const EXPIRY_SORT: &str = "COALESCE(s.expires_at, '9999-12-31T23:59:59+00:00')";

/// Subscriber search (`$2`, a substring, any case): a scan of the tenant's rows.
const SUBSCRIBER_SEARCH: &str = "AND instr(LOWER(s.username), LOWER($2)) > 0";

impl Db {
    /// SQLite has no separate search path: `None` sends every search to the one-query form.
    #[allow(clippy::too_many_arguments, clippy::unused_async)]
    pub(super) async fn subscriber_search_page(
        &self,
        _tx: &mut Transaction<'static, Sqlite>,
        _t: TenantId,
        _term: &str,
        _status: Option<SubscriberStatus>,
        _plan: Option<PlanId>,
        _after: Option<&str>,
        _limit: i64,
    ) -> Result<Option<Vec<Subscriber>>> {
        Ok(None)
    }
}
