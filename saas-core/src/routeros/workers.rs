//! Per-tenant RouterOS workers (issue 5): one task per active tenant polls the tenant's MikroTik
//! NAS for health (`api_state`, [`super::health`]) and runs QuotaSync ([`super::quota`]) on the
//! tenant's own interval. A supervisor starts a tenant's worker when the tenant becomes active
//! and stops it when the tenant is suspended or deleted — on `tenant.changed`, and on a periodic
//! rescan in case an event was missed. The workers of one process share one semaphore (bounded
//! concurrency per relay node) and each tenant holds at most a share of it, so a tenant with
//! many routers cannot starve the others. When several processes reach the same NAS (a direct
//! NAS is reachable from every node), a lease in the shared cache makes one of them its poller;
//! the lease lapses after three health intervals without renewal and another node takes over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::health::{self, HealthConfig, Tracker};
use super::quota;
use crate::aaa::coa::CoaClient;
use crate::bus::{Bus, Next, kinds, next_event};
use crate::cache::{Cache, tenant_key};
use crate::ids::TenantId;
use crate::metrics::Metrics;
use crate::model::{Nas, NasVendor, Tenant, TenantStatus};
use crate::store::{Store, StoreError, TenantScope};
use crate::transport::NasTransport;

/// Whether this process holds the path to a NAS (the relay node holding its tunnel; any node for
/// a direct NAS).
pub type Reach = Arc<dyn Fn(&Nas) -> bool + Send + Sync>;

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Health polling.
    pub health: HealthConfig,
    /// QuotaSync interval of tenants that set none; `None` turns QuotaSync off for every tenant.
    pub quota_default: Option<Duration>,
    /// Connect, login and command timeout of a QuotaSync.
    pub quota_timeout: Duration,
    /// NAS worked on at once by this process (all tenants together).
    pub concurrency: usize,
    /// NAS of one tenant worked on at once.
    pub per_tenant: usize,
    /// How often the supervisor re-reads every tenant (events are the fast path).
    pub rescan: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            health: HealthConfig::default(),
            quota_default: Some(Duration::from_secs(30)),
            quota_timeout: super::DEFAULT_TIMEOUT,
            concurrency: 32,
            per_tenant: 8,
            rescan: Duration::from_secs(60),
        }
    }
}

/// Labels of `proxpanel_routeros_polls_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollLabels {
    /// `health` or `quota`.
    pub kind: &'static str,
    /// `ok` or `error`.
    pub outcome: &'static str,
}

/// Metrics of the workers.
#[derive(Clone, Debug, Default)]
pub struct WorkerMetrics {
    /// Tenants with a running worker.
    pub workers: Gauge,
    /// NAS polls by kind and outcome.
    pub polls: Family<PollLabels, Counter>,
}

impl WorkerMetrics {
    /// Registers the families in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self::default();
        metrics.with_registry(|r| {
            r.register(
                "routeros_tenant_workers",
                "Tenants whose RouterOS worker runs in this process",
                m.workers.clone(),
            );
            r.register(
                "routeros_polls",
                "RouterOS API polls of NAS by kind and outcome",
                m.polls.clone(),
            );
        });
        m
    }

    fn count(&self, kind: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.polls
            .get_or_create(&PollLabels { kind, outcome })
            .inc();
    }
}

struct Running {
    quota: Option<Duration>,
    task: JoinHandle<()>,
}

/// Starts and stops the per-tenant workers.
pub struct Supervisor {
    store: Store,
    bus: Bus,
    cache: Arc<dyn Cache>,
    /// This process's name in NAS leases.
    holder: String,
    transport: Arc<dyn NasTransport>,
    reachable: Reach,
    config: WorkerConfig,
    metrics: WorkerMetrics,
    coa: CoaClient,
    limit: Arc<Semaphore>,
    running: Mutex<HashMap<TenantId, Running>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor; nothing runs until [`Supervisor::run`].
    pub fn new(
        store: Store,
        bus: Bus,
        cache: Arc<dyn Cache>,
        transport: Arc<dyn NasTransport>,
        reachable: Reach,
        config: WorkerConfig,
        metrics: WorkerMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            coa: CoaClient::new(transport.clone()),
            limit: Arc::new(Semaphore::new(config.concurrency.max(1))),
            store,
            bus,
            cache,
            holder: uuid::Uuid::new_v4().to_string(),
            transport,
            reachable,
            config,
            metrics,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Tenants with a running worker and their QuotaSync interval (`None` = off).
    pub fn running(&self) -> Vec<(TenantId, Option<Duration>)> {
        let mut v: Vec<_> = self.lock().iter().map(|(t, r)| (*t, r.quota)).collect();
        v.sort_by_key(|(t, _)| t.0);
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows tenant changes until `stop`, then stops every worker.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut rx = self.bus.subscribe();
        let mut rescan = tokio::time::interval(self.config.rescan);
        rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = rescan.tick() => self.reconcile_all().await,
                next = next_event(&mut rx, &mut stop) => match next {
                    Next::Event(ev) => {
                        if let (kinds::TENANT_CHANGED, Some(t)) = (ev.kind.as_str(), ev.tenant_id) {
                            self.reconcile_one(t).await;
                        }
                    }
                    Next::Lagged => self.reconcile_all().await,
                    Next::Stopped => break,
                },
            }
        }
        let all: Vec<_> = self.lock().drain().map(|(_, r)| r.task).collect();
        for task in all {
            task.abort();
        }
        self.metrics.workers.set(0);
    }

    /// The QuotaSync interval a tenant's worker runs with, or none when it has no worker.
    fn wanted(&self, t: &Tenant) -> Option<Option<Duration>> {
        (t.status == TenantStatus::Active).then(|| {
            self.config.quota_default.map(|d| {
                t.quota_sync_s
                    .map_or(d, |s| Duration::from_secs(u64::from(s)))
            })
        })
    }

    async fn reconcile_all(self: &Arc<Self>) {
        let tenants = match self.store.system().tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "RouterOS workers: could not list tenants");
                return;
            }
        };
        let mut seen = std::collections::HashSet::new();
        for t in &tenants {
            seen.insert(t.tenant.id);
            self.ensure(t.tenant.id, self.wanted(&t.tenant));
        }
        let gone: Vec<TenantId> = self
            .lock()
            .keys()
            .filter(|t| !seen.contains(t))
            .copied()
            .collect();
        for t in gone {
            self.ensure(t, None);
        }
    }

    async fn reconcile_one(self: &Arc<Self>, tenant: TenantId) {
        match self.store.system().tenant_by_id(tenant).await {
            Ok(t) => self.ensure(tenant, t.as_ref().and_then(|t| self.wanted(t))),
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "RouterOS workers: could not read a tenant")
            }
        }
    }

    /// Starts, restarts (interval changed) or stops a tenant's worker.
    fn ensure(self: &Arc<Self>, tenant: TenantId, want: Option<Option<Duration>>) {
        let mut running = self.lock();
        match (running.get(&tenant), want) {
            (Some(r), Some(q)) if r.quota == q && !r.task.is_finished() => return,
            (None, None) => return,
            _ => {}
        }
        if let Some(old) = running.remove(&tenant) {
            // In-flight polls of this tenant end here; their store writes are transactions.
            old.task.abort();
            tracing::info!(%tenant, "RouterOS worker stopped");
        }
        if let Some(quota) = want {
            let task = tokio::spawn(self.clone().tenant_worker(tenant, quota));
            running.insert(tenant, Running { quota, task });
            tracing::info!(%tenant, quota_sync = ?quota, "RouterOS worker started");
        }
        self.metrics
            .workers
            .set(i64::try_from(running.len()).unwrap_or(i64::MAX));
    }

    /// One tenant's loop: health polls and QuotaSync rounds on their own intervals.
    async fn tenant_worker(self: Arc<Self>, tenant: TenantId, quota: Option<Duration>) {
        let scope = self.store.tenant(tenant);
        let share = Arc::new(Semaphore::new(self.config.per_tenant.max(1)));
        let mut tracker = Tracker::default();
        let mut health_tick = tokio::time::interval(self.config.health.interval);
        health_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first sync one interval after start: a fresh worker has just polled health, and
        // accounting is fresh after a restart.
        let mut quota_tick = quota.map(|q| {
            let mut t = tokio::time::interval_at(Instant::now() + q, q);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        loop {
            let health_round = tokio::select! {
                _ = health_tick.tick() => true,
                _ = async {
                    match quota_tick.as_mut() {
                        Some(t) => { t.tick().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => false,
            };
            let targets = match self.targets(&scope).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "RouterOS worker: could not list NAS");
                    continue;
                }
            };
            if health_round {
                tracker.retain(|id| targets.iter().any(|n| n.id == *id));
                self.health_round(&scope, targets, &share, &mut tracker)
                    .await;
            } else {
                self.quota_round(&scope, targets, &share).await;
            }
        }
    }

    /// MikroTik NAS of the tenant with API credentials that this process reaches and holds the
    /// lease of.
    async fn targets(&self, scope: &TenantScope) -> Result<Vec<Nas>, StoreError> {
        let reached = scope
            .nas_list()
            .await?
            .into_iter()
            .filter(|n| n.vendor == NasVendor::Mikrotik && n.api_user.is_some())
            .filter(|n| (self.reachable)(n));
        let ttl = self.config.health.interval.saturating_mul(3);
        let mut mine = Vec::new();
        for nas in reached {
            let key = tenant_key(scope.tenant_id(), &format!("ros-owner:{}", nas.id));
            match self.cache.lease(&key, &self.holder, ttl).await {
                Ok(true) => mine.push(nas),
                Ok(false) => {}
                Err(e) => {
                    // Without the cache, a NAS polled twice is better than one not polled.
                    tracing::debug!(nas = %nas.id, error = %e, "NAS lease unavailable; polling");
                    mine.push(nas);
                }
            }
        }
        Ok(mine)
    }

    async fn permits(
        &self,
        share: &Arc<Semaphore>,
    ) -> Option<(
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    )> {
        // The tenant's share first, so a tenant waiting on its own share holds no global permit.
        let mine = share.clone().acquire_owned().await.ok()?;
        let global = self.limit.clone().acquire_owned().await.ok()?;
        Some((mine, global))
    }

    async fn health_round(
        self: &Arc<Self>,
        scope: &TenantScope,
        targets: Vec<Nas>,
        share: &Arc<Semaphore>,
        tracker: &mut Tracker,
    ) {
        let mut round = JoinSet::new();
        for nas in targets {
            let (me, scope, share) = (self.clone(), scope.clone(), share.clone());
            round.spawn(async move {
                let Some(_permits) = me.permits(&share).await else {
                    return (nas, Err("shutting down".to_owned()));
                };
                let timeout = me.config.health.timeout;
                let r = health::poll(me.transport.as_ref(), &scope, &nas, timeout).await;
                (nas, r)
            });
        }
        while let Some(done) = round.join_next().await {
            let Ok((nas, result)) = done else {
                continue;
            };
            self.metrics.count("health", result.is_ok());
            if let Err(e) = &result {
                tracing::debug!(nas = %nas.id, error = %e, "NAS API poll failed");
            }
            let limit = self.config.health.failures_to_offline;
            if let Some(t) = tracker.observe(nas.id, nas.api_state, result, limit) {
                health::apply(scope, &self.bus, &nas, &t).await;
            }
        }
    }

    async fn quota_round(
        self: &Arc<Self>,
        scope: &TenantScope,
        targets: Vec<Nas>,
        share: &Arc<Semaphore>,
    ) {
        let mut round = JoinSet::new();
        for nas in targets {
            let (me, scope, share) = (self.clone(), scope.clone(), share.clone());
            round.spawn(async move {
                let Some(_permits) = me.permits(&share).await else {
                    return;
                };
                let timeout = me.config.quota_timeout;
                let r = quota::sync_and_publish(
                    me.transport.as_ref(),
                    &scope,
                    &me.bus,
                    &nas,
                    &me.coa,
                    timeout,
                )
                .await;
                me.metrics.count("quota", r.is_ok());
                if let Err(e) = r {
                    tracing::debug!(nas = %nas.id, error = %e, "QuotaSync failed");
                }
            });
        }
        while round.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_share_is_smaller_than_the_node_limit() {
        let c = WorkerConfig::default();
        assert!(
            c.per_tenant < c.concurrency,
            "one tenant could take every permit"
        );
    }
}
