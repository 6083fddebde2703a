//! NAS API health (DESIGN §3 `api_state`): log in to a MikroTik NAS with API credentials and
//! read its identity. Three failures in a row make it `offline` (the last error kept), the next
//! success makes it `online` again; each change is stored and published as `nas.state`. The
//! polling itself runs in the per-tenant workers ([`super::workers`]).

use std::collections::HashMap;
use std::time::Duration;

use crate::bus::{Bus, kinds};
use crate::ids::NasId;
use crate::model::{ApiState, Nas};
use crate::store::TenantScope;
use crate::transport::NasTransport;

/// Health polling settings.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Time between polls of one NAS.
    pub interval: Duration,
    /// Failures in a row that make a NAS offline.
    pub failures_to_offline: u32,
    /// Connect, login and command timeout.
    pub timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            failures_to_offline: 3,
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
pub(super) async fn poll(
    transport: &dyn NasTransport,
    scope: &TenantScope,
    nas: &Nas,
    timeout: Duration,
) -> Result<(), String> {
    let (client, _) = super::connect_nas(transport, scope, nas, timeout)
        .await
        .map_err(|e| e.to_string())?;
    client
        .identity()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Stores a transition and publishes `nas.state` when the state changed.
pub(super) async fn apply(scope: &TenantScope, bus: &Bus, nas: &Nas, t: &Transition) {
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
        if let Err(e) = bus
            .publish(Some(scope.tenant_id()), kinds::NAS_STATE, &payload)
            .await
        {
            tracing::warn!(error = %e, "could not publish nas.state");
        }
    }
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
