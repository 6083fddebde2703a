//! Session events, batched: a busy NAS starts and stops hundreds of sessions a second, and one
//! durable bus event per record would cap accounting at the store's commit rate. Effects are
//! gathered for a short window and published as one `session.started` / `session.stopped` event
//! per tenant listing the usernames (`"usernames": null` when too many to list: consumers then
//! treat the whole tenant as changed). Each event carries the engine's id as `origin`, so the
//! engine that caused it can skip it.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::bus::{Bus, kinds};
use crate::ids::TenantId;

use super::Effect;

/// How long effects are gathered before publishing.
const WINDOW: Duration = Duration::from_millis(100);
/// Most usernames listed in one event.
const MAX_NAMES: usize = 500;

/// Publishes the engine's effects on the bus, batched.
#[derive(Clone, Debug)]
pub struct EffectPublisher {
    tx: mpsc::Sender<(TenantId, Effect)>,
}

impl EffectPublisher {
    /// Starts the publishing task; `origin` is the engine's [`super::Engine::instance`].
    pub fn start(bus: Bus, origin: uuid::Uuid) -> Self {
        let (tx, rx) = mpsc::channel(65_536);
        tokio::spawn(run(bus, origin, rx));
        Self { tx }
    }

    /// Queues the effects of one request (never waits; when the queue is full the effect is
    /// dropped: the bus is a hint and caches expire).
    pub fn publish(&self, tenant: TenantId, effects: Vec<Effect>) {
        for e in effects {
            if self.tx.try_send((tenant, e)).is_err() {
                tracing::debug!("session event queue full; event dropped");
            }
        }
    }
}

#[derive(Default)]
struct Pending {
    started: BTreeSet<String>,
    stopped: BTreeSet<String>,
}

async fn run(bus: Bus, origin: uuid::Uuid, mut rx: mpsc::Receiver<(TenantId, Effect)>) {
    while let Some(first) = rx.recv().await {
        let mut pending: HashMap<TenantId, Pending> = HashMap::new();
        let mut add = |(t, e): (TenantId, Effect)| {
            let p = pending.entry(t).or_default();
            match e {
                Effect::SessionStarted { username, .. } => p.started.insert(username),
                Effect::SessionStopped { username, .. } => p.stopped.insert(username),
            };
        };
        add(first);
        let deadline = tokio::time::Instant::now() + WINDOW;
        while let Ok(Some(x)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            add(x);
        }
        for (tenant, p) in pending {
            for (kind, names) in [
                (kinds::SESSION_STARTED, p.started),
                (kinds::SESSION_STOPPED, p.stopped),
            ] {
                if names.is_empty() {
                    continue;
                }
                let usernames = (names.len() <= MAX_NAMES).then_some(names);
                let payload = serde_json::json!({"usernames": usernames, "origin": origin});
                if let Err(e) = bus.publish(Some(tenant), kind, &payload).await {
                    tracing::debug!(error = %e, "could not publish {kind}");
                }
            }
        }
    }
}

/// Reads a session event's payload: (origin, usernames; None = the whole tenant).
pub fn parse_session_event(payload: &str) -> (Option<uuid::Uuid>, Option<Vec<String>>) {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let origin = v["origin"].as_str().and_then(|s| s.parse().ok());
    let names = match (&v["usernames"], v["username"].as_str()) {
        (serde_json::Value::Array(a), _) => Some(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
        ),
        (_, Some(u)) => Some(vec![u.to_owned()]),
        _ => None,
    };
    (origin, names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_event_payloads() {
        let o = uuid::Uuid::new_v4();
        let p = serde_json::json!({"usernames": ["a", "b"], "origin": o}).to_string();
        assert_eq!(
            parse_session_event(&p),
            (Some(o), Some(vec!["a".into(), "b".into()]))
        );
        assert_eq!(parse_session_event(r#"{"usernames": null}"#), (None, None));
        assert_eq!(parse_session_event(r#"{"stale": 3}"#), (None, None));
        assert_eq!(
            parse_session_event(r#"{"username": "x"}"#),
            (None, Some(vec!["x".into()]))
        );
        assert_eq!(parse_session_event("not json"), (None, None));
    }
}
