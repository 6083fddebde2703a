//! What the engine keeps in memory so that a warm Access-Request costs no store round trip:
//! tenant status, subscriber with password and plan (open sessions and usage are in the ledger).
//! Entries expire after a TTL (spread, so a warm cache does not go cold all at once) and are
//! dropped at once by bus events (`tenant.changed`, `subscriber.changed`, `plan.changed`); the
//! store stays the source of truth. The auth log is written behind the reply, in batches.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::ids::TenantId;
use crate::model::{AuthLogEntry, Plan, Subscriber, TenantStatus};
use crate::store::{Store, StoreError, TenantScope};

/// How long a cached entry is trusted without a bus event. Changes reach the cache through the
/// bus (`subscriber.changed`, `plan.changed`, `tenant.changed`) at once; the TTL is only a safety
/// net for a missed event, so it can be long (each entry lives between half and all of it).
const TTL: Duration = Duration::from_secs(300);

/// Tenant status is one lookup per tenant per TTL: it keeps the shorter safety net.
const TENANT_TTL: Duration = Duration::from_secs(60);

/// Between half and all of `ttl`, varying by key and time: entries loaded together (a warm-up
/// burst) expire spread out instead of sending every lookup to the store at the same moment.
fn spread(ttl: Duration, key: &str) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let h = key
        .bytes()
        .fold(nanos, |a, b| a.wrapping_mul(0x100_0000_01b3) ^ u64::from(b));
    let half = ttl / 2;
    half + Duration::from_millis(h % (half.as_millis() as u64).max(1))
}

/// A subscriber as authentication needs it.
#[derive(Debug)]
pub(super) struct SubEntry {
    pub(super) sub: Subscriber,
    pub(super) password: String,
    pub(super) plan: Option<Plan>,
}

type Key = (TenantId, String);
/// A cached lookup (None = no such user) and when it expires.
type SubSlot = (Option<Arc<SubEntry>>, Instant);

#[derive(Default)]
pub(super) struct LiveState {
    tenants: RwLock<HashMap<TenantId, (TenantStatus, Instant)>>,
    subs: RwLock<HashMap<Key, SubSlot>>,
}

impl LiveState {
    pub(super) async fn tenant_status(
        &self,
        scope: &TenantScope,
    ) -> Result<TenantStatus, StoreError> {
        let t = scope.tenant_id();
        if let Some((s, at)) = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&t)
            && at.elapsed() < TENANT_TTL
        {
            return Ok(*s);
        }
        let s = Box::pin(scope.tenant()).await?.status;
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(t, (s, Instant::now()));
        Ok(s)
    }

    pub(super) async fn subscriber(
        &self,
        scope: &TenantScope,
        username: &str,
    ) -> Result<Option<Arc<SubEntry>>, StoreError> {
        let key = (scope.tenant_id(), username.to_owned());
        if let Some((e, expires)) = self
            .subs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && Instant::now() < *expires
        {
            return Ok(e.clone());
        }
        // One query, one transaction: subscriber, password and plan together.
        let entry =
            Box::pin(scope.subscriber_for_auth(username))
                .await?
                .map(|(sub, password, plan)| {
                    Arc::new(SubEntry {
                        sub,
                        password,
                        plan,
                    })
                });
        let mut m = self.subs.write().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if m.len() > 200_000 {
            m.retain(|_, (_, expires)| now < *expires);
        }
        m.insert(key, (entry.clone(), now + spread(TTL, username)));
        Ok(entry)
    }

    pub(super) fn forget_tenant(&self, tenant: TenantId) {
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&tenant);
        self.subs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(t, _), _| *t != tenant);
    }

    pub(super) fn forget_all(&self) {
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.subs.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// How long an auth-log line may wait for others to share its statement.
const AUTH_LOG_LINGER: Duration = Duration::from_millis(100);
/// Most auth-log lines written together.
const AUTH_LOG_BATCH: usize = 4096;

/// Writes auth-log lines behind the reply, batched per tenant.
#[derive(Clone)]
pub(super) struct AuthLogWriter {
    tx: mpsc::Sender<(TenantId, AuthLogEntry)>,
}

impl AuthLogWriter {
    pub(super) fn start(store: Store) -> Self {
        let (tx, mut rx) = mpsc::channel::<(TenantId, AuthLogEntry)>(65_536);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Lines linger up to AUTH_LOG_LINGER so that a busy server writes a few large
                // statements a second instead of many small ones (per-statement cost dominates
                // the database's share of an Access-Request otherwise).
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + AUTH_LOG_LINGER;
                while batch.len() < AUTH_LOG_BATCH {
                    let room = AUTH_LOG_BATCH - batch.len();
                    match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
                let mut by_tenant: HashMap<TenantId, Vec<AuthLogEntry>> = HashMap::new();
                for (t, e) in batch {
                    by_tenant.entry(t).or_default().push(e);
                }
                for (t, entries) in by_tenant {
                    if let Err(e) = store.tenant(t).log_auth(&entries).await {
                        tracing::warn!(error = %e, lines = entries.len(), "could not write the auth log");
                    }
                }
            }
        });
        Self { tx }
    }

    /// Queues a line; when the queue is full (store far behind) the line is dropped, not the reply.
    pub(super) fn log(&self, tenant: TenantId, e: AuthLogEntry) -> bool {
        self.tx.try_send((tenant, e)).is_ok()
    }
}
