//! What the engine keeps in memory so that a warm Access-Request costs no store round trip:
//! tenant status, subscriber with password and plan, open-session counts. Entries expire after
//! a short TTL and are dropped at once by bus events (`tenant.changed`, `subscriber.changed`,
//! `plan.changed`, `session.started/stopped`); the store stays the source of truth. The auth log
//! is written behind the reply, in batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::ids::TenantId;
use crate::model::{AuthLogEntry, Plan, Subscriber, TenantStatus};
use crate::store::{Store, StoreError, TenantScope};

/// How long a cached entry is trusted without a bus event.
const TTL: Duration = Duration::from_secs(60);
/// Open-session counts are refreshed more often: another node may have started a session.
const COUNT_TTL: Duration = Duration::from_secs(5);

/// A subscriber as authentication needs it.
#[derive(Debug)]
pub(super) struct SubEntry {
    pub(super) sub: Subscriber,
    pub(super) password: String,
    pub(super) plan: Option<Plan>,
}

type Key = (TenantId, String);
/// A cached lookup (None = no such user) and when it was made.
type SubSlot = (Option<Arc<SubEntry>>, Instant);

#[derive(Default)]
pub(super) struct LiveState {
    tenants: RwLock<HashMap<TenantId, (TenantStatus, Instant)>>,
    subs: RwLock<HashMap<Key, SubSlot>>,
    open: Mutex<HashMap<Key, (i64, Instant)>>,
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
            && at.elapsed() < TTL
        {
            return Ok(*s);
        }
        let s = scope.tenant().await?.status;
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
        if let Some((e, at)) = self
            .subs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < TTL
        {
            return Ok(e.clone());
        }
        let entry = match scope.subscriber_by_username(username).await? {
            Some(sub) => {
                let password = scope.subscriber_password(sub.id).await?;
                let plan = match sub.plan_id {
                    Some(p) => scope.plan(p).await?,
                    None => None,
                };
                Some(Arc::new(SubEntry {
                    sub,
                    password,
                    plan,
                }))
            }
            None => None,
        };
        let mut m = self.subs.write().unwrap_or_else(|p| p.into_inner());
        if m.len() > 200_000 {
            m.retain(|_, (_, at)| at.elapsed() < TTL);
        }
        m.insert(key, (entry.clone(), Instant::now()));
        Ok(entry)
    }

    pub(super) async fn open_sessions(
        &self,
        scope: &TenantScope,
        username: &str,
    ) -> Result<i64, StoreError> {
        let key = (scope.tenant_id(), username.to_owned());
        if let Some((n, at)) = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < COUNT_TTL
        {
            return Ok(*n);
        }
        let n = scope.open_session_count(username).await?;
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (n, Instant::now()));
        Ok(n)
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
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(t, _), _| *t != tenant);
    }

    pub(super) fn forget_sessions_of(&self, tenant: TenantId, username: Option<&str>) {
        let mut m = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match username {
            Some(u) => {
                m.remove(&(tenant, u.to_owned()));
            }
            None => m.retain(|(t, _), _| *t != tenant),
        }
    }

    pub(super) fn forget_all(&self) {
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.subs.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.open.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

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
                let mut batch = vec![first];
                while batch.len() < 1024 {
                    match rx.try_recv() {
                        Ok(x) => batch.push(x),
                        Err(_) => break,
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
