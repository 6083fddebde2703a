//! The `radius` role: direct RADIUS listeners (auth and accounting UDP). The NAS is found by the
//! datagram's source address through the system scope; the AAA engine does the rest.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use saas_core::aaa::{Effect, Engine, Request};
use saas_core::bus::{Bus, kinds};
use saas_core::model::{DirectNas, TenantStatus};
use saas_core::store::Store;
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, watch};

/// Which packets a listener takes.
#[derive(Clone, Copy, Debug)]
pub enum Port {
    /// Access-Request, Status-Server.
    Auth,
    /// Accounting-Request, Status-Server.
    Acct,
}

impl Port {
    fn accepts(self, code: u8) -> bool {
        match self {
            Port::Auth => matches!(code, 1 | 12),
            Port::Acct => matches!(code, 4 | 12),
        }
    }
}

/// Source address → NAS, cached briefly (negative answers too) and cleared on NAS/tenant changes.
pub struct Sources {
    store: Store,
    map: Mutex<HashMap<IpAddr, (Instant, Option<DirectNas>)>>,
    unknown_logged: Mutex<HashMap<IpAddr, Instant>>,
}

const SOURCE_TTL: Duration = Duration::from_secs(30);

impl Sources {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            map: Mutex::new(HashMap::new()),
            unknown_logged: Mutex::new(HashMap::new()),
        }
    }

    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    async fn lookup(&self, ip: IpAddr) -> Option<DirectNas> {
        if let Some((at, v)) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get(&ip)
            && at.elapsed() < SOURCE_TTL
        {
            return v.clone();
        }
        let found = match self.store.system().nas_by_source(ip).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "NAS lookup by source address failed");
                return None;
            }
        };
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ip, (Instant::now(), found.clone()));
        found
    }

    /// Logs an unknown source at most once a minute per address.
    fn log_unknown(&self, src: SocketAddr) {
        let mut m = self
            .unknown_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = m
            .get(&src.ip())
            .is_none_or(|at| at.elapsed() > Duration::from_secs(60));
        if due {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(src.ip(), Instant::now());
            tracing::warn!(source = %src, "RADIUS from an address that is no tenant's direct NAS; dropped (add it with `proxpanel nas add --ip`)");
        }
    }
}

/// Serves one listener until `stop`.
pub async fn serve(
    socket: UdpSocket,
    port: Port,
    engine: Arc<Engine>,
    sources: Arc<Sources>,
    bus: Bus,
    mut stop: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    // Bounded concurrency: a flood queues in the socket buffer instead of in memory.
    let permits = Arc::new(Semaphore::new(512));
    let mut buf = vec![0u8; 4096 + 1];
    loop {
        let (n, src) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "recv_from failed");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let datagram = buf[..n].to_vec();
        if datagram.first().is_none_or(|c| !port.accepts(*c)) {
            engine_drop(&engine, "wrong_port");
            continue;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (socket, engine, sources, bus) =
            (socket.clone(), engine.clone(), sources.clone(), bus.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Some(nas) = sources.lookup(src.ip()).await else {
                sources.log_unknown(src);
                engine_drop(&engine, "unknown_source");
                return;
            };
            if nas.tenant_status == TenantStatus::Deleted
                || nas.tenant_status == TenantStatus::Provisioning
            {
                engine_drop(&engine, "tenant_inactive");
                return;
            }
            let out = engine
                .handle(Request {
                    tenant: nas.tenant_id,
                    nas: nas.nas_id,
                    source: src,
                    datagram: &datagram,
                    now: saas_core::store::now(),
                })
                .await;
            if let Some(reply) = out.reply
                && let Err(e) = socket.send_to(&reply, src).await
            {
                tracing::debug!(error = %e, %src, "send_to failed");
            }
            for e in out.effects {
                let (kind, username, acct) = match e {
                    Effect::SessionStarted {
                        username,
                        acct_session_id,
                    } => (kinds::SESSION_STARTED, username, acct_session_id),
                    Effect::SessionStopped {
                        username,
                        acct_session_id,
                    } => (kinds::SESSION_STOPPED, username, acct_session_id),
                };
                let payload = serde_json::json!({"nas": nas.nas_id, "username": username, "acct_session_id": acct});
                if let Err(err) = bus.publish(Some(nas.tenant_id), kind, &payload).await {
                    tracing::debug!(error = %err, "could not publish {kind}");
                }
            }
        });
    }
}

fn engine_drop(engine: &Engine, reason: &'static str) {
    engine.count_drop(reason);
}

/// Clears caches when NAS or tenants change (the bus is a hint; the store is re-read).
pub async fn follow_changes(
    bus: Bus,
    engine: Arc<Engine>,
    sources: Arc<Sources>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = bus.subscribe();
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(ev) if ev.kind == kinds::NAS_CHANGED || ev.kind == kinds::TENANT_CHANGED => {
                    engine.invalidate_all();
                    sources.clear();
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    engine.invalidate_all();
                    sources.clear();
                }
                Err(_) => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
