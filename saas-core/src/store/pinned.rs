//! Tenant-pinned read connections (PostgreSQL): each carries one tenant's `app.tenant_id` for
//! its whole session, so a read is its statements alone, without BEGIN/set_config/COMMIT around
//! them (two of a list request's four round trips). A connection is handed out for tenant T
//! only after its setting says T, and it lives in this pool alone, never in the shared sqlx
//! pool whose other users expect no setting; one that ends a read without [`ReadConn::commit`]
//! (an error, a cancelled request) may be mid-statement and is closed, not reused.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ids::TenantId;
use crate::store::StoreError;

/// How long a caller waits for a connection before failing (this pool and the sqlx pools).
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A session used within this long is taken to be alive; one idle longer is checked first.
const ALIVE_BYPASS: Duration = Duration::from_millis(500);

/// A session idle this long is closed rather than reused (as the sqlx pool's idle timeout).
const IDLE_MAX: Duration = Duration::from_secs(600);

/// One session and the settings it carries.
struct Pinned {
    conn: PgConnection,
    tenant: Option<TenantId>,
    /// `plan_cache_mode = force_generic_plan` (else `auto`).
    generic: bool,
    /// When its last read ended.
    last_used: Instant,
}

impl Pinned {
    /// Makes the settings say tenant `t` and the plan mode: one round trip when either differs
    /// or `check` asks for proof that the session is alive, none otherwise.
    async fn settle(&mut self, t: TenantId, generic: bool, check: bool) -> Result<(), StoreError> {
        if self.tenant == Some(t) && self.generic == generic {
            if check {
                self.conn.ping().await?;
            }
            return Ok(());
        }
        // Forgotten first: should the statement fail, this session is closed, not trusted.
        self.tenant = None;
        sqlx::query(
            "SELECT set_config('app.tenant_id', $1, false), set_config('plan_cache_mode', $2, false)",
        )
        .bind(t.0.hyphenated().to_string())
        .bind(if generic { "force_generic_plan" } else { "auto" })
        .execute(&mut self.conn)
        .await?;
        self.tenant = Some(t);
        self.generic = generic;
        Ok(())
    }
}

struct Inner {
    options: PgConnectOptions,
    /// Least recently used first.
    idle: Mutex<Vec<Pinned>>,
    permits: Arc<Semaphore>,
}

/// The pool of tenant-pinned read sessions.
#[derive(Clone)]
pub(super) struct ReadPool(Arc<Inner>);

impl ReadPool {
    /// A pool of at most `max` sessions, opened when first needed.
    pub(super) fn new(options: PgConnectOptions, max: usize) -> Self {
        Self(Arc::new(Inner {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1))),
        }))
    }

    /// A session bound to tenant `t`, with generic or automatic plan caching.
    pub(super) async fn get(&self, t: TenantId, generic: bool) -> Result<ReadConn, StoreError> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.0.permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Db(sqlx::Error::PoolTimedOut))?
            .map_err(|_| StoreError::Db(sqlx::Error::PoolClosed))?;
        let pinned = loop {
            let Some(mut p) = self.idle_for(t, generic) else {
                let mut p = Pinned {
                    conn: self.0.options.connect().await?,
                    tenant: None,
                    generic: false,
                    last_used: Instant::now(),
                };
                p.settle(t, generic, false).await?;
                break p;
            };
            let idle = p.last_used.elapsed();
            if idle > IDLE_MAX {
                let _ = p.conn.close().await;
                continue;
            }
            // A session the server ended (a restart, a terminated backend) would fail the
            // caller's first statement: one idle for a while is checked first (HikariCP's rule).
            match p.settle(t, generic, idle > ALIVE_BYPASS).await {
                Ok(()) => break p,
                Err(e) => {
                    tracing::debug!(error = %e, "an idle read session failed its check; trying another")
                }
            }
        };
        Ok(ReadConn {
            pinned: Some(pinned),
            tenant: t,
            pool: self.0.clone(),
            _permit: permit,
        })
    }

    /// Takes an idle session: this tenant's (with the wanted plan mode first), else the one
    /// unused longest.
    fn idle_for(&self, t: TenantId, generic: bool) -> Option<Pinned> {
        let mut idle = self.0.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let pos = idle
            .iter()
            .rposition(|p| p.tenant == Some(t) && p.generic == generic)
            .or_else(|| idle.iter().rposition(|p| p.tenant == Some(t)))
            .or(if idle.is_empty() { None } else { Some(0) });
        pos.map(|i| idle.remove(i))
    }

    /// Closes the idle sessions; sessions in use are closed when their read ends.
    pub(super) async fn close(&self) {
        self.0.permits.close();
        let idle = std::mem::take(&mut *self.0.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for p in idle {
            let _ = p.conn.close().await;
        }
    }
}

/// A read session of one tenant (see the module docs); [`ReadConn::commit`] ends the read.
pub(super) struct ReadConn {
    /// `None` only once the read has ended.
    pinned: Option<Pinned>,
    /// The tenant this read is for.
    tenant: TenantId,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl ReadConn {
    fn pinned(&mut self) -> &mut Pinned {
        self.pinned
            .as_mut()
            .expect("a ReadConn holds its session until it is dropped")
    }

    /// Switches the plan mode for the rest of this read (tenant unchanged).
    pub(super) async fn set_generic(&mut self, generic: bool) -> Result<(), StoreError> {
        let t = self.tenant;
        self.pinned().settle(t, generic, false).await
    }

    /// Ends the read: the session goes back to the pool, still bound to its tenant.
    #[allow(clippy::unused_async)]
    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        if let Some(mut p) = self.pinned.take()
            && !self.pool.permits.is_closed()
        {
            p.last_used = Instant::now();
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(p);
        }
        Ok(())
    }
}

impl Deref for ReadConn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self
            .pinned
            .as_ref()
            .expect("a ReadConn holds its session until it is dropped")
            .conn
    }
}

impl DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.pinned().conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn setting(rc: &mut ReadConn, name: &str) -> String {
        sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&mut **rc)
            .await
            .unwrap()
    }

    async fn backend_pid(rc: &mut ReadConn) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **rc)
            .await
            .unwrap()
    }

    /// A session is handed out only with the asking tenant's setting; one whose read did not
    /// end cleanly is closed, never handed to the next reader.
    #[tokio::test]
    async fn sessions_carry_the_asking_tenant_and_unfinished_reads_are_not_reused() {
        let Some(ts) = crate::testing::postgres().await else {
            return;
        };
        let options: PgConnectOptions = ts.options.url.parse().unwrap();
        let pool = ReadPool::new(options, 1);
        let (a, b) = (TenantId::new(), TenantId::new());

        let mut rc = pool.get(a, false).await.unwrap();
        assert_eq!(setting(&mut rc, "app.tenant_id").await, a.to_string());
        assert_eq!(setting(&mut rc, "plan_cache_mode").await, "auto");
        let first = backend_pid(&mut rc).await;
        rc.commit().await.unwrap();

        // One session in the pool: tenant B gets it re-pinned, then A again.
        let mut rc = pool.get(b, true).await.unwrap();
        assert_eq!(
            backend_pid(&mut rc).await,
            first,
            "the idle session is reused"
        );
        assert_eq!(setting(&mut rc, "app.tenant_id").await, b.to_string());
        assert_eq!(
            setting(&mut rc, "plan_cache_mode").await,
            "force_generic_plan"
        );
        rc.set_generic(false).await.unwrap();
        assert_eq!(setting(&mut rc, "plan_cache_mode").await, "auto");
        rc.commit().await.unwrap();
        let mut rc = pool.get(a, false).await.unwrap();
        assert_eq!(setting(&mut rc, "app.tenant_id").await, a.to_string());

        // Dropped without commit (an error or a cancelled request): closed, not reused.
        drop(rc);
        let mut rc = pool.get(a, false).await.unwrap();
        let second = backend_pid(&mut rc).await;
        assert_ne!(second, first, "a session whose read did not end was reused");
        assert_eq!(setting(&mut rc, "app.tenant_id").await, a.to_string());
        rc.commit().await.unwrap();

        // The server ends the idle session (a restart would): once idle past the bypass window
        // it is checked, found dead and replaced, and the reader never sees the failure.
        let admin = sqlx::PgPool::connect(ts.super_url.as_deref().unwrap())
            .await
            .unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(second)
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        tokio::time::sleep(ALIVE_BYPASS + Duration::from_millis(100)).await;
        let mut rc = pool.get(a, false).await.unwrap();
        assert_ne!(
            backend_pid(&mut rc).await,
            second,
            "a dead session was handed out"
        );
        assert_eq!(setting(&mut rc, "app.tenant_id").await, a.to_string());
        rc.commit().await.unwrap();

        pool.close().await;
        assert!(
            pool.get(a, false).await.is_err(),
            "a closed pool hands out nothing"
        );
        ts.store.close().await;
    }
}
