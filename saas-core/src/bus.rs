//! The event bus (DESIGN §9): an append-only `events` table that every process polls (at least
//! every 250 ms, remembering its position), with Redis pub/sub or PostgreSQL LISTEN/NOTIFY as an
//! optional wake-up. Payloads carry ids, never secrets; consumers treat events as hints and
//! re-read the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

use crate::ids::TenantId;
use crate::store::{Store, StoreError, StoredEvent};

/// Event kinds of DESIGN §9.
pub mod kinds {
    /// A tenant was created, changed status, limits or relay node.
    pub const TENANT_CHANGED: &str = "tenant.changed";
    /// A WireGuard peer was added, changed or removed.
    pub const PEER_CHANGED: &str = "peer.changed";
    /// A NAS was added, changed or removed.
    pub const NAS_CHANGED: &str = "nas.changed";
    /// A NAS's tunnel/RADIUS/API state changed.
    pub const NAS_STATE: &str = "nas.state";
    /// A subscriber was added, changed or removed.
    pub const SUBSCRIBER_CHANGED: &str = "subscriber.changed";
    /// A plan was added or changed.
    pub const PLAN_CHANGED: &str = "plan.changed";
    /// An accounting session started.
    pub const SESSION_STARTED: &str = "session.started";
    /// An accounting session stopped.
    pub const SESSION_STOPPED: &str = "session.stopped";
    /// Open sessions' counters rose outside accounting (QuotaSync); payload `{usernames}`.
    pub const SESSION_USAGE: &str = "session.usage";
    /// A CoA/Disconnect request for the node holding the NAS.
    pub const COA_REQUEST: &str = "coa.request";
    /// The result of a CoA/Disconnect request.
    pub const COA_RESULT: &str = "coa.result";
    /// DNS data changed.
    pub const DNS_CHANGED: &str = "dns.changed";
    /// Request: check that a NAS is reachable (RouterOS API port through its path).
    pub const NAS_CHECK: &str = "nas.check";
    /// Result of a `nas.check`.
    pub const NAS_CHECK_RESULT: &str = "nas.check.result";
    /// Request: open sessions with their routers' live view (`session list --online --live`).
    pub const SESSIONS_LIVE: &str = "sessions.live";
    /// Result of a `sessions.live`.
    pub const SESSIONS_LIVE_RESULT: &str = "sessions.live.result";
}

/// Bus failures.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Writing or reading the event log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nobody answered a request in time.
    #[error(
        "no process answered {kind} within {timeout:?} (is `proxpanel serve` running with the role that handles it?)"
    )]
    Timeout {
        /// Request kind.
        kind: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The payload is not JSON-serialisable.
    #[error("event payload: {0}")]
    Payload(#[from] serde_json::Error),
    /// The bus was shut down.
    #[error("event bus closed")]
    Closed,
}

/// How often every process reads the log even without a wake-up.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Handle to the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    tx: broadcast::Sender<Arc<StoredEvent>>,
    position: AtomicI64,
    wake: Arc<Notify>,
    redis: Option<redis::aio::ConnectionManager>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("position", &self.position())
            .field("redis", &self.inner.redis.is_some())
            .finish()
    }
}

/// Wake-up channel pattern; each event is announced on `pp:{<tenant>|platform}:events`.
const WAKE_PATTERN: &str = "pp:{*}:events";

fn wake_channel(tenant: Option<TenantId>) -> String {
    match tenant {
        Some(t) => format!("pp:{{{t}}}:events"),
        None => "pp:{platform}:events".to_owned(),
    }
}

impl Bus {
    /// Starts the bus from the current end of the log (only new events are delivered).
    /// With a Redis URL, wake-ups travel over Redis pub/sub; on PostgreSQL, over LISTEN/NOTIFY.
    pub async fn start(store: Store, redis_url: Option<&str>) -> Result<Self, BusError> {
        let start = store.platform().last_event_id().await?;
        let (tx, _) = broadcast::channel(4096);
        let wake = Arc::new(Notify::new());
        let (shutdown, _) = watch::channel(false);
        let mut redis_conn = None;
        if let Some(url) = redis_url {
            match redis::Client::open(url) {
                Ok(client) => {
                    match redis::aio::ConnectionManager::new(client.clone()).await {
                        Ok(c) => redis_conn = Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "redis wake-up unavailable; the bus falls back to polling")
                        }
                    }
                    tokio::spawn(redis_wake_task(client, wake.clone(), shutdown.subscribe()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bad redis URL for the bus wake-up; polling only")
                }
            }
        } else if let Some(listener) = store.event_listener().await? {
            tokio::spawn(pg_wake_task(listener, wake.clone(), shutdown.subscribe()));
        }
        let stop = shutdown.subscribe();
        let inner = Arc::new(Inner {
            store,
            tx,
            position: AtomicI64::new(start),
            wake,
            redis: redis_conn,
            shutdown,
        });
        tokio::spawn(poll_task(Arc::downgrade(&inner), stop));
        Ok(Self { inner })
    }

    /// Position of the newest event delivered to subscribers.
    pub fn position(&self) -> i64 {
        self.inner.position.load(Ordering::Acquire)
    }

    /// Receives every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.inner.tx.subscribe()
    }

    /// Appends an event and wakes every process.
    pub async fn publish<P: Serialize>(
        &self,
        tenant: Option<TenantId>,
        kind: &str,
        payload: &P,
    ) -> Result<i64, BusError> {
        self.publish_correlated(tenant, kind, None, payload).await
    }

    async fn publish_correlated<P: Serialize>(
        &self,
        tenant: Option<TenantId>,
        kind: &str,
        correlation: Option<Uuid>,
        payload: &P,
    ) -> Result<i64, BusError> {
        let body = serde_json::to_string(payload)?;
        let id = self
            .inner
            .store
            .platform()
            .append_event(tenant, kind, correlation, &body)
            .await?;
        self.inner.wake.notify_one();
        if let Some(conn) = &self.inner.redis {
            let mut c = conn.clone();
            let r: Result<i64, _> = redis::cmd("PUBLISH")
                .arg(wake_channel(tenant))
                .arg(id)
                .query_async(&mut c)
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "redis wake-up publish failed; peers will see the event on their next poll");
            }
        }
        Ok(id)
    }

    /// Publishes a request with a fresh correlation id and waits for the matching `result_kind`.
    pub async fn request<P: Serialize>(
        &self,
        tenant: Option<TenantId>,
        kind: &str,
        payload: &P,
        result_kind: &str,
        timeout: Duration,
    ) -> Result<Arc<StoredEvent>, BusError> {
        let corr = Uuid::new_v4();
        let mut rx = self.subscribe();
        self.publish_correlated(tenant, kind, Some(corr), payload)
            .await?;
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(ev) if ev.correlation_id == Some(corr) && ev.kind == result_kind => {
                        return Ok(ev);
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return Err(BusError::Closed),
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| BusError::Timeout {
                kind: kind.to_owned(),
                timeout,
            })?
    }

    /// Answers a request event with a result carrying its correlation id.
    pub async fn respond<P: Serialize>(
        &self,
        request: &StoredEvent,
        result_kind: &str,
        payload: &P,
    ) -> Result<i64, BusError> {
        self.publish_correlated(
            request.tenant_id,
            result_kind,
            request.correlation_id,
            payload,
        )
        .await
    }

    /// Removes events older than `age`.
    pub async fn prune(&self, age: Duration) -> Result<u64, BusError> {
        let cutoff = crate::store::now()
            - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::hours(1));
        Ok(self.inner.store.platform().prune_events(cutoff).await?)
    }

    /// Stops the background tasks (before the store is closed).
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

/// Resolves once the bus is shut down (the watch guard is not held across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn poll_task(inner: std::sync::Weak<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let wake = strong.wake.clone();
        let failed = drain(&strong).await.err();
        drop(strong);
        // After shutdown the store may be closed under us; that is not worth a warning.
        if let Some(e) = failed
            && !*stop.borrow()
        {
            tracing::warn!(error = %e, "event bus poll failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = wake.notified() => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

async fn drain(inner: &Inner) -> Result<(), StoreError> {
    loop {
        let pos = inner.position.load(Ordering::Acquire);
        let batch = inner.store.platform().events_after(pos, 500).await?;
        let Some(last) = batch.last().map(|e| e.id) else {
            return Ok(());
        };
        let full = batch.len() == 500;
        for ev in batch {
            // No receivers is fine: nobody is interested in events right now.
            let _ = inner.tx.send(Arc::new(ev));
        }
        inner.position.store(last, Ordering::Release);
        if !full {
            return Ok(());
        }
    }
}

async fn redis_wake_task(
    client: redis::Client,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let run = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.psubscribe(WAKE_PATTERN).await?;
            let mut stream = ps.on_message();
            while stream.next().await.is_some() {
                wake.notify_one();
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            r = run => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "redis wake-up subscription lost; reconnecting");
                }
            }
            _ = stopped(&mut stop) => return,
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn pg_wake_task(
    mut listener: sqlx::postgres::PgListener,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.recv() => match r {
                Ok(_) => wake.notify_one(),
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection lost; polling until it is back");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = stopped(&mut stop) => return,
        }
    }
}

/// What a follower of the bus gets next.
#[derive(Debug)]
pub enum Next {
    /// An event.
    Event(Arc<StoredEvent>),
    /// Events were missed (the follower was too slow): re-read what it caches.
    Lagged,
    /// Shut down, or the bus is gone.
    Stopped,
}

/// The next event for a follower loop, or why there is none.
pub async fn next_event(
    rx: &mut broadcast::Receiver<Arc<StoredEvent>>,
    stop: &mut watch::Receiver<bool>,
) -> Next {
    tokio::select! {
        r = rx.recv() => match r {
            Ok(ev) => Next::Event(ev),
            Err(broadcast::error::RecvError::Lagged(_)) => Next::Lagged,
            Err(broadcast::error::RecvError::Closed) => Next::Stopped,
        },
        _ = stop.wait_for(|s| *s) => Next::Stopped,
    }
}

/// The next event of `kind` (missed events are skipped: requests are retried by their
/// callers); None once stopped.
pub async fn next_of_kind(
    rx: &mut broadcast::Receiver<Arc<StoredEvent>>,
    stop: &mut watch::Receiver<bool>,
    kind: &str,
) -> Option<Arc<StoredEvent>> {
    loop {
        match next_event(rx, stop).await {
            Next::Event(ev) if ev.kind == kind => return Some(ev),
            Next::Event(_) | Next::Lagged => {}
            Next::Stopped => return None,
        }
    }
}
