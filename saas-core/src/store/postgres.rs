//! PostgreSQL backend: an application pool (RLS-bound role), a system pool (read-only role for the
//! named cross-tenant reads) and migrations through the owner role.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection, Pool, Postgres, Transaction};

use crate::ids::TenantId;
use crate::store::pinned::{ACQUIRE_TIMEOUT, ReadConn, ReadPool};
use crate::store::{AcctLane, StoreOptions, redact_url};

type DbRow = sqlx::postgres::PgRow;
type DbKind = Postgres;

/// Roles the schema grants to (created by infra/postgres/roles.sql).
pub(crate) const REQUIRED_ROLES: [&str; 2] = ["proxpanel_app", "proxpanel_system"];

/// Smallest application pool: one connection per accounting combiner lane (each detaches its
/// own; the spool drains through them too) plus four.
const MIN_APP_POOL: u32 = crate::aaa::writer::LANES as u32 + 4;

/// LISTEN/NOTIFY channel of bus wake-ups.
const EVENTS_CHANNEL: &str = "proxpanel_events";

pub(super) struct Db {
    pool: Pool<Postgres>,
    /// Tenant reads, on sessions that keep their tenant (see [`ReadPool`]).
    reads: ReadPool,
    system: Pool<Postgres>,
    admin_url: String,
    url: String,
}

async fn pool(url: &str, max: u32) -> Result<Pool<Postgres>, StoreError> {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A ping before every checkout is one more round trip per query; a broken connection
        // fails its query instead, and the pool replaces it.
        .test_before_acquire(false)
        .connect(url)
        .await
        .map_err(|source| StoreError::Connect {
            url: redact_url(url),
            source,
        })
}

impl Db {
    pub(super) async fn connect(opts: &StoreOptions) -> Result<Self, StoreError> {
        // The accounting writer commits (and drains its spool) on connections it detached from
        // this pool; the floor leaves room beside them for the auth log writer and every
        // tenant write (the default is 16). Tenant reads have their own pool (ReadPool).
        let pool_ = pool(&opts.url, opts.max_connections.max(MIN_APP_POOL)).await?;
        let system = match &opts.system_url {
            Some(u) if u != &opts.url => pool(u, (opts.max_connections / 2).max(2)).await?,
            _ => pool_.clone(),
        };
        // Reads are short; half the application pool's size serves them (at least four).
        let reads = ReadPool::new(
            (*pool_.connect_options()).clone(),
            usize::try_from(opts.max_connections / 2)
                .unwrap_or(4)
                .max(4),
        );
        Ok(Self {
            pool: pool_,
            reads,
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
        self.reads.close().await;
        self.pool.close().await;
        self.system.close().await;
    }

    /// A read of one tenant: its statements run on a session whose `app.tenant_id` says this
    /// tenant (RLS sees it), each statement its own snapshot, with no transaction around them.
    async fn read(&self, t: TenantId) -> Result<ReadConn, StoreError> {
        self.reads.get(t, false).await
    }

    /// [`Self::read`] whose statements use cached generic plans: for statements simple enough
    /// that the generic plan is the right one, but whose estimates for a parameter (a text
    /// range, an id list) would keep PostgreSQL planning each call anew.
    async fn read_generic(&self, t: TenantId) -> Result<ReadConn, StoreError> {
        self.reads.get(t, true).await
    }

    /// A transaction bound to one tenant: `app.tenant_id` is set for this transaction only, so
    /// RLS policies see it and a pooled connection never carries it over.
    async fn write(&self, t: TenantId) -> Result<Transaction<'static, Postgres>, StoreError> {
        // BEGIN and the tenant setting in one round trip (simple query protocol). The value is a
        // typed UUID's canonical text (hex digits and dashes), so inlining it is safe.
        let begin = format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{}', true)",
            t.0.hyphenated()
        );
        Ok(self.pool.begin_with(sqlx::AssertSqlSafe(begin)).await?)
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

    /// Appends an event in one statement (its own transaction): the advisory lock serialises
    /// inserts until commit so ids become visible in order (a poller remembers the last id seen
    /// and would step over a late commit), and the NOTIFY, delivered at commit, wakes every
    /// LISTENing process. The MATERIALIZED CTE is scanned before the row (and its id) is made.
    pub(super) async fn event_insert(
        &self,
        tenant: Option<TenantId>,
        kind: &str,
        corr: Option<Uuid>,
        payload: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "WITH serial AS MATERIALIZED (SELECT pg_advisory_xact_lock(7201001), pg_notify($6, ''))
             INSERT INTO events (at, tenant_id, kind, correlation_id, payload)
             SELECT $1, $2, $3, $4, $5 FROM serial
             RETURNING id",
        )
        .bind(now)
        .bind(tenant.map(|t| t.0))
        .bind(kind)
        .bind(corr)
        .bind(payload)
        .bind(EVENTS_CHANNEL)
        .fetch_one(self.app())
        .await?;
        Ok(id)
    }
}

impl Db {
    /// Drops every tenant's hourly traffic older than `before` (through the owner's function:
    /// row-level security keeps the application role to one tenant).
    pub(super) async fn usage_hourly_prune(
        &self,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT usage_hourly_prune($1)")
            .bind(before)
            .fetch_one(self.app())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// ANALYZE radius_sessions, through the owner's function (migration 0016).
    pub(super) async fn sessions_analyze(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT radius_sessions_analyze()")
            .execute(self.app())
            .await?;
        Ok(())
    }

    /// A run of accounting groups with distinct sessions, in one statement whatever its size:
    /// every Start's group in one INSERT (skipping a Start already stored, as a late retransmit
    /// would be), every Interim/Stop group in one UPDATE of the open sessions. What the statement
    /// could not apply as a group (see [`super::AcctGroup`]) takes the one-by-one path, in order.
    async fn acct_run(
        &self,
        conn: &mut PgConnection,
        t: TenantId,
        run: &[super::AcctGroup<'_>],
    ) -> Result<(), StoreError> {
        if !super::bulk_worthy(run) {
            return self.acct_each(conn, t, run).await;
        }
        let missed = self.acct_bulk(conn, t, run).await?;
        self.acct_each(conn, t, missed).await
    }

    /// The bulk statement of [`Db::acct_run`]; returns the groups it did not apply: an update
    /// group that found no open session (a lost Start, a repeated Stop), and a Start's group of
    /// several records whose session row or another open session of its key exists (a replay,
    /// a reused Acct-Session-Id); their records take the one-by-one path.
    async fn acct_bulk<'g, 'r>(
        &self,
        conn: &mut PgConnection,
        t: TenantId,
        run: &'g [super::AcctGroup<'r>],
    ) -> Result<Vec<&'g super::AcctGroup<'r>>, StoreError> {
        let started = |r: &AcctRecord| r.at - chrono::Duration::seconds(r.session_time_s.max(0));
        let (starts, updates): (Vec<&super::AcctGroup<'r>>, Vec<&super::AcctGroup<'r>>) =
            run.iter().partition(|g| g.first().kind == AcctKind::Start);
        // One statement, one round trip: the INSERT and the UPDATE see the same snapshot, which
        // is right because a run's sessions are distinct (no update targets a row inserted here).
        // A single Start is skipped when its session is stored (an open session of its key that
        // started within 5 s); a group is inserted only where it alone makes the session (no
        // open session of its key at all, which its Interims would update too).
        let rows: Vec<(Option<i32>, Option<uuid::Uuid>)> = sqlx::query_as(
            "WITH ins AS (
                INSERT INTO radius_sessions (id, tenant_id, nas_id, subscriber_id, username, acct_session_id, framed_ip,
                    calling_station_id, nas_port_id, started_at, updated_at, stopped_at, session_time_s, input_octets,
                    output_octets, terminate_cause)
                 SELECT u.id, $1, u.nas, u.sub, u.username, u.asid, u.ip, u.csid, u.port, u.started, u.at, u.stopped,
                        u.st, u.i, u.o, u.cause
                 FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[],
                             $9::text[], $10::timestamptz[], $11::timestamptz[], $12::int8[], $13::int8[], $14::int8[],
                             $25::timestamptz[], $26::text[], $27::bool[])
                      AS u(id, nas, sub, username, asid, ip, csid, port, started, at, st, i, o, stopped, cause, grouped)
                 WHERE NOT EXISTS (
                    SELECT 1 FROM radius_sessions s
                    WHERE s.tenant_id = $1 AND s.nas_id = u.nas AND s.acct_session_id = u.asid
                      AND s.stopped_at IS NULL
                      AND (u.grouped OR s.started_at BETWEEN u.started - interval '5 seconds' AND u.started + interval '5 seconds'))
                 ON CONFLICT (id) DO NOTHING
                 RETURNING id
             ), upd AS (
                UPDATE radius_sessions s SET
                    input_octets = GREATEST(s.input_octets, u.i),
                    output_octets = GREATEST(s.output_octets, u.o),
                    session_time_s = GREATEST(s.session_time_s, u.st),
                    framed_ip = COALESCE(u.ip, s.framed_ip),
                    updated_at = u.at,
                    stopped_at = CASE WHEN u.stop THEN u.at ELSE s.stopped_at END,
                    terminate_cause = COALESCE(u.cause, s.terminate_cause)
                 FROM unnest($15::int4[], $16::uuid[], $17::text[], $18::int8[], $19::int8[], $20::int8[], $21::text[],
                             $22::timestamptz[], $23::bool[], $24::text[])
                      AS u(idx, nas, asid, i, o, st, ip, at, stop, cause)
                 WHERE s.tenant_id = $1 AND s.nas_id = u.nas AND s.acct_session_id = u.asid AND s.stopped_at IS NULL
                 RETURNING u.idx
             )
             SELECT idx, NULL::uuid FROM upd
             UNION ALL
             SELECT NULL::int4, id FROM ins",
        )
        .bind(t.0)
        .bind(starts.iter().map(|g| g.first().id.0).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.first().nas.0).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.first().subscriber.map(|s| s.0)).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.first().username.clone()).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.first().acct_session_id.clone()).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.framed_ip()).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.first().calling_station_id.clone()).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.first().nas_port_id.clone()).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| started(g.first())).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.last().at).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.session_time_s()).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.input_octets()).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.output_octets()).collect::<Vec<_>>())
        .bind((0..updates.len()).map(|i| i32::try_from(i).unwrap_or(i32::MAX)).collect::<Vec<_>>())
        .bind(updates.iter().map(|g| g.first().nas.0).collect::<Vec<_>>())
        .bind(updates.iter().map(|g| g.first().acct_session_id.clone()).collect::<Vec<_>>())
        .bind(updates.iter().map(|g| g.input_octets()).collect::<Vec<_>>())
        .bind(updates.iter().map(|g| g.output_octets()).collect::<Vec<_>>())
        .bind(updates.iter().map(|g| g.session_time_s()).collect::<Vec<_>>())
        .bind(updates.iter().map(|g| g.framed_ip()).collect::<Vec<_>>())
        .bind(updates.iter().map(|g| g.last().at).collect::<Vec<_>>())
        .bind(updates.iter().map(|g| g.stops()).collect::<Vec<_>>())
        .bind(updates.iter().map(|g| g.terminate_cause()).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.stops().then_some(g.last().at)).collect::<Vec<_>>())
        // A single Start's insert has no cause (as before groups); a group's has its last.
        .bind(starts.iter().map(|g| if g.merged() { g.terminate_cause() } else { None }).collect::<Vec<_>>())
        .bind(starts.iter().map(|g| g.merged()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        let mut found = std::collections::HashSet::new();
        let mut inserted = std::collections::HashSet::new();
        for (idx, id) in rows {
            if let Some(i) = idx {
                found.insert(i);
            }
            if let Some(id) = id {
                inserted.insert(id);
            }
        }
        let mut left: Vec<&'g super::AcctGroup<'r>> = starts
            .into_iter()
            .filter(|g| g.merged() && !inserted.contains(&g.first().id.0))
            .collect();
        left.extend(
            updates
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !found.contains(&i32::try_from(*i).unwrap_or(i32::MAX)))
                .map(|(_, g)| g),
        );
        Ok(left)
    }

    /// Accounting records on the writer's own connection (see [`AcctLane`]): a batch that is
    /// one bulk statement runs as that statement alone, committed when it returns, so it costs
    /// one round trip; anything longer runs in one transaction on the same connection. On an
    /// error the connection is dropped (closed), whatever state it was left in.
    pub(super) async fn acct_apply_lane(
        &self,
        lane: &mut AcctLane,
        t: TenantId,
        records: &[AcctRecord],
    ) -> Result<(), StoreError> {
        let r = self.acct_apply_lane_inner(lane, t, records).await;
        if r.is_err() {
            lane.conn = None;
            lane.tenant = None;
        }
        r
    }

    async fn acct_apply_lane_inner(
        &self,
        lane: &mut AcctLane,
        t: TenantId,
        records: &[AcctRecord],
    ) -> Result<(), StoreError> {
        let conn = match lane.conn.take() {
            Some(c) => c,
            None => {
                lane.tenant = None;
                // Detached: it never goes back to the pool, so the session-wide tenant set
                // below can never reach another user of the pool; it is closed when dropped.
                let mut c = self.pool.acquire().await?.detach();
                // Custom plans, always: PostgreSQL otherwise switches a prepared statement to
                // a generic plan after five runs when that looks no dearer, and a generic plan
                // made while radius_sessions is small (a fresh install, a benchmark) scans the
                // whole table for every record once it has grown (measured: 4.4 ms for a batch
                // of 8 instead of 0.4 ms) until an ANALYZE invalidates it. A custom plan sees
                // the table's current size and costs ~0.5 ms of planning per batch.
                // Session-wide, on this connection only.
                sqlx::query("SET plan_cache_mode = force_custom_plan")
                    .execute(&mut c)
                    .await?;
                c
            }
        };
        let conn = lane.conn.insert(conn);
        if lane.tenant != Some(t) {
            // Session-wide (is_local = false) on this private connection: RLS sees the tenant
            // in every statement that follows, without a BEGIN to scope it.
            sqlx::query("SELECT set_config('app.tenant_id', $1, false)")
                .bind(t.0.hyphenated().to_string())
                .execute(&mut *conn)
                .await?;
            lane.tenant = Some(t);
        }
        let runs = super::acct_runs(records);
        if let [run] = runs.as_slice()
            && super::bulk_worthy(run)
        {
            // Its own implicit transaction: durable (synchronous_commit) once it returns.
            let missed = self.acct_bulk(conn, t, run).await?;
            if !missed.is_empty() {
                let mut tx = conn.begin().await?;
                self.acct_each(&mut tx, t, missed).await?;
                tx.commit().await?;
            }
            return Ok(());
        }
        let mut tx = conn.begin().await?;
        for run in &runs {
            self.acct_run(&mut tx, t, run).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Post-auth lines, one statement for the whole batch.
    pub(super) async fn auth_log_insert(
        &self,
        t: TenantId,
        entries: &[AuthLogEntry],
    ) -> Result<(), StoreError> {
        let mut tx = self.write(t).await?;
        sqlx::query(
            "INSERT INTO auth_log (tenant_id, at, nas_id, username, method, outcome, reason, calling_station_id)
             SELECT $1, u.at, u.nas, u.username, u.method, u.outcome, u.reason, u.csid
             FROM unnest($2::timestamptz[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                  AS u(at, nas, username, method, outcome, reason, csid)",
        )
        .bind(t.0)
        .bind(entries.iter().map(|e| e.at).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.nas_id.map(|n| n.0)).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.username.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.method.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.outcome.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.reason.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.calling_station_id.clone()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

include!("queries.rs");

/// Expiry sort key: no expiry sorts after every date.
const EXPIRY_SORT: &str = "COALESCE(s.expires_at, TIMESTAMPTZ '9999-12-31 23:59:59+00')";

/// Suffixes of tenant `$1` that start with search term `$2` (any case): the suffix index of
/// migration 0013. "Contains T" is "some suffix of the lowercased username starts with T", a range
/// of plain text comparisons, which row-level security lets an index scan use (LIKE it does not).
macro_rules! suffixes_matching {
    () => {
        "SELECT subscriber_id FROM subscriber_suffixes
         WHERE tenant_id = $1 AND suffix >= lower($2) AND suffix < lower($2) || chr(1114111)"
    };
}

/// Subscriber search (`$2`, a substring, any case) through the suffix index.
const SUBSCRIBER_SEARCH: &str = concat!("AND s.id IN (", suffixes_matching!(), ")");

/// A search matching more username suffixes than this is answered by one query that walks the
/// tenant's usernames in order instead (see [`Db::subscriber_search_page`]).
const SEARCH_PICK_MAX: usize = 1000;

impl Db {
    /// A page of subscribers whose username contains `term`, in username order after `after`:
    /// the matching ids come from the suffix index alone, then only those rows are read. Each
    /// statement is simple enough for a cached generic plan, where the one-query form needs
    /// planning on every call (its generic plan is very slow). `None` when the term matches too
    /// many subscribers for that; the caller then uses the one-query form.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn subscriber_search_page(
        &self,
        tx: &mut ReadConn,
        t: TenantId,
        term: &str,
        status: Option<SubscriberStatus>,
        plan: Option<PlanId>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Option<Vec<Subscriber>>> {
        let mut ids: Vec<Uuid> = sqlx::query_scalar(concat!(suffixes_matching!(), " LIMIT $3"))
            .bind(t.0)
            .bind(term)
            .bind(SEARCH_PICK_MAX as i64 + 1)
            .fetch_all(&mut **tx)
            .await?;
        if ids.len() > SEARCH_PICK_MAX {
            // The one-query form needs a plan for its parameters (see read_generic).
            tx.set_generic(false).await?;
            return Ok(None);
        }
        if ids.is_empty() {
            return Ok(Some(Vec::new()));
        }
        // A username can contain the term more than once.
        ids.sort_unstable();
        ids.dedup();
        // Order, cursor and filters stay in SQL: the database's collation orders usernames.
        let filters =
            subscriber_filters(Some("AND s.id = ANY($2)"), status.is_some(), plan.is_some());
        let after_sql = after_username(after.is_some());
        let rows = sqlx::query(q(format!(
            "SELECT {SUB_COLS} FROM subscribers s LEFT JOIN service_plans p ON p.id = s.plan_id
             WHERE s.tenant_id = $1 {filters} {after_sql}
             ORDER BY s.username LIMIT $6"
        )))
        .bind(t.0)
        .bind(ids)
        .bind(status.map(|s| s.as_str()))
        .bind(plan.map(|p| p.0))
        .bind(after)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(subscriber_row)
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}
