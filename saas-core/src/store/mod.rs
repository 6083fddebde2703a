//! The tenant-isolated store: SQLite (embedded) or PostgreSQL (with row-level security).
//!
//! Every tenant-owned query runs through a [`TenantScope`]; the few cross-tenant reads live in
//! [`SystemScope`]; platform tables (operators, relay nodes, events, DNS records, signing keys) in
//! [`PlatformScope`]. The SQL is written once (`queries.rs`) and compiled for each backend.

mod pinned;
mod postgres;
mod revocations;
pub(crate) use revocations::Cutoff;
mod sqlite;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use crate::crypto::{CryptoError, SecretBox};
use crate::ids::*;
use crate::model::*;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist (in this tenant).
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness rule was broken; the message says which, and names no other tenant.
    #[error("{0}")]
    Conflict(String),
    /// Input that the store refuses.
    #[error("{0}")]
    Invalid(String),
    /// A tenant limit was reached.
    #[error("{0}")]
    LimitReached(String),
    /// The database could not be reached (URL shown without its password).
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        /// Redacted URL.
        url: String,
        /// Cause.
        source: sqlx::Error,
    },
    /// PostgreSQL is missing the roles the schema grants to.
    #[error("{0}")]
    Setup(String),
    /// Migration failure.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A sealed secret could not be opened.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Any other database error.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where the store lives.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Application URL (`sqlite://…` or `postgres://…`).
    pub url: String,
    /// Owner URL for migrations (PostgreSQL); defaults to `url`.
    pub admin_url: Option<String>,
    /// System-scope URL (PostgreSQL); defaults to `url`.
    pub system_url: Option<String>,
    /// Largest pool size.
    pub max_connections: u32,
}

impl StoreOptions {
    /// SQLite file in a directory.
    pub fn sqlite_in(dir: &std::path::Path) -> Self {
        Self::from_url(format!("sqlite://{}", dir.join("proxpanel.db").display()))
    }

    /// Options for one URL.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            admin_url: None,
            system_url: None,
            max_connections: 16,
        }
    }

    /// Whether the URL is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }
}

/// Removes the password from a connection URL, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => url.split('@').next_back().unwrap_or("").to_owned(),
    }
}

enum Backend {
    Sqlite(sqlite::Db),
    Postgres(postgres::Db),
}

struct Inner {
    backend: Backend,
    secrets: SecretBox,
    revocations: revocations::Revocations,
}

/// One audit log entry of a tenant, for writes that record it in their own transaction.
#[derive(Clone, Copy, Debug)]
pub struct AuditLine<'a> {
    /// Who acted.
    pub actor: &'a str,
    /// What was done (`subscriber.update`, …).
    pub action: &'a str,
    /// What it was done to.
    pub target: Option<&'a str>,
    /// JSON details.
    pub details: Option<&'a str>,
    /// The client's address.
    pub client_ip: Option<&'a str>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .finish()
    }
}

macro_rules! dispatch {
    ($store:expr, $method:ident ( $($arg:expr),* $(,)? )) => {
        match &$store.inner.backend {
            Backend::Sqlite(b) => b.$method($($arg),*).await,
            Backend::Postgres(b) => b.$method($($arg),*).await,
        }
    };
}

/// What the accounting writer keeps between its batches. On PostgreSQL: a connection of its
/// own with the tenant it last set, so a warm batch costs one round trip (no pool acquire and
/// ping, no BEGIN/COMMIT around a single statement). Elsewhere: nothing.
#[derive(Default)]
pub struct AcctLane {
    conn: Option<sqlx::PgConnection>,
    tenant: Option<TenantId>,
}

impl std::fmt::Debug for AcctLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcctLane")
            .field("connected", &self.conn.is_some())
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl Store {
    /// Applies a tenant's accounting records in order, through the writer's `lane`; durable
    /// when this returns (as [`TenantScope::record_accounting`]).
    pub async fn record_accounting_in(
        &self,
        lane: &mut AcctLane,
        tenant: TenantId,
        records: &[AcctRecord],
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        match &self.inner.backend {
            Backend::Postgres(b) => b.acct_apply_lane(lane, tenant, records).await,
            Backend::Sqlite(_) => self.tenant(tenant).record_accounting(records).await,
        }
    }

    /// Connects and applies migrations.
    pub async fn open(opts: &StoreOptions, secrets: SecretBox) -> Result<Self> {
        let store = Self::connect(opts, secrets).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(opts: &StoreOptions, secrets: SecretBox) -> Result<Self> {
        let backend = if opts.is_postgres() {
            Backend::Postgres(postgres::Db::connect(opts).await?)
        } else if opts.url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::Db::connect(opts).await?)
        } else {
            return Err(StoreError::Invalid(format!(
                "database URL {} must start with sqlite:// or postgres://",
                redact_url(&opts.url)
            )));
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                secrets,
                revocations: Default::default(),
            }),
        })
    }

    /// Applies pending migrations (owner role on PostgreSQL).
    pub async fn migrate(&self) -> Result<()> {
        dispatch!(self, migrate())
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.inner.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<()> {
        dispatch!(self, ping())
    }

    /// The secret box values are sealed with.
    pub fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }

    /// Scope for one tenant's data.
    pub fn tenant(&self, tenant: TenantId) -> TenantScope {
        TenantScope {
            store: self.clone(),
            tenant,
        }
    }

    /// The named cross-tenant reads (relay, direct RADIUS, DNS, sweepers, operator console).
    pub fn system(&self) -> SystemScope {
        SystemScope {
            store: self.clone(),
        }
    }

    /// Platform tables that belong to no tenant.
    pub fn platform(&self) -> PlatformScope {
        PlatformScope {
            store: self.clone(),
        }
    }

    /// A LISTEN connection for bus wake-ups (PostgreSQL only).
    pub async fn event_listener(&self) -> Result<Option<sqlx::postgres::PgListener>> {
        match &self.inner.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(b) => Ok(Some(b.listener().await?)),
        }
    }

    /// Closes the pools.
    pub async fn close(&self) {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.close().await,
            Backend::Postgres(b) => b.close().await,
        }
    }
}

/// The current time at the store's precision (microseconds).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Filters and paging of a subscriber listing.
#[derive(Clone, Debug, Default)]
pub struct SubscriberQuery {
    /// Substring of the username (case-insensitive).
    pub search: Option<String>,
    /// Status filter.
    pub status: Option<SubscriberStatus>,
    /// Plan filter.
    pub plan_id: Option<PlanId>,
    /// Continue after this username (the previous page's `next_cursor`).
    pub after: Option<String>,
    /// Page size (1..=500, default 50).
    pub limit: Option<i64>,
}

/// What a subscriber listing is ordered by (then by id, so pages are stable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubscriberSortKey {
    /// Username (the default).
    #[default]
    Username,
    /// Creation time.
    Created,
    /// Expiry (no expiry last).
    Expiry,
    /// Status text.
    Status,
    /// Plan name (no plan first).
    Plan,
}

impl std::str::FromStr for SubscriberSortKey {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "username" => Self::Username,
            "created" | "created_at" => Self::Created,
            "expiry" | "expires_at" => Self::Expiry,
            "status" => Self::Status,
            "plan" => Self::Plan,
            other => {
                return Err(format!(
                    "{other:?} is not a sort key: use username, created, expiry, status or plan (prefix - for descending)"
                ));
            }
        })
    }
}

/// Order of a subscriber listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberSort {
    /// Key.
    pub key: SubscriberSortKey,
    /// Largest first.
    pub descending: bool,
}

impl std::str::FromStr for SubscriberSort {
    type Err = String;
    /// `key` or `-key` (descending).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (descending, k) = match s.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, s),
        };
        Ok(Self {
            key: k.parse()?,
            descending,
        })
    }
}

/// The sort value of a row in a sorted listing (what a cursor carries).
#[derive(Clone, Debug, PartialEq)]
pub enum SortValue {
    /// A text key.
    Text(String),
    /// A time key.
    Time(DateTime<Utc>),
}

/// Outcome of presenting an e-mail verification token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// The user's address is now verified.
    Verified(UserId),
    /// The token was used before.
    Used,
    /// The token is past its lifetime.
    Expired,
    /// No such token in this tenant.
    Unknown,
}

/// Records of one session (NAS, Acct-Session-Id) that are applied as one row write: a first
/// record and the Interim-Updates and Stop that follow it in the same batch and the same UTC
/// hour, up to and including a Stop (a Start always begins a group of its own).
///
/// The effect equals applying them one by one wherever the store can tell that it does, and the
/// store falls back to one by one where it cannot (see the backends): a Start's group is
/// inserted as the row its records leave behind only when no row with its id and no open session
/// with its key exist (else its records go one by one); an update group is one update of the
/// open sessions of its key (when there is none, its records go one by one). Counters only
/// move up, so the group's are their maximum; Framed-IP and the terminate cause are the last
/// given; the time of the last record is the session's `updated_at`. The hour limit keeps the
/// hourly usage exact: the rises of a group's readings all land in its hour either way.
pub(crate) struct AcctGroup<'r> {
    records: Vec<&'r AcctRecord>,
}

impl<'r> AcctGroup<'r> {
    /// The record that opened the group (the Start, for a Start's group).
    fn first(&self) -> &'r AcctRecord {
        self.records[0]
    }

    /// The newest record.
    fn last(&self) -> &'r AcctRecord {
        self.records[self.records.len() - 1]
    }

    /// Whether this is more than one record.
    fn merged(&self) -> bool {
        self.records.len() > 1
    }

    /// The records, in order.
    fn records(&self) -> &[&'r AcctRecord] {
        &self.records
    }

    /// The highest of a counter over the records (counters only move up).
    fn max_of(&self, counter: fn(&AcctRecord) -> i64) -> i64 {
        self.records.iter().map(|r| counter(r)).max().unwrap_or(0)
    }

    /// The newest value given of an optional attribute.
    fn last_of(&self, attr: fn(&AcctRecord) -> &Option<String>) -> Option<String> {
        self.records.iter().rev().find_map(|r| attr(r).clone())
    }

    fn input_octets(&self) -> i64 {
        self.max_of(|r| r.input_octets)
    }

    fn output_octets(&self) -> i64 {
        self.max_of(|r| r.output_octets)
    }

    fn session_time_s(&self) -> i64 {
        self.max_of(|r| r.session_time_s)
    }

    fn framed_ip(&self) -> Option<String> {
        self.last_of(|r| &r.framed_ip)
    }

    fn terminate_cause(&self) -> Option<String> {
        self.last_of(|r| &r.terminate_cause)
    }

    /// Whether the group ends with a Stop.
    fn stops(&self) -> bool {
        self.last().kind == AcctKind::Stop
    }
}

/// Whether a run is worth a bulk statement (PostgreSQL): two sessions or more, or a group of
/// several records; a single record costs less applied alone than planned in bulk.
fn bulk_worthy(run: &[AcctGroup<'_>]) -> bool {
    run.len() >= 2 || run.iter().any(AcctGroup::merged)
}

/// The UTC hour of a time (as the hourly usage counts it).
fn utc_hour(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

/// Accounting records grouped by session ([`AcctGroup`]) and split into runs that may each be
/// applied in bulk: run `k` holds the `k`-th group (in order) of every session in `records`. The
/// sessions of a run are distinct, and a session's groups are applied in their order, one per
/// run. Records of different sessions do not depend on each other (a session row is found by its
/// own key; the hourly sums add up in any order), so a batch in which every session has a Start,
/// an Interim and a Stop is one statement that inserts each session as it ends, however the
/// sessions interleave (cutting a run at the first repeated key made it one statement per few
/// records at low concurrency).
fn acct_runs(records: &[AcctRecord]) -> Vec<Vec<AcctGroup<'_>>> {
    // Per session: how many groups it has, and where its newest one is.
    let mut seen: std::collections::HashMap<(NasId, &str), (usize, usize)> =
        std::collections::HashMap::with_capacity(records.len());
    let mut runs: Vec<Vec<AcctGroup<'_>>> = Vec::new();
    for r in records {
        let key = (r.nas, r.acct_session_id.as_str());
        let prev = seen.get(&key).copied();
        if let Some((n, at)) = prev
            && let Some(g) = runs.get_mut(n - 1).and_then(|run| run.get_mut(at))
            && r.kind != AcctKind::Start
            && !g.stops()
            && utc_hour(g.first().at) == utc_hour(r.at)
        {
            g.records.push(r);
            continue;
        }
        let k = prev.map_or(0, |(n, _)| n);
        if runs.len() <= k {
            runs.push(Vec::new());
        }
        if let Some(run) = runs.get_mut(k) {
            run.push(AcctGroup { records: vec![r] });
            seen.insert(key, (k + 1, run.len() - 1));
        }
    }
    runs
}

fn encode_cursor(v: &SortValue, id: SubscriberId) -> String {
    use base64::Engine as _;
    let v = match v {
        SortValue::Text(t) => serde_json::json!(["s", t, id.0]),
        SortValue::Time(t) => serde_json::json!(["t", t, id.0]),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_cursor(c: &str) -> Option<(SortValue, SubscriberId)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    let (kind, v, id): (String, serde_json::Value, uuid::Uuid) =
        serde_json::from_slice(&bytes).ok()?;
    let v = match kind.as_str() {
        "s" => SortValue::Text(v.as_str()?.to_owned()),
        "t" => SortValue::Time(serde_json::from_value(v).ok()?),
        _ => return None,
    };
    Some((v, SubscriberId(id)))
}

/// A page of a listing (DESIGN §8 `{items, next_cursor}`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// Items.
    pub items: Vec<T>,
    /// Cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// A JWT signing key as stored (secret sealed).
#[derive(Clone, Debug)]
pub struct SigningKeyRow {
    /// Key id (`kid` header).
    pub kid: String,
    /// Sealed secret.
    pub sealed: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it stopped signing (still verifies).
    pub retired_at: Option<DateTime<Utc>>,
}

/// Outcome of presenting a refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation<U> {
    /// The token was current: the family now holds the new hash.
    Rotated(U),
    /// The token was already rotated away: the family is now revoked.
    Reused,
    /// The family was revoked before (logout, reuse).
    Revoked,
    /// The family is past its lifetime.
    Expired,
    /// No such family.
    Unknown,
}

/// What a username's sessions counted in one hour (UTC).
#[derive(Clone, Debug, PartialEq)]
pub struct HourlyUsage {
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    /// Login.
    pub username: String,
    /// Octets in (from the subscriber).
    pub input_octets: i64,
    /// Octets out (to the subscriber).
    pub output_octets: i64,
}

/// An API token as stored (never its text).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenRow {
    /// Id.
    pub id: uuid::Uuid,
    /// Name given at creation.
    pub name: String,
    /// `read` or `write`.
    pub scope: String,
    /// Who created it.
    pub created_by: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last use.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One stored event (DESIGN §9).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredEvent {
    /// Position in the log.
    pub id: i64,
    /// Time.
    pub at: DateTime<Utc>,
    /// Tenant tag.
    pub tenant_id: Option<TenantId>,
    /// Kind, e.g. `tenant.changed`.
    pub kind: String,
    /// Correlation id of request/result pairs.
    pub correlation_id: Option<uuid::Uuid>,
    /// JSON payload (ids, never secrets).
    pub payload: String,
}

/// A tenant's data. Every query filters by this tenant; on PostgreSQL RLS checks it again.
#[derive(Clone)]
pub struct TenantScope {
    store: Store,
    tenant: TenantId,
}

impl std::fmt::Debug for TenantScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantScope")
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// Whether a unique violation is on the platform-wide direct-NAS address index.
fn is_direct_ip_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.constraint() == Some("nas_devices_direct_ip")
                || d.message().contains("nas_devices.ip")
        }
        _ => false,
    }
}

fn conflict(e: sqlx::Error, msg: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(msg()),
        _ => StoreError::Db(e),
    }
}

impl TenantScope {
    /// The tenant this scope is bound to.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    /// The secret box (for callers that must open a secret they read here).
    pub fn secrets(&self) -> &SecretBox {
        self.store.secrets()
    }

    // ---- tenant row ----

    /// Inserts this tenant's row in `provisioning` status (first step of provisioning).
    pub async fn insert_tenant(
        &self,
        slug: &Slug,
        name: &str,
        timezone: &str,
        limits: TenantLimits,
        tunnel_subnet: &str,
    ) -> Result<Tenant> {
        validate_timezone(timezone).map_err(StoreError::Invalid)?;
        let r = dispatch!(
            self.store,
            tenant_insert(
                self.tenant,
                slug,
                name,
                timezone,
                limits,
                tunnel_subnet,
                now()
            )
        );
        r.map_err(|e| match e {
            StoreError::Db(e) => conflict(e, || format!("the slug {slug:?} is already taken")),
            e => e,
        })
    }

    /// This tenant's row.
    pub async fn tenant(&self) -> Result<Tenant> {
        dispatch!(self.store, tenant_get(self.tenant))?
            .ok_or_else(|| StoreError::NotFound(format!("tenant {}", self.tenant)))
    }

    /// Sets the status (and the suspended/deleted timestamps).
    pub async fn set_status(&self, status: TenantStatus) -> Result<Tenant> {
        dispatch!(self.store, tenant_set_status(self.tenant, status, now()))?;
        self.tenant().await
    }

    /// Updates name, timezone or limits.
    pub async fn update_tenant(
        &self,
        name: Option<&str>,
        timezone: Option<&str>,
        limits: Option<TenantLimits>,
    ) -> Result<Tenant> {
        if let Some(tz) = timezone {
            validate_timezone(tz).map_err(StoreError::Invalid)?;
        }
        dispatch!(
            self.store,
            tenant_update(self.tenant, name, timezone, limits, now())
        )?;
        self.tenant().await
    }

    /// Sets the tenant's QuotaSync interval (10..=3600 s; none = the platform default).
    pub async fn set_quota_sync(&self, secs: Option<u32>) -> Result<Tenant> {
        if let Some(s) = secs {
            check_quota_sync(s)?;
        }
        dispatch!(self.store, tenant_set_quota_sync(self.tenant, secs, now()))?;
        self.tenant().await
    }

    /// Deletes the tenant row and (by cascade) every row of the tenant.
    pub async fn purge(&self) -> Result<()> {
        dispatch!(self.store, tenant_purge(self.tenant))
    }

    // ---- users ----

    /// Adds a panel user; `password_hash` is an argon2id PHC string.
    pub async fn create_user(
        &self,
        email: &Email,
        password_hash: &str,
        role: Role,
    ) -> Result<TenantUser> {
        dispatch!(
            self.store,
            user_insert(
                self.tenant,
                UserId::new(),
                email,
                password_hash,
                role,
                now()
            )
        )
        .map_err(|e| match e {
            StoreError::Db(e) => {
                conflict(e, || format!("a user with e-mail {email} already exists"))
            }
            e => e,
        })
    }

    /// A user and the password hash, by e-mail.
    pub async fn user_by_email(&self, email: &Email) -> Result<Option<(TenantUser, String)>> {
        dispatch!(self.store, user_by_email(self.tenant, email))
    }

    /// All users.
    pub async fn users(&self) -> Result<Vec<TenantUser>> {
        dispatch!(self.store, users_list(self.tenant))
    }

    // ---- plans ----

    /// Adds a plan.
    pub async fn create_plan(&self, p: &NewPlan, is_default: bool) -> Result<Plan> {
        validate_plan(p)?;
        dispatch!(
            self.store,
            plan_insert(self.tenant, PlanId::new(), p, is_default, now())
        )
        .map_err(|e| match e {
            StoreError::Db(e) => {
                conflict(e, || format!("a plan named {:?} already exists", p.name))
            }
            e => e,
        })
    }

    /// All plans, by name.
    pub async fn plans(&self) -> Result<Vec<Plan>> {
        dispatch!(self.store, plans_list(self.tenant))
    }

    /// A plan by name.
    pub async fn plan_by_name(&self, name: &str) -> Result<Option<Plan>> {
        dispatch!(self.store, plan_by_name(self.tenant, name))
    }

    /// A plan by id.
    pub async fn plan(&self, id: PlanId) -> Result<Option<Plan>> {
        dispatch!(self.store, plan_by_id(self.tenant, id))
    }

    // ---- subscribers ----

    /// Adds a subscriber; the password is sealed before it is written.
    pub async fn create_subscriber(&self, s: &NewSubscriber) -> Result<Subscriber> {
        validate_username(&s.username)?;
        validate_subscriber_fields(
            s.static_ip.as_deref(),
            s.framed_ipv6_prefix.as_deref(),
            s.delegated_ipv6_prefix.as_deref(),
            s.mac_lock.as_deref(),
        )?;
        if s.password.is_empty() {
            return Err(StoreError::Invalid("password must not be empty".into()));
        }
        self.check_plan(s.plan_id).await?;
        let t = self.tenant().await?;
        let count = dispatch!(self.store, subscribers_count(self.tenant))?;
        if count >= t.limits.max_subscribers {
            return Err(StoreError::LimitReached(format!(
                "this tenant has reached its limit of {} subscribers",
                t.limits.max_subscribers
            )));
        }
        let sealed = self.store.secrets().seal_str(&s.password);
        dispatch!(
            self.store,
            subscriber_insert(self.tenant, SubscriberId::new(), s, &sealed, now())
        )
        .map_err(|e| match e {
            StoreError::Db(e) => {
                conflict(e, || format!("subscriber {:?} already exists", s.username))
            }
            e => e,
        })
    }

    /// Adds many subscribers in one transaction: every row is checked first and nothing is
    /// written unless all of them pass (the error names the 1-based row). Returns how many.
    pub async fn import_subscribers(&self, rows: &[NewSubscriber]) -> Result<usize> {
        let mut seen = std::collections::HashSet::new();
        for (i, s) in rows.iter().enumerate() {
            let row = |e: StoreError| StoreError::Invalid(format!("row {}: {e}", i + 1));
            validate_username(&s.username).map_err(row)?;
            validate_subscriber_fields(
                s.static_ip.as_deref(),
                s.framed_ipv6_prefix.as_deref(),
                s.delegated_ipv6_prefix.as_deref(),
                s.mac_lock.as_deref(),
            )
            .map_err(row)?;
            if s.password.is_empty() {
                return Err(row(StoreError::Invalid(
                    "password must not be empty".into(),
                )));
            }
            if !seen.insert(s.username.as_str()) {
                return Err(row(StoreError::Invalid(format!(
                    "username {:?} appears twice in the import",
                    s.username
                ))));
            }
        }
        let mut plans = std::collections::HashSet::new();
        for s in rows {
            if let Some(p) = s.plan_id
                && plans.insert(p)
            {
                self.check_plan(Some(p)).await?;
            }
        }
        let t = self.tenant().await?;
        let count = dispatch!(self.store, subscribers_count(self.tenant))?;
        let after = count.saturating_add(i64::try_from(rows.len()).unwrap_or(i64::MAX));
        if after > t.limits.max_subscribers {
            return Err(StoreError::LimitReached(format!(
                "importing {} subscribers would exceed this tenant's limit of {} (it has {count})",
                rows.len(),
                t.limits.max_subscribers
            )));
        }
        let sealed: Vec<(SubscriberId, String)> = rows
            .iter()
            .map(|s| {
                (
                    SubscriberId::new(),
                    self.store.secrets().seal_str(&s.password),
                )
            })
            .collect();
        dispatch!(
            self.store,
            subscribers_insert_many(self.tenant, rows, &sealed, now())
        )
        .map_err(|e| match e {
            StoreError::Db(e) => conflict(e, || {
                "a subscriber in the import already exists in this tenant (nothing was imported)"
                    .to_owned()
            }),
            e => e,
        })?;
        Ok(rows.len())
    }

    /// Refuses a plan id that is not this tenant's (a foreign key alone would accept another
    /// tenant's plan).
    async fn check_plan(&self, plan: Option<PlanId>) -> Result<()> {
        match plan {
            Some(id) if self.plan(id).await?.is_none() => {
                Err(StoreError::NotFound(format!("plan {id}")))
            }
            _ => Ok(()),
        }
    }

    /// A subscriber by username.
    pub async fn subscriber_by_username(&self, username: &str) -> Result<Option<Subscriber>> {
        dispatch!(self.store, subscriber_by_username(self.tenant, username))
    }

    /// A subscriber by id.
    pub async fn subscriber(&self, id: SubscriberId) -> Result<Option<Subscriber>> {
        dispatch!(self.store, subscriber_by_id(self.tenant, id))
    }

    /// A subscriber with its cleartext password and its plan, in one query (what a cold
    /// authentication or accounting lookup needs).
    pub async fn subscriber_for_auth(
        &self,
        username: &str,
    ) -> Result<Option<(Subscriber, String, Option<Plan>)>> {
        let Some((sub, sealed, plan)) = dispatch!(
            self.store,
            subscriber_auth_by_username(self.tenant, username)
        )?
        else {
            return Ok(None);
        };
        let password = self.store.secrets().open_str(&sealed)?;
        Ok(Some((sub, password, plan)))
    }

    /// The subscriber's cleartext password (CHAP and MS-CHAPv2 need it).
    pub async fn subscriber_password(&self, id: SubscriberId) -> Result<String> {
        let sealed = dispatch!(self.store, subscriber_sealed_password(self.tenant, id))?
            .ok_or_else(|| StoreError::NotFound(format!("subscriber {id}")))?;
        Ok(self.store.secrets().open_str(&sealed)?)
    }

    /// Applies a patch; returns the updated subscriber.
    pub async fn update_subscriber(
        &self,
        id: SubscriberId,
        patch: &SubscriberPatch,
    ) -> Result<Subscriber> {
        self.update_subscriber_audited(id, patch, None).await
    }

    /// [`Self::update_subscriber`] writing `audit` to the audit log in the same transaction.
    pub async fn update_subscriber_audited(
        &self,
        id: SubscriberId,
        patch: &SubscriberPatch,
        audit: Option<&AuditLine<'_>>,
    ) -> Result<Subscriber> {
        fn flat(o: &Option<Option<String>>) -> Option<&str> {
            o.as_ref().and_then(|x| x.as_deref())
        }
        validate_subscriber_fields(
            flat(&patch.static_ip),
            flat(&patch.framed_ipv6_prefix),
            flat(&patch.delegated_ipv6_prefix),
            flat(&patch.mac_lock),
        )?;
        self.check_plan(patch.plan_id.flatten()).await?;
        let sealed = match &patch.password {
            Some(p) if p.is_empty() => {
                return Err(StoreError::Invalid("password must not be empty".into()));
            }
            Some(p) => Some(self.store.secrets().seal_str(p)),
            None => None,
        };
        dispatch!(
            self.store,
            subscriber_update(self.tenant, id, patch, sealed.as_deref(), audit, now())
        )
    }

    /// Deletes a subscriber; returns whether it existed.
    pub async fn delete_subscriber(&self, id: SubscriberId) -> Result<bool> {
        dispatch!(self.store, subscriber_delete(self.tenant, id))
    }

    /// Lists subscribers by username with filters and a cursor.
    pub async fn subscribers(&self, q: &SubscriberQuery) -> Result<Page<Subscriber>> {
        let limit = q.limit.unwrap_or(50).clamp(1, 500);
        let search = q.search.as_deref().filter(|s| !s.is_empty());
        let mut items = dispatch!(
            self.store,
            subscribers_list(
                self.tenant,
                search,
                q.status,
                q.plan_id,
                q.after.as_deref(),
                limit + 1
            )
        )?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|s| s.username.clone())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Lists subscribers in any [`SubscriberSort`] order with filters and a cursor. Ascending
    /// by username, the cursor is the last username (as [`TenantScope::subscribers`]); any other
    /// order uses an opaque cursor carrying the last row's sort value and id.
    pub async fn subscribers_sorted(
        &self,
        q: &SubscriberQuery,
        sort: SubscriberSort,
    ) -> Result<Page<Subscriber>> {
        if sort == SubscriberSort::default() {
            return self.subscribers(q).await;
        }
        let limit = q.limit.unwrap_or(50).clamp(1, 500);
        let search = q.search.as_deref().filter(|s| !s.is_empty());
        let after = match q.after.as_deref() {
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                StoreError::Invalid(
                    "the cursor is not one this listing gave (keep the same sort between pages)"
                        .into(),
                )
            })?),
            None => None,
        };
        let time_key = matches!(
            sort.key,
            SubscriberSortKey::Created | SubscriberSortKey::Expiry
        );
        if let Some((v, _)) = &after
            && matches!(v, SortValue::Time(_)) != time_key
        {
            return Err(StoreError::Invalid(
                "the cursor belongs to another sort order; start again without a cursor".into(),
            ));
        }
        let mut rows = dispatch!(
            self.store,
            subscribers_list_sorted(
                self.tenant,
                search,
                q.status,
                q.plan_id,
                sort.key,
                sort.descending,
                after.as_ref(),
                limit + 1
            )
        )?;
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|(s, v)| encode_cursor(v, s.id))
        } else {
            None
        };
        Ok(Page {
            items: rows.into_iter().map(|(s, _)| s).collect(),
            next_cursor,
        })
    }

    /// Replaces a plan's fields; None when there is no such plan here.
    pub async fn update_plan(&self, id: PlanId, p: &NewPlan) -> Result<Option<Plan>> {
        validate_plan(p)?;
        dispatch!(self.store, plan_update(self.tenant, id, p)).map_err(|e| match e {
            StoreError::Db(e) => {
                conflict(e, || format!("a plan named {:?} already exists", p.name))
            }
            e => e,
        })
    }

    /// Makes a plan the one new subscribers get when none is named (every other plan stops
    /// being the default).
    pub async fn set_default_plan(&self, id: PlanId) -> Result<Plan> {
        if !dispatch!(self.store, plan_set_default(self.tenant, id))? {
            return Err(StoreError::NotFound(format!("plan {id}")));
        }
        self.plan(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("plan {id}")))
    }

    /// Deletes a plan; a plan that subscribers use is a conflict saying how many. False when
    /// there is no such plan here.
    pub async fn delete_plan(&self, id: PlanId) -> Result<bool> {
        dispatch!(self.store, plan_delete(self.tenant, id))
    }

    /// Changes a NAS (secrets sealed here); None when there is no such NAS here.
    pub async fn update_nas(&self, id: NasId, p: &NasPatch) -> Result<Option<Nas>> {
        if p.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(StoreError::Invalid("NAS name must not be empty".into()));
        }
        if p.secret.as_deref() == Some("") {
            return Err(StoreError::Invalid(
                "RADIUS secret must not be empty".into(),
            ));
        }
        if let Some(ip) = p.ip
            && (ip.is_unspecified() || ip.is_multicast())
        {
            return Err(StoreError::Invalid(format!(
                "{ip} cannot be a NAS source address"
            )));
        }
        let secrets = self.store.secrets();
        let secret = p.secret.as_deref().map(|s| secrets.seal_str(s));
        let api_password = p
            .api_password
            .as_ref()
            .map(|o| o.as_deref().map(|s| secrets.seal_str(s)));
        dispatch!(
            self.store,
            nas_update(
                self.tenant,
                id,
                p,
                secret.as_deref(),
                api_password.as_ref().map(|o| o.as_deref())
            )
        )
        .map_err(|e| match e {
            StoreError::Db(e) => {
                let on_ip = is_direct_ip_conflict(&e);
                conflict(e, || match p.ip {
                    Some(ip) if on_ip => format!(
                        "source address {ip} is already registered to a NAS on this platform; a direct NAS address can belong to only one account"
                    ),
                    _ => format!(
                        "a NAS named {:?} already exists",
                        p.name.as_deref().unwrap_or_default()
                    ),
                })
            }
            e => e,
        })
    }

    /// Changes a panel user's role, disabled flag or password; a change that leaves the tenant
    /// without an enabled owner is a conflict. Disabling or a new password signs the user out.
    /// Disabling, a new password or a new role also refuses the access tokens already issued.
    pub async fn update_user(&self, id: UserId, p: &UserPatch) -> Result<Option<TenantUser>> {
        let c = Cutoff::now();
        let r = dispatch!(self.store, user_update(self.tenant, id, p, c))?;
        Ok(r.map(|(u, cut)| {
            if cut {
                self.store.inner.revocations.cut(id.0, c);
            }
            u
        }))
    }

    /// Deletes a panel user (and its logins, and its access tokens at once); the last enabled
    /// owner cannot be deleted.
    pub async fn delete_user(&self, id: UserId) -> Result<bool> {
        let c = Cutoff::now();
        let gone = dispatch!(self.store, user_delete(self.tenant, id, c))?;
        if gone {
            self.store.inner.revocations.cut(id.0, c);
        }
        Ok(gone)
    }

    /// (start, input octets, output octets) of a username's sessions started since `since`.
    pub async fn session_usage(
        &self,
        username: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, i64, i64)>> {
        dispatch!(self.store, session_usage_rows(self.tenant, username, since))
    }

    /// Traffic per hour and username since `since` (hour starts, UTC): what the counters of the
    /// tenant's sessions rose by in each hour, so a window's sum is its true delta.
    pub async fn usage_hourly(&self, since: DateTime<Utc>) -> Result<Vec<HourlyUsage>> {
        dispatch!(self.store, usage_hourly_rows(self.tenant, since))
    }

    /// Stores an e-mail verification token (only its hash) for a user.
    pub async fn create_email_verification(
        &self,
        user: UserId,
        hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        dispatch!(
            self.store,
            email_verification_insert(self.tenant, user, hash, now(), expires_at)
        )
    }

    /// Uses an e-mail verification token (once).
    pub async fn use_email_verification(&self, hash: &str) -> Result<Verification> {
        dispatch!(self.store, email_verification_use(self.tenant, hash, now()))
    }

    /// Number of subscribers.
    pub async fn subscriber_count(&self) -> Result<i64> {
        dispatch!(self.store, subscribers_count(self.tenant))
    }

    // ---- NAS ----

    /// Adds a NAS; the RADIUS secret and API password are sealed. A direct address held by any
    /// tenant is a conflict whose message names no tenant.
    pub async fn create_nas(&self, n: &NewNas) -> Result<Nas> {
        if n.name.trim().is_empty() {
            return Err(StoreError::Invalid("NAS name must not be empty".into()));
        }
        if n.secret.is_empty() {
            return Err(StoreError::Invalid(
                "RADIUS secret must not be empty".into(),
            ));
        }
        if let Some(ip) = n.ip
            && (ip.is_unspecified() || ip.is_multicast())
        {
            return Err(StoreError::Invalid(format!(
                "{ip} cannot be a NAS source address"
            )));
        }
        let t = self.tenant().await?;
        let count = dispatch!(self.store, nas_count(self.tenant))?;
        if count >= t.limits.max_nas {
            return Err(StoreError::LimitReached(format!(
                "this tenant has reached its limit of {} NAS devices",
                t.limits.max_nas
            )));
        }
        let secrets = self.store.secrets();
        let secret = secrets.seal_str(&n.secret);
        let api_password = n.api_password.as_deref().map(|p| secrets.seal_str(p));
        dispatch!(self.store, nas_insert(self.tenant, NasId::new(), n, &secret, api_password.as_deref(), now())).map_err(|e| match e {
            StoreError::Db(e) => {
                let on_ip = is_direct_ip_conflict(&e);
                conflict(e, || match n.ip {
                Some(ip) if on_ip => format!(
                    "source address {ip} is already registered to a NAS on this platform; a direct NAS address can belong to only one account (use --tunnel, or ask support)"
                ),
                _ => format!("a NAS named {:?} already exists", n.name),
            })
            }
            e => e,
        })
    }

    /// All NAS devices, by name.
    pub async fn nas_list(&self) -> Result<Vec<Nas>> {
        dispatch!(self.store, nas_list(self.tenant))
    }

    /// A NAS by id.
    pub async fn nas(&self, id: NasId) -> Result<Option<Nas>> {
        dispatch!(self.store, nas_by_id(self.tenant, id))
    }

    /// A NAS by name.
    pub async fn nas_by_name(&self, name: &str) -> Result<Option<Nas>> {
        dispatch!(self.store, nas_by_name(self.tenant, name))
    }

    /// The NAS's RADIUS secret in clear.
    pub async fn nas_secret(&self, id: NasId) -> Result<String> {
        let sealed = dispatch!(self.store, nas_sealed_secret(self.tenant, id))?
            .ok_or_else(|| StoreError::NotFound(format!("NAS {id}")))?;
        Ok(self.store.secrets().open_str(&sealed)?)
    }

    /// Sets the RouterOS API login of a NAS; the password is sealed.
    pub async fn set_nas_api_credentials(
        &self,
        id: NasId,
        user: &str,
        password: &str,
    ) -> Result<()> {
        let sealed = self.store.secrets().seal_str(password);
        dispatch!(self.store, nas_set_api(self.tenant, id, user, &sealed))
    }

    /// The RouterOS API password of a NAS (opened), if set.
    pub async fn nas_api_password(&self, id: NasId) -> Result<Option<String>> {
        match dispatch!(self.store, nas_api_password(self.tenant, id))? {
            Some(sealed) => Ok(Some(self.store.secrets().open_str(&sealed)?)),
            None => Ok(None),
        }
    }

    /// Sets the RouterOS API port and whether it is API-SSL; false when there is no such NAS.
    pub async fn set_nas_api_endpoint(&self, id: NasId, port: u16, use_ssl: bool) -> Result<bool> {
        dispatch!(
            self.store,
            nas_set_api_endpoint(self.tenant, id, i64::from(port), use_ssl)
        )
    }

    /// The pinned SHA-256 fingerprint of the NAS's API-SSL certificate, if any.
    pub async fn nas_api_pin(&self, id: NasId) -> Result<Option<String>> {
        dispatch!(self.store, nas_api_pin(self.tenant, id))
    }

    /// Pins `fingerprint` on first use: only when nothing is pinned yet (a concurrent first
    /// connection cannot overwrite another's pin); returns whether it was stored.
    pub async fn pin_nas_api_first_use(&self, id: NasId, fingerprint: &str) -> Result<bool> {
        dispatch!(
            self.store,
            nas_set_api_pin(self.tenant, id, Some(fingerprint), true)
        )
    }

    /// Replaces (or with `None` clears, so the next connection pins) the API-SSL pin: the
    /// admin's answer to a changed router certificate. False when there is no such NAS.
    pub async fn repin_nas_api(&self, id: NasId, fingerprint: Option<&str>) -> Result<bool> {
        dispatch!(
            self.store,
            nas_set_api_pin(self.tenant, id, fingerprint, false)
        )
    }

    /// Records the RouterOS API state of a NAS and the last error (`None` clears it).
    pub async fn set_nas_api_state(
        &self,
        id: NasId,
        state: ApiState,
        error: Option<&str>,
    ) -> Result<()> {
        dispatch!(
            self.store,
            nas_set_api_state(self.tenant, id, state.as_str(), error, now())
        )
    }

    /// Deletes a NAS; returns whether it existed.
    pub async fn delete_nas(&self, id: NasId) -> Result<bool> {
        dispatch!(self.store, nas_delete(self.tenant, id))
    }

    // ---- peers ----

    /// Adds a WireGuard peer for a NAS; a private key we generated is sealed.
    pub async fn create_peer(
        &self,
        nas: NasId,
        public_key: &str,
        private_key: Option<&str>,
        tunnel_address: &str,
        relay_node: Option<&str>,
    ) -> Result<WgPeer> {
        if self.nas(nas).await?.is_none() {
            return Err(StoreError::NotFound(format!("NAS {nas}")));
        }
        let sealed = private_key.map(|k| self.store.secrets().seal_str(k));
        dispatch!(
            self.store,
            peer_insert(
                self.tenant,
                PeerId::new(),
                nas,
                public_key,
                sealed.as_deref(),
                tunnel_address,
                relay_node,
                now()
            )
        )
        .map_err(|e| match e {
            StoreError::Db(e) => conflict(e, || {
                "this public key or tunnel address is already in use".to_owned()
            }),
            e => e,
        })
    }

    /// Removes a peer (its NAS's tunnel goes down); false when there is no such peer here.
    pub async fn delete_peer(&self, id: PeerId) -> Result<bool> {
        dispatch!(self.store, peer_delete(self.tenant, id))
    }

    /// Records a peer's tunnel status (like `wg show`) and its NAS's tunnel state.
    pub async fn record_peer_status(&self, id: PeerId, st: &PeerStatusUpdate) -> Result<()> {
        dispatch!(
            self.store,
            peer_status(
                self.tenant,
                id,
                st.last_handshake,
                st.endpoint.as_deref(),
                st.rx_bytes,
                st.tx_bytes,
                st.handshake_tai64.as_ref().map(|b| &b[..]),
                st.state.as_str()
            )
        )
    }

    /// All peers.
    pub async fn peers(&self) -> Result<Vec<WgPeer>> {
        dispatch!(self.store, peers_list(self.tenant))
    }

    // ---- sessions, logs ----

    /// Sessions, newest first; only open ones when `online_only`.
    pub async fn sessions(&self, online_only: bool, limit: i64) -> Result<Vec<Session>> {
        dispatch!(
            self.store,
            sessions_list(self.tenant, online_only, limit.clamp(1, 1000))
        )
    }

    /// Opens a session row (Accounting Start always opens a new one).
    #[allow(clippy::too_many_arguments)]
    pub async fn session_start(
        &self,
        nas: NasId,
        subscriber: Option<SubscriberId>,
        username: &str,
        acct_session_id: &str,
        framed_ip: Option<&str>,
        calling_station_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<SessionId> {
        if self.nas(nas).await?.is_none() {
            return Err(StoreError::NotFound(format!("NAS {nas}")));
        }
        let id = SessionId::new();
        dispatch!(
            self.store,
            session_insert(
                self.tenant,
                id,
                nas,
                subscriber,
                username,
                acct_session_id,
                framed_ip,
                calling_station_id,
                at
            )
        )?;
        Ok(id)
    }

    /// Applies accounting records in one transaction; durable when this returns.
    pub async fn record_accounting(&self, records: &[AcctRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        dispatch!(self.store, acct_apply(self.tenant, records))
    }

    /// Raises an open session's counters to a router's reading (QuotaSync): each counter
    /// becomes the higher of the stored and the given absolute value, never their sum. Returns
    /// whether anything rose.
    pub async fn raise_session_counters(
        &self,
        nas: NasId,
        acct_session_id: &str,
        input_octets: i64,
        output_octets: i64,
    ) -> Result<bool> {
        dispatch!(
            self.store,
            session_raise(
                self.tenant,
                nas,
                acct_session_id,
                input_octets,
                output_octets,
                now()
            )
        )
    }

    /// Closes every open session of a NAS (Accounting-On/Off); returns how many.
    pub async fn close_nas_sessions(
        &self,
        nas: NasId,
        at: DateTime<Utc>,
        cause: &str,
    ) -> Result<u64> {
        dispatch!(self.store, acct_close_nas(self.tenant, nas, at, cause))
    }

    /// Closes open sessions without an update since `before` (cause `Stale-Session`).
    pub async fn close_stale_sessions(&self, before: DateTime<Utc>) -> Result<u64> {
        dispatch!(self.store, close_stale(self.tenant, before))
    }

    /// Open sessions of a username (simultaneous use).
    pub async fn open_session_count(&self, username: &str) -> Result<i64> {
        dispatch!(self.store, open_sessions_of(self.tenant, username))
    }

    /// Octets (in, out) of a username's sessions updated since `since` (usage is a sum over
    /// sessions, never an increment).
    pub async fn usage_since(
        &self,
        username: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<(i64, i64)> {
        dispatch!(self.store, usage_since(self.tenant, username, since))
    }

    /// What the session ledger is seeded with: the username's open sessions with their
    /// counters, and the octets of its closed sessions updated since `since`.
    pub async fn ledger_seed(
        &self,
        username: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<crate::aaa::ledger::Seed> {
        dispatch!(self.store, ledger_seed(self.tenant, username, since))
    }

    /// Remembers that this NAS sends Message-Authenticator for `method` (pap, chap, mschap).
    pub async fn mark_message_auth_seen(&self, nas: NasId, method: &str) -> Result<()> {
        dispatch!(self.store, nas_mark_ma_seen(self.tenant, nas, method))
    }

    /// Records the time of the NAS's latest RADIUS packet.
    pub async fn touch_nas(&self, nas: NasId, at: DateTime<Utc>) -> Result<()> {
        dispatch!(self.store, nas_touch(self.tenant, nas, at))
    }

    /// Appends post-auth lines (one transaction).
    pub async fn log_auth(&self, entries: &[AuthLogEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        dispatch!(self.store, auth_log_insert(self.tenant, entries))
    }

    /// Newest post-auth lines.
    pub async fn auth_log(&self, limit: i64) -> Result<Vec<AuthLogEntry>> {
        dispatch!(self.store, auth_log_list(self.tenant, limit.clamp(1, 1000)))
    }

    /// (time, outcome) of post-auth lines since `since`, newest first, at most `limit` (the
    /// panel's dashboard buckets them by hour).
    pub async fn auth_outcomes_since(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(DateTime<Utc>, String)>> {
        dispatch!(
            self.store,
            auth_outcomes_since(self.tenant, since, limit.clamp(1, 200_000))
        )
    }

    /// Sessions open now or stopped since `since`, newest first, at most `limit` (dashboard
    /// charts and top users).
    pub async fn sessions_since(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<Session>> {
        dispatch!(
            self.store,
            sessions_since(self.tenant, since, limit.clamp(1, 100_000))
        )
    }

    /// Appends an audit line.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        details: Option<&str>,
    ) -> Result<()> {
        self.audit_from(actor, action, target, details, None).await
    }

    /// Appends an audit line with the client address of the request that caused it.
    pub async fn audit_from(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        details: Option<&str>,
        client_ip: Option<&str>,
    ) -> Result<()> {
        dispatch!(
            self.store,
            audit_insert(
                self.tenant,
                actor,
                action,
                target,
                details,
                client_ip,
                now()
            )
        )
    }

    /// A panel user by id.
    pub async fn user(&self, id: UserId) -> Result<Option<TenantUser>> {
        dispatch!(self.store, user_by_id(self.tenant, id))
    }

    /// A session by id.
    pub async fn session(&self, id: SessionId) -> Result<Option<Session>> {
        dispatch!(self.store, session_by_id(self.tenant, id))
    }

    /// Starts a refresh-token family; `hash` is the SHA-256 of the first token.
    pub async fn create_refresh_family(
        &self,
        id: uuid::Uuid,
        user: UserId,
        hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        dispatch!(
            self.store,
            refresh_insert(self.tenant, id, user, hash, now(), expires_at)
        )
    }

    /// Swaps a family's current token hash for `new_hash` if `presented` is current; a stale
    /// (already rotated) token revokes the whole family.
    pub async fn rotate_refresh(
        &self,
        id: uuid::Uuid,
        presented: &str,
        new_hash: &str,
    ) -> Result<Rotation<UserId>> {
        dispatch!(
            self.store,
            refresh_rotate(self.tenant, id, presented, new_hash, now())
        )
    }

    /// Revokes a refresh family (logout); false when it was already revoked or unknown.
    pub async fn revoke_refresh(&self, id: uuid::Uuid, reason: &str) -> Result<bool> {
        dispatch!(self.store, refresh_revoke(self.tenant, id, reason, now()))
    }

    /// Whether a refresh family is neither revoked nor expired.
    pub async fn refresh_is_live(&self, id: uuid::Uuid) -> Result<bool> {
        dispatch!(self.store, refresh_is_live(self.tenant, id, now()))
    }

    /// Stores an API token (only its hash).
    pub async fn create_api_token(
        &self,
        id: uuid::Uuid,
        name: &str,
        hash: &str,
        scope: &str,
        created_by: &str,
    ) -> Result<()> {
        dispatch!(
            self.store,
            api_token_insert(self.tenant, id, name, hash, scope, created_by, now())
        )
    }

    /// An API token by the hash of its text.
    pub async fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiTokenRow>> {
        dispatch!(self.store, api_token_by_hash(self.tenant, hash))
    }

    /// Every API token of the tenant (never the token text).
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>> {
        dispatch!(self.store, api_tokens_list(self.tenant))
    }

    /// Revokes an API token; false when unknown or already revoked.
    pub async fn revoke_api_token(&self, id: uuid::Uuid) -> Result<bool> {
        dispatch!(self.store, api_token_revoke(self.tenant, id, now()))
    }

    /// Newest audit lines.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        dispatch!(self.store, audit_list(self.tenant, limit.clamp(1, 1000)))
    }
}

/// The named cross-tenant reads. On PostgreSQL they run as the system role (SELECT only, and no
/// sealed columns). Tenant-path code holds only a [`TenantScope`].
#[derive(Clone)]
pub struct SystemScope {
    store: Store,
}

impl std::fmt::Debug for SystemScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemScope")
    }
}

impl SystemScope {
    /// Host routing, provisioning: tenant by slug (any status).
    pub async fn tenant_by_slug(&self, slug: &Slug) -> Result<Option<Tenant>> {
        dispatch!(self.store, sys_tenant_by_slug(slug))
    }

    /// Tenant by id (any status).
    pub async fn tenant_by_id(&self, id: TenantId) -> Result<Option<Tenant>> {
        dispatch!(self.store, sys_tenant_by_id(id))
    }

    /// Operator console: every tenant with counts.
    pub async fn tenants(&self) -> Result<Vec<TenantSummary>> {
        dispatch!(self.store, sys_tenants_summary())
    }

    /// DNS: slugs of tenants that resolve (provisioning excluded, deleted excluded), each with
    /// the relay node holding its peers (the tenant's own, else its first peer's).
    pub async fn live_tenants(&self) -> Result<Vec<(Slug, Option<String>)>> {
        dispatch!(self.store, sys_live_tenants())
    }

    /// DNS: every relay node with the public endpoint (`IP:port`) its routers dial.
    pub async fn relay_endpoints(&self) -> Result<Vec<(String, Option<String>)>> {
        dispatch!(self.store, sys_relay_endpoints())
    }

    /// Direct RADIUS: which tenant's NAS owns this source address.
    pub async fn nas_by_source(&self, ip: IpAddr) -> Result<Option<DirectNas>> {
        dispatch!(self.store, sys_nas_by_source(&ip.to_string()))
    }

    /// Relay: every peer with what a relay node needs at start.
    pub async fn relay_peers(&self) -> Result<Vec<RelayPeer>> {
        dispatch!(self.store, sys_relay_peers())
    }

    /// Relay: who a WireGuard public key belongs to.
    pub async fn peer_by_public_key(&self, public_key: &str) -> Result<Option<PeerIdentity>> {
        dispatch!(self.store, sys_peer_by_key(public_key))
    }

    /// Sweeper: tenants marked deleted before `before`.
    pub async fn tenants_to_purge(&self, before: DateTime<Utc>) -> Result<Vec<TenantId>> {
        dispatch!(self.store, sys_tenants_to_purge(before))
    }

    /// Sweeper: tenants with open sessions not updated since `before`.
    pub async fn tenants_with_stale_sessions(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<TenantId>> {
        dispatch!(self.store, sys_tenants_with_stale_sessions(before))
    }

    /// Sweeper: (tenant, username) of online subscribers whose expiry has passed.
    pub async fn expired_online(&self, now: DateTime<Utc>) -> Result<Vec<(TenantId, String)>> {
        dispatch!(self.store, sys_expired_online(now))
    }

    /// Every relay node with its last heartbeat and report.
    pub async fn relay_nodes(&self) -> Result<Vec<RelayNode>> {
        dispatch!(self.store, sys_relay_nodes())
    }

    /// Every WireGuard peer with its tenant, NAS, node and newest handshake (the relay page).
    pub async fn relay_peer_status(&self) -> Result<Vec<RelayPeerStatus>> {
        dispatch!(self.store, sys_relay_peer_status())
    }

    /// RouterOS API polling since `since`: how many tenants and NAS had their API checked.
    pub async fn routeros_checked_since(&self, since: DateTime<Utc>) -> Result<(i64, i64)> {
        dispatch!(self.store, sys_routeros_checked_since(since))
    }

    /// When the zone's data (tenants, peers, extra records) last changed, from the event log:
    /// the DNS role rebuilds its zone, with a new serial, on each such event.
    pub async fn zone_changed_at(&self) -> Result<Option<DateTime<Utc>>> {
        dispatch!(self.store, sys_zone_changed_at())
    }

    /// DNS: every managed record.
    pub async fn dns_records(&self) -> Result<Vec<DnsRecord>> {
        dispatch!(self.store, sys_dns_records())
    }
}

/// Platform tables that belong to no tenant: operators, relay nodes, DNS records, events, keys.
#[derive(Clone)]
pub struct PlatformScope {
    store: Store,
}

impl std::fmt::Debug for PlatformScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlatformScope")
    }
}

impl PlatformScope {
    /// Adds an operator with a sealed TOTP secret.
    pub async fn create_operator(
        &self,
        email: &Email,
        password_hash: &str,
        totp_secret: &[u8],
    ) -> Result<Operator> {
        let sealed = self.store.secrets().seal(totp_secret);
        dispatch!(
            self.store,
            operator_insert(OperatorId::new(), email, password_hash, &sealed, now())
        )
        .map_err(|e| match e {
            StoreError::Db(e) => conflict(e, || {
                format!("an operator with e-mail {email} already exists")
            }),
            e => e,
        })
    }

    /// An operator, its password hash and TOTP secret, by e-mail.
    pub async fn operator_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<(Operator, String, Vec<u8>)>> {
        let found = dispatch!(self.store, operator_by_email(email))?;
        match found {
            Some((op, hash, sealed)) => {
                let totp = self.store.secrets().open(&sealed)?;
                Ok(Some((op, hash, totp)))
            }
            None => Ok(None),
        }
    }

    /// All operators.
    pub async fn operators(&self) -> Result<Vec<Operator>> {
        dispatch!(self.store, operators_list())
    }

    /// Appends a platform audit line.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        details: Option<&str>,
    ) -> Result<()> {
        self.audit_from(actor, action, target, details, None).await
    }

    /// Appends a platform audit line with the client address of the request.
    pub async fn audit_from(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        details: Option<&str>,
        client_ip: Option<&str>,
    ) -> Result<()> {
        dispatch!(
            self.store,
            operator_audit_insert(actor, action, target, details, client_ip, now())
        )
    }

    /// An operator by id.
    pub async fn operator(&self, id: OperatorId) -> Result<Option<Operator>> {
        dispatch!(self.store, operator_by_id(id))
    }

    /// Marks an operator's TOTP enrolment complete (first login with a valid code).
    pub async fn set_operator_enrolled(&self, id: OperatorId) -> Result<()> {
        dispatch!(self.store, operator_set_enrolled(id))
    }

    /// Signing keys of one purpose (`tenant`, `operator`), oldest first, secrets sealed.
    pub async fn signing_keys(&self, purpose: &str) -> Result<Vec<SigningKeyRow>> {
        dispatch!(self.store, signing_keys(purpose))
    }

    /// Adds a signing key; `secret` is sealed here.
    pub async fn add_signing_key(&self, kid: &str, purpose: &str, secret: &[u8]) -> Result<()> {
        let sealed = self.store.secrets().seal(secret);
        dispatch!(self.store, signing_key_insert(kid, purpose, &sealed, now()))
    }

    /// Retires a signing key: still accepted for verification until its tokens expire.
    pub async fn retire_signing_key(&self, kid: &str) -> Result<()> {
        dispatch!(self.store, signing_key_retire(kid, now()))
    }

    /// Starts an operator refresh family.
    pub async fn create_operator_refresh_family(
        &self,
        id: uuid::Uuid,
        operator: OperatorId,
        hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        dispatch!(
            self.store,
            op_refresh_insert(id, operator, hash, now(), expires_at)
        )
    }

    /// Operator counterpart of [`TenantScope::rotate_refresh`].
    pub async fn rotate_operator_refresh(
        &self,
        id: uuid::Uuid,
        presented: &str,
        new_hash: &str,
    ) -> Result<Rotation<OperatorId>> {
        dispatch!(
            self.store,
            op_refresh_rotate(id, presented, new_hash, now())
        )
    }

    /// Revokes an operator refresh family.
    pub async fn revoke_operator_refresh(&self, id: uuid::Uuid, reason: &str) -> Result<bool> {
        dispatch!(self.store, op_refresh_revoke(id, reason, now()))
    }

    /// Whether an operator refresh family is live.
    pub async fn operator_refresh_is_live(&self, id: uuid::Uuid) -> Result<bool> {
        dispatch!(self.store, op_refresh_is_live(id, now()))
    }

    /// Revokes one access token by its `jti` until `expires_at`.
    pub async fn revoke_access_token(&self, jti: &str, expires_at: DateTime<Utc>) -> Result<()> {
        dispatch!(self.store, jti_revoke(jti, expires_at))?;
        self.store.inner.revocations.add(jti, expires_at);
        Ok(())
    }

    /// Whether an access token was revoked, by its id or by a cutoff of its subject (issued
    /// at `issued`): answered from memory, which is reloaded from the store at most every
    /// second (see `revocations`), not a query per request.
    pub async fn access_token_refused(
        &self,
        jti: &str,
        sub: uuid::Uuid,
        issued: DateTime<Utc>,
    ) -> Result<bool> {
        let list = &self.store.inner.revocations;
        if !list.fresh() {
            let _reload = list.reloading().await;
            if !list.fresh() {
                let now = now();
                let rows = dispatch!(self.store, jti_live(now))?;
                let cutoffs = dispatch!(self.store, cutoffs_live(now))?;
                list.merge_loaded(rows, cutoffs, now);
            }
        }
        Ok(list.contains(jti) || list.cut_off(sub, issued))
    }

    /// Forgets revocations of tokens that have expired anyway.
    pub async fn prune_revocations(&self) -> Result<u64> {
        dispatch!(self.store, jti_prune(now()))
    }

    /// Drops the hourly traffic (dashboard charts) of every tenant older than `before`.
    pub async fn prune_usage_hourly(&self, before: DateTime<Utc>) -> Result<u64> {
        dispatch!(self.store, usage_hourly_prune(before))
    }

    /// Refreshes the planner's statistics of the accounting sessions (PostgreSQL; SQLite
    /// plans without them).
    pub async fn refresh_session_stats(&self) -> Result<()> {
        dispatch!(self.store, sessions_analyze())
    }

    /// Appends an event; returns its position.
    pub async fn append_event(
        &self,
        tenant: Option<TenantId>,
        kind: &str,
        correlation_id: Option<uuid::Uuid>,
        payload: &str,
    ) -> Result<i64> {
        dispatch!(
            self.store,
            event_insert(tenant, kind, correlation_id, payload, now())
        )
    }

    /// Events after position `after`, oldest first.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        dispatch!(self.store, events_after(after, limit))
    }

    /// Position of the newest event (0 when empty).
    pub async fn last_event_id(&self) -> Result<i64> {
        dispatch!(self.store, events_last_id())
    }

    /// Removes events older than `before`; returns how many.
    pub async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64> {
        dispatch!(self.store, events_prune(before))
    }

    /// Adds a DNS record.
    pub async fn add_dns_record(
        &self,
        tenant: Option<TenantId>,
        name: &str,
        rtype: &str,
        value: &str,
        ttl: i64,
    ) -> Result<DnsRecord> {
        let rec = DnsRecord {
            id: DnsRecordId::new(),
            tenant_id: tenant,
            name: name.trim_end_matches('.').to_lowercase(),
            rtype: rtype.to_uppercase(),
            value: value.to_owned(),
            ttl,
            created_at: now(),
        };
        dispatch!(self.store, dns_insert(&rec))?;
        Ok(rec)
    }

    /// Removes records of a name and type (all values, or just `value`); returns how many.
    pub async fn remove_dns_records(
        &self,
        name: &str,
        rtype: &str,
        value: Option<&str>,
    ) -> Result<u64> {
        dispatch!(
            self.store,
            dns_delete(
                &name.trim_end_matches('.').to_lowercase(),
                &rtype.to_uppercase(),
                value
            )
        )
    }

    /// The ACME account credentials (JSON, opened) registered with `directory`.
    pub async fn acme_account(&self, directory: &str) -> Result<Option<String>> {
        match dispatch!(self.store, acme_account(directory))? {
            Some(sealed) => Ok(Some(self.store.secrets().open_str(&sealed)?)),
            None => Ok(None),
        }
    }

    /// Stores the ACME account credentials of `directory` (they hold the account key: sealed).
    pub async fn save_acme_account(
        &self,
        directory: &str,
        contact: Option<&str>,
        credentials_json: &str,
    ) -> Result<()> {
        let sealed = self.store.secrets().seal_str(credentials_json);
        dispatch!(
            self.store,
            acme_account_upsert(directory, contact, &sealed, now())
        )
    }

    /// The certificate of `name` (the zone), without its key.
    pub async fn certificate(&self, name: &str) -> Result<Option<StoredCertificate>> {
        Ok(dispatch!(self.store, cert_get(name))?.map(|(c, _)| c))
    }

    /// The certificate of `name` with its private key PEM (opened), when one was issued.
    pub async fn certificate_with_key(
        &self,
        name: &str,
    ) -> Result<Option<(StoredCertificate, String)>> {
        match dispatch!(self.store, cert_get(name))? {
            Some((c, Some(sealed))) if c.chain_pem.is_some() => {
                Ok(Some((c, self.store.secrets().open_str(&sealed)?)))
            }
            _ => Ok(None),
        }
    }

    /// Stores a newly issued chain and its key (sealed); clears the last error.
    pub async fn save_certificate(
        &self,
        name: &str,
        names: &[String],
        chain_pem: &str,
        key_pem: &str,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<()> {
        let sealed = self.store.secrets().seal_str(key_pem);
        dispatch!(
            self.store,
            cert_store(
                name,
                &names.join(","),
                chain_pem,
                &sealed,
                not_before,
                not_after,
                now()
            )
        )
    }

    /// Records a failed issue or renewal (the stored chain, if any, stays).
    pub async fn record_certificate_error(
        &self,
        name: &str,
        names: &[String],
        error: &str,
    ) -> Result<()> {
        dispatch!(self.store, cert_error(name, &names.join(","), error, now()))
    }

    /// Takes or extends the cluster-wide lease `name` for `holder` until `ttl` from now; false
    /// when another holder's lease has not expired.
    pub async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now_ms = Utc::now().timestamp_millis();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        dispatch!(
            self.store,
            lease_take(name, holder, now_ms, now_ms.saturating_add(ttl_ms))
        )
    }

    /// The holder of an unexpired lease.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>> {
        dispatch!(
            self.store,
            lease_holder(name, Utc::now().timestamp_millis())
        )
    }

    /// Gives a lease up (only when `holder` holds it).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        dispatch!(self.store, lease_release(name, holder))
    }

    /// Registers or refreshes a relay node; the private key is sealed.
    pub async fn upsert_relay_node(
        &self,
        name: &str,
        public_key: &str,
        private_key: &str,
        endpoint: Option<&str>,
    ) -> Result<()> {
        let sealed = self.store.secrets().seal_str(private_key);
        dispatch!(
            self.store,
            relay_upsert(name, public_key, &sealed, endpoint, now())
        )
    }

    /// Sets the endpoint routers dial for a relay node; true when it changed (the key stays).
    pub async fn set_relay_endpoint(&self, name: &str, endpoint: Option<&str>) -> Result<bool> {
        dispatch!(self.store, relay_set_endpoint(name, endpoint, now()))
    }

    /// A relay node's heartbeat with its counters; false when the node is not registered.
    pub async fn report_relay_stats(&self, name: &str, stats: &RelayStats) -> Result<bool> {
        let json = serde_json::to_string(stats)
            .map_err(|e| StoreError::Invalid(format!("relay stats: {e}")))?;
        dispatch!(self.store, relay_report(name, &json, now()))
    }

    /// A relay node's key pair (private key opened).
    pub async fn relay_node_keys(&self, name: &str) -> Result<Option<(String, String)>> {
        match dispatch!(self.store, relay_keys(name))? {
            Some((public, sealed)) => Ok(Some((public, self.store.secrets().open_str(&sealed)?))),
            None => Ok(None),
        }
    }
}

fn validate_username(u: &str) -> Result<()> {
    if u.is_empty() || u.len() > 253 {
        return Err(StoreError::Invalid(
            "username must be 1 to 253 characters".into(),
        ));
    }
    if u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(StoreError::Invalid(format!(
            "username {u:?} must not contain spaces or control characters"
        )));
    }
    Ok(())
}

fn validate_subscriber_fields(
    static_ip: Option<&str>,
    v6: Option<&str>,
    pd: Option<&str>,
    mac: Option<&str>,
) -> Result<()> {
    if let Some(ip) = static_ip
        && ip.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(StoreError::Invalid(format!(
            "static IP {ip:?} is not an IPv4 address"
        )));
    }
    for (what, p) in [("Framed-IPv6-Prefix", v6), ("Delegated-IPv6-Prefix", pd)] {
        if let Some(p) = p
            && p.parse::<ipnet::Ipv6Net>().is_err()
        {
            return Err(StoreError::Invalid(format!(
                "{what} {p:?} is not an IPv6 prefix such as 2001:db8:1::/64"
            )));
        }
    }
    if let Some(m) = mac
        && normalize_mac(m).is_none()
    {
        return Err(StoreError::Invalid(format!(
            "MAC {m:?} is not a MAC address such as AA:BB:CC:DD:EE:FF"
        )));
    }
    Ok(())
}

/// Normalises a MAC address to `AA:BB:CC:DD:EE:FF` (accepts `:`, `-`, `.` or no separators).
pub fn normalize_mac(m: &str) -> Option<String> {
    let hex: String = m
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_uppercase();
    Some(
        up.as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn validate_plan(p: &NewPlan) -> Result<()> {
    if p.name.trim().is_empty() {
        return Err(StoreError::Invalid("plan name must not be empty".into()));
    }
    let rates = [
        ("download", Some(p.download_kbps)),
        ("upload", Some(p.upload_kbps)),
        ("burst download", p.burst_download_kbps),
        ("burst upload", p.burst_upload_kbps),
        ("burst threshold", p.burst_threshold_kbps),
        ("FUP download", p.fup_download_kbps),
        ("FUP upload", p.fup_upload_kbps),
    ];
    for (what, v) in rates {
        if let Some(v) = v
            && v <= 0
        {
            return Err(StoreError::Invalid(format!(
                "{what} rate must be a positive number of kbit/s"
            )));
        }
    }
    if p.fup_download_kbps.is_some() != p.fup_upload_kbps.is_some() {
        return Err(StoreError::Invalid(
            "give both FUP rates (download and upload) or neither".into(),
        ));
    }
    if p.fup_download_kbps.is_some() && p.quota_bytes.is_none() {
        return Err(StoreError::Invalid("FUP rates need a quota".into()));
    }
    if let Some(q) = p.quota_bytes
        && q <= 0
    {
        return Err(StoreError::Invalid("quota must be positive".into()));
    }
    if let Some(s) = p.sim_use
        && s < 1
    {
        return Err(StoreError::Invalid(
            "simultaneous use must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Shortest per-tenant QuotaSync interval (seconds): a router is not polled more often.
pub const QUOTA_SYNC_MIN_S: u32 = 10;
/// Longest per-tenant QuotaSync interval (seconds).
pub const QUOTA_SYNC_MAX_S: u32 = 3600;

/// Refuses a per-tenant QuotaSync interval outside [`QUOTA_SYNC_MIN_S`]..=[`QUOTA_SYNC_MAX_S`].
pub fn check_quota_sync(secs: u32) -> Result<()> {
    if (QUOTA_SYNC_MIN_S..=QUOTA_SYNC_MAX_S).contains(&secs) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "QuotaSync interval must be {QUOTA_SYNC_MIN_S} to {QUOTA_SYNC_MAX_S} seconds, not {secs}"
        )))
    }
}

/// Busy timeout of SQLite connections (CLI and `serve` write at once).
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The default SQLite location inside a data dir.
pub fn sqlite_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("proxpanel.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interleaved sessions: one group per session and hour, one run per group position, each
    /// session once per run and in its order.
    #[test]
    fn accounting_runs_keep_each_sessions_order() {
        let nas = NasId::new();
        let t0 = DateTime::parse_from_rfc3339("2026-12-07T10:59:58Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now());
        let rec = |asid: &str, kind: AcctKind, octets: i64, s: i64| AcctRecord {
            id: SessionId::new(),
            kind,
            nas,
            subscriber: None,
            username: "u".into(),
            acct_session_id: asid.into(),
            framed_ip: None,
            calling_station_id: None,
            nas_port_id: None,
            session_time_s: 0,
            input_octets: octets,
            output_octets: 0,
            terminate_cause: None,
            at: t0 + chrono::Duration::seconds(s),
        };
        let mut records = Vec::new();
        for (kind, o) in [
            (AcctKind::Start, 0),
            (AcctKind::Interim, 1),
            (AcctKind::Stop, 2),
        ] {
            for s in ["a", "b", "c", "d"] {
                records.push(rec(s, kind, o, 0));
            }
        }
        // A reused id after the Stop, and one session of another NAS with the same id.
        records.push(rec("a", AcctKind::Start, 3, 0));
        let mut other = rec("a", AcctKind::Start, 0, 0);
        other.nas = NasId::new();
        records.push(other);
        // Interims of "e" on either side of an hour, then its Stop and one repeated.
        records.push(rec("e", AcctKind::Interim, 5, 0));
        records.push(rec("e", AcctKind::Interim, 6, 1));
        records.push(rec("e", AcctKind::Interim, 7, 2));
        records.push(rec("e", AcctKind::Stop, 8, 3));
        records.push(rec("e", AcctKind::Stop, 8, 4));
        // After the reused id's Start, its Interim joins it.
        records.push(rec("a", AcctKind::Interim, 4, 0));
        let runs = acct_runs(&records);
        let shape: Vec<Vec<Vec<(&str, i64)>>> = runs
            .iter()
            .map(|r| {
                r.iter()
                    .map(|g| {
                        g.records()
                            .iter()
                            .map(|x| (x.acct_session_id.as_str(), x.input_octets))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                vec![
                    vec![("a", 0), ("a", 1), ("a", 2)],
                    vec![("b", 0), ("b", 1), ("b", 2)],
                    vec![("c", 0), ("c", 1), ("c", 2)],
                    vec![("d", 0), ("d", 1), ("d", 2)],
                    vec![("a", 0)],
                    vec![("e", 5), ("e", 6)],
                ],
                vec![vec![("a", 3), ("a", 4)], vec![("e", 7), ("e", 8)]],
                vec![vec![("e", 8)]],
            ]
        );
        let e = &runs[1][1];
        assert_eq!(
            (e.input_octets(), e.stops(), e.first().input_octets),
            (8, true, 7)
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/pp"),
            "postgres://app:***@db:5432/pp"
        );
        assert!(!redact_url("postgres://app:s3cret@db/pp").contains("s3cret"));
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }

    #[test]
    fn macs_normalise() {
        assert_eq!(
            normalize_mac("aa-bb-cc-dd-ee-ff").as_deref(),
            Some("AA:BB:CC:DD:EE:FF")
        );
        assert_eq!(
            normalize_mac("aabb.ccdd.eeff").as_deref(),
            Some("AA:BB:CC:DD:EE:FF")
        );
        assert_eq!(normalize_mac("zz:bb:cc:dd:ee:ff"), None);
    }
}
