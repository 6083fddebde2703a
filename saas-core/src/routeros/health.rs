//! NAS API health (DESIGN §3 `api_state`): every interval, log in to each MikroTik NAS with API
//! credentials that this process can reach and read its identity. Three failures in a row make
//! it `offline` (the last error kept), the next success makes it `online` again; each change is
//! stored and published as `nas.state`. Only active tenants are polled, so a tenant's polling
//! stops when it is suspended and starts again when it is resumed; a semaphore bounds how many
//! NAS are polled at once so one tenant with many routers cannot starve the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use crate::bus::{Bus, kinds};
use crate::ids::{NasId, TenantId};
use crate::model::{ApiState, Nas, NasVendor, TenantStatus};
use crate::store::Store;
use crate::transport::NasTransport;

/// Health poller settings.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Time between polls of one NAS.
    pub interval: Duration,
    /// Failures in a row that make a NAS offline.
    pub failures_to_offline: u32,
    /// NAS polled at once (all tenants together).
    pub concurrency: usize,
    /// Connect, login and command timeout.
    pub timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            failures_to_offline: 3,
            concurrency: 32,
            timeout: super::DEFAULT_TIMEOUT,
        }
    }
}

/// A state change to store and publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// New state.
    pub state: ApiState,
    /// Error to keep (`None` clears it).
    pub error: Option<String>,
}

/// The health state machine of every NAS (sans-IO: poll results in, transitions out).
#[derive(Debug, Default)]
pub struct Tracker {
    failures: HashMap<NasId, u32>,
}

impl Tracker {
    /// Records one poll result for a NAS currently in `state`; returns the transition to store,
    /// if any. A failure before the limit changes nothing yet (a single lost poll is noise).
    pub fn observe(
        &mut self,
        nas: NasId,
        state: ApiState,
        result: Result<(), String>,
        limit: u32,
    ) -> Option<Transition> {
        match result {
            Ok(()) => {
                self.failures.remove(&nas);
                (state != ApiState::Online).then_some(Transition {
                    state: ApiState::Online,
                    error: None,
                })
            }
            Err(e) => {
                let n = self.failures.entry(nas).or_insert(0);
                *n = n.saturating_add(1);
                (*n >= limit.max(1)).then_some(Transition {
                    state: ApiState::Offline,
                    error: Some(e),
                })
            }
        }
    }

    /// Forgets NAS that are no longer polled.
    pub fn retain(&mut self, keep: impl Fn(&NasId) -> bool) {
        self.failures.retain(|k, _| keep(k));
    }
}

/// Polls one NAS: login and identity.
async fn poll(
    transport: &dyn NasTransport,
    store: &Store,
    tenant: TenantId,
    nas: &Nas,
    timeout: Duration,
) -> Result<(), String> {
    let scope = store.tenant(tenant);
    let (client, _) = super::connect_nas(transport, &scope, nas, timeout)
        .await
        .map_err(|e| e.to_string())?;
    client
        .identity()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Runs the poller until `stop`. `reachable` says whether this process holds the path to a NAS
/// (the relay node holding its tunnel; any node for a direct NAS).
pub async fn run(
    store: Store,
    bus: Bus,
    transport: Arc<dyn NasTransport>,
    reachable: Arc<dyn Fn(&Nas) -> bool + Send + Sync>,
    config: HealthConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut tracker = Tracker::default();
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut every = tokio::time::interval(config.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let targets = match targets(&store, reachable.as_ref()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "NAS health: could not list NAS");
                continue;
            }
        };
        tracker.retain(|id| targets.iter().any(|(_, n)| n.id == *id));
        let mut round = tokio::task::JoinSet::new();
        for (tenant, nas) in targets {
            let (store, transport, limit) = (store.clone(), transport.clone(), limit.clone());
            let timeout = config.timeout;
            round.spawn(async move {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return (tenant, nas, Err("shutting down".to_owned()));
                };
                let r = poll(transport.as_ref(), &store, tenant, &nas, timeout).await;
                (tenant, nas, r)
            });
        }
        while let Some(done) = tokio::select! {
            d = round.join_next() => d,
            _ = stop.wait_for(|s| *s) => None,
        } {
            let Ok((tenant, nas, result)) = done else {
                continue;
            };
            if let Err(e) = &result {
                tracing::debug!(nas = %nas.id, error = %e, "NAS API poll failed");
            }
            let Some(t) =
                tracker.observe(nas.id, nas.api_state, result, config.failures_to_offline)
            else {
                continue;
            };
            apply(&store, &bus, tenant, &nas, &t).await;
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// Stores a transition and publishes `nas.state` when the state changed.
async fn apply(store: &Store, bus: &Bus, tenant: TenantId, nas: &Nas, t: &Transition) {
    let scope = store.tenant(tenant);
    if let Err(e) = scope
        .set_nas_api_state(nas.id, t.state, t.error.as_deref())
        .await
    {
        tracing::warn!(nas = %nas.id, error = %e, "could not store the NAS API state");
        return;
    }
    if nas.api_state != t.state {
        tracing::info!(nas = %nas.id, state = %t.state, "NAS API state changed");
        let payload = serde_json::json!({
            "nas": nas.id,
            "api_state": t.state,
            "error": t.error,
        });
        if let Err(e) = bus.publish(Some(tenant), kinds::NAS_STATE, &payload).await {
            tracing::warn!(error = %e, "could not publish nas.state");
        }
    }
}

/// Every MikroTik NAS with API credentials of every active tenant that this process reaches.
pub(crate) async fn targets(
    store: &Store,
    reachable: &(dyn Fn(&Nas) -> bool + Send + Sync),
) -> Result<Vec<(TenantId, Nas)>, crate::store::StoreError> {
    let mut out = Vec::new();
    for t in store.system().tenants().await? {
        if t.tenant.status != TenantStatus::Active {
            continue;
        }
        let list = store.tenant(t.tenant.id).nas_list().await?;
        out.extend(
            list.into_iter()
                .filter(|n| n.vendor == NasVendor::Mikrotik && n.api_user.is_some())
                .filter(|n| reachable(n))
                .map(|n| (t.tenant.id, n)),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_make_offline_and_one_success_online() {
        let mut t = Tracker::default();
        let nas = NasId::new();
        let err = |s: &str| Err(s.to_owned());
        let mut state = ApiState::Unknown;
        let mut step = |t: &mut Tracker, r: Result<(), String>| {
            let tr = t.observe(nas, state, r, 3);
            if let Some(tr) = &tr {
                state = tr.state;
            }
            tr
        };
        assert_eq!(
            step(&mut t, Ok(())),
            Some(Transition {
                state: ApiState::Online,
                error: None
            })
        );
        assert_eq!(step(&mut t, Ok(())), None, "no change, nothing to store");
        assert_eq!(step(&mut t, err("timeout 1")), None);
        assert_eq!(step(&mut t, err("timeout 2")), None);
        assert_eq!(
            step(&mut t, err("login refused")),
            Some(Transition {
                state: ApiState::Offline,
                error: Some("login refused".into())
            }),
            "the third failure in a row, with the last error"
        );
        // Still failing: the last error is kept up to date.
        assert_eq!(
            step(&mut t, err("timeout 4")).map(|t| t.error),
            Some(Some("timeout 4".into()))
        );
        assert_eq!(
            step(&mut t, Ok(())).map(|t| t.state),
            Some(ApiState::Online)
        );
        // A success resets the count.
        assert_eq!(step(&mut t, err("x")), None);
        assert_eq!(step(&mut t, Ok(())), None);
        assert_eq!(step(&mut t, err("x")), None);
        assert_eq!(step(&mut t, err("x")), None);
        assert!(step(&mut t, err("x")).is_some());
    }
}
