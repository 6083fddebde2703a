//! The `radius` role: direct RADIUS listeners (auth and accounting UDP). The NAS is found by the
//! datagram's source address through the system scope; the AAA engine does the rest.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dns::udp_batch::{RecvBatch, SendBatch};
use saas_core::aaa::events::{EffectPublisher, parse_session_event};
use saas_core::aaa::{Engine, Request};
use saas_core::bus::{Bus, Next, kinds, next_event, next_of_kind};
use saas_core::model::{DirectNas, TenantStatus};
use saas_core::store::Store;
use saas_core::transport::NasTransport;
use tokio::net::UdpSocket;
use tokio::sync::watch;

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
        let found = match Box::pin(self.store.system().nas_by_source(ip)).await {
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
    events: EffectPublisher,
    stop: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    // One receiver per core: warm requests are answered by the receiver that read them.
    let receivers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..receivers {
        tasks.spawn(receive(
            socket.clone(),
            port,
            engine.clone(),
            sources.clone(),
            events.clone(),
            stop.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// Requests one receive loop has in progress at most (accounting waiting to be durable, a cold
/// cache): past it the loop reads nothing more until some finish, so a flood queues in the
/// socket buffer instead of in memory.
const IN_PROGRESS_MAX: usize = 256;

/// How long a stopping listener still answers the requests it has in progress.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A request that waits for something (accounting durability, a cold cache): its answer and
/// where it goes.
type InProgress =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<(Vec<u8>, SocketAddr)>> + Send>>;

/// One receive loop of a listener; several share the socket. Datagrams are read in batches
/// (`recvmmsg`: every one queued, up to `dns::udp_batch::BATCH`, in one system call); warm
/// Access-Requests are answered at once, and requests that wait (accounting until it is
/// durable, a cold cache) stay with the loop until they are done. Every answer ready at the
/// same moment goes back in one `sendmmsg`: the accounting records made durable by one spool
/// write are answered together, without a task and a system call each.
async fn receive(
    socket: Arc<UdpSocket>,
    port: Port,
    engine: Arc<Engine>,
    sources: Arc<Sources>,
    events: EffectPublisher,
    mut stop: watch::Receiver<bool>,
) {
    use futures_util::{FutureExt, StreamExt, stream::FuturesUnordered};
    let mut rb = RecvBatch::default();
    let mut sb = SendBatch::default();
    let mut waiting: FuturesUnordered<InProgress> = FuturesUnordered::new();
    let keep = |sb: &mut SendBatch, done: Option<(Vec<u8>, SocketAddr)>| {
        if let Some((reply, src)) = done {
            sb.slot().extend_from_slice(&reply);
            sb.commit(src);
        }
    };
    loop {
        let got = tokio::select! {
            r = rb.recv(&socket), if waiting.len() < IN_PROGRESS_MAX => match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "recvmmsg failed");
                    continue;
                }
            },
            Some(done) = waiting.next(), if !waiting.is_empty() => {
                keep(&mut sb, done);
                0
            }
            _ = stop.wait_for(|s| *s) => break,
        };
        for i in 0..got {
            let Some((datagram, Some(src))) = rb.get(i) else {
                continue;
            };
            if datagram.first().is_none_or(|c| !port.accepts(*c)) {
                engine_drop(&engine, "wrong_port");
                continue;
            }
            let datagram = datagram.to_vec();
            let (engine, sources, events) = (engine.clone(), sources.clone(), events.clone());
            let mut work: InProgress = Box::pin(async move {
                let Some(nas) = sources.lookup(src.ip()).await else {
                    sources.log_unknown(src);
                    engine_drop(&engine, "unknown_source");
                    return None;
                };
                if nas.tenant_status == TenantStatus::Deleted
                    || nas.tenant_status == TenantStatus::Provisioning
                {
                    engine_drop(&engine, "tenant_inactive");
                    return None;
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
                events.publish(nas.tenant_id, out.effects);
                out.reply.map(|r| (r, src))
            });
            // A warm Access-Request completes on its first poll and is answered in this batch.
            match (&mut work).now_or_never() {
                Some(done) => keep(&mut sb, done),
                None => waiting.push(work),
            }
        }
        // Whatever else finished meanwhile joins this send.
        while let Some(Some(done)) = waiting.next().now_or_never() {
            keep(&mut sb, done);
        }
        let failed = sb.flush(&socket).await;
        if failed > 0 {
            tracing::debug!(failed, "sendmmsg could not send some answers");
        }
    }
    // Stopping: answer what is in progress (accounting already on its way to disk) for a while.
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while let Some(done) = waiting.next().await {
            keep(&mut sb, done);
            sb.flush(&socket).await;
        }
    })
    .await;
}

fn engine_drop(engine: &Engine, reason: &'static str) {
    engine.count_drop(reason);
}

/// Clears caches when NAS, tenants, subscribers, plans or sessions change elsewhere (the bus is a
/// hint; the store is re-read).
pub async fn follow_changes(
    bus: Bus,
    engine: Arc<Engine>,
    sources: Arc<Sources>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = bus.subscribe();
    loop {
        let ev = match next_event(&mut rx, &mut stop).await {
            Next::Event(ev) => Some(ev),
            Next::Lagged => None,
            Next::Stopped => return,
        };
        let Some(ev) = ev else {
            // Events were missed: forget everything they might have changed.
            engine.invalidate_all();
            engine.resync_ledger().await;
            sources.clear();
            continue;
        };
        match (ev.kind.as_str(), ev.tenant_id) {
            (kinds::NAS_CHANGED, _) => {
                engine.invalidate_all();
                sources.clear();
            }
            (kinds::TENANT_CHANGED, Some(t)) => {
                engine.invalidate_tenant(t).await;
                sources.clear();
            }
            (kinds::SUBSCRIBER_CHANGED | kinds::PLAN_CHANGED, Some(t)) => {
                engine.invalidate_tenant(t).await
            }
            (kinds::SESSION_STARTED | kinds::SESSION_STOPPED | kinds::SESSION_USAGE, Some(t)) => {
                let (origin, users) = parse_session_event(&ev.payload);
                // Our own accounting already moved the ledger.
                if origin != Some(engine.instance()) {
                    engine.invalidate_sessions(t, users.as_deref()).await;
                }
            }
            _ => {}
        }
    }
}

/// Payload of a `coa.request` event.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct CoaRequest {
    /// `disconnect`, or `rate` (CoA with the subscriber's current plan rate).
    pub action: String,
    /// Subscriber whose open sessions are targeted; none = every session of the tenant.
    pub username: Option<String>,
}

async fn current_rate(scope: &saas_core::TenantScope, username: &str) -> Option<String> {
    let sub = scope.subscriber_by_username(username).await.ok()??;
    let plan = scope.plan(sub.plan_id?).await.ok()??;
    Some(saas_core::aaa::mikrotik_rate(&plan, false))
}

/// Answers `coa.request` events for NAS this process can reach: one Disconnect-Request per open
/// session of the user, each result audited and returned in `coa.result`.
pub async fn answer_coa_requests(
    bus: Bus,
    store: Store,
    coa: saas_core::aaa::coa::CoaClient,
    api: Arc<dyn NasTransport>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = bus.subscribe();
    while let Some(ev) = next_of_kind(&mut rx, &mut stop, kinds::COA_REQUEST).await {
        let (Some(tenant), Ok(req)) = (
            ev.tenant_id,
            serde_json::from_str::<CoaRequest>(&ev.payload),
        ) else {
            continue;
        };
        let (bus, store, coa, api) = (bus.clone(), store.clone(), coa.clone(), api.clone());
        tokio::spawn(async move {
            let scope = store.tenant(tenant);
            let mut results = Vec::new();
            let sessions = scope.sessions(true, 1000).await.unwrap_or_default();
            for s in sessions
                .into_iter()
                .filter(|s| req.username.as_ref().is_none_or(|u| &s.username == u))
            {
                let r = match (scope.nas(s.nas).await, scope.nas_secret(s.nas).await) {
                    (Ok(Some(nas)), Ok(secret)) if req.action == "rate" => {
                        match current_rate(&scope, &s.username).await {
                            Some(rate) if nas.vendor == saas_core::model::NasVendor::Mikrotik => {
                                coa.change_rate(tenant, &nas, &secret, &s, &rate).await
                            }
                            _ => saas_core::aaa::coa::CoaResult {
                                outcome: "skipped".into(),
                                error_cause: None,
                                detail: "no rate to push (generic NAS or no plan)".into(),
                            },
                        }
                    }
                    (Ok(Some(nas)), Ok(secret)) => {
                        let r = coa.disconnect(tenant, &nas, &secret, &s).await;
                        disconnect_fallback(api.as_ref(), &scope, &nas, &s, r).await
                    }
                    _ => saas_core::aaa::coa::CoaResult {
                        outcome: "error".into(),
                        error_cause: None,
                        detail: "NAS not found".into(),
                    },
                };
                let details = serde_json::json!({"acct_session_id": s.acct_session_id, "outcome": r.outcome, "error_cause": r.error_cause}).to_string();
                let action = if req.action == "rate" {
                    "session.coa"
                } else {
                    "session.disconnect"
                };
                if let Err(e) = scope
                    .audit("system", action, Some(&s.username), Some(&details))
                    .await
                {
                    tracing::warn!(error = %e, "could not audit a CoA");
                }
                results.push(serde_json::json!({"session": s.id, "acct_session_id": s.acct_session_id, "nas": s.nas, "result": r}));
            }
            let payload = serde_json::json!({"username": req.username, "results": results});
            if let Err(e) = bus.respond(&ev, kinds::COA_RESULT, &payload).await {
                tracing::warn!(error = %e, "could not answer coa.request");
            }
        });
    }
}

/// When a Disconnect got a NAK or no answer, a MikroTik NAS with an API login is asked to
/// remove the session from `/ppp/active` instead (outcome `api-kick`); otherwise, or when the
/// API fails too, the CoA result stands with the API's reason added.
pub async fn disconnect_fallback(
    api: &dyn NasTransport,
    scope: &saas_core::TenantScope,
    nas: &saas_core::model::Nas,
    session: &saas_core::model::Session,
    coa: saas_core::aaa::coa::CoaResult,
) -> saas_core::aaa::coa::CoaResult {
    if coa.acked() || nas.vendor != saas_core::model::NasVendor::Mikrotik || nas.api_user.is_none()
    {
        return coa;
    }
    match saas_core::routeros::kick_session(
        api,
        scope,
        nas,
        session,
        saas_core::routeros::DEFAULT_TIMEOUT,
    )
    .await
    {
        Ok(Some(id)) => saas_core::aaa::coa::CoaResult {
            outcome: "api-kick".into(),
            error_cause: coa.error_cause,
            detail: format!(
                "Disconnect {}: {}; removed /ppp/active {id} through the RouterOS API",
                coa.outcome, coa.detail
            ),
        },
        Ok(None) => saas_core::aaa::coa::CoaResult {
            outcome: "api-gone".into(),
            error_cause: coa.error_cause,
            detail: format!(
                "Disconnect {}: {}; the router has no such active session any more",
                coa.outcome, coa.detail
            ),
        },
        Err(e) => saas_core::aaa::coa::CoaResult {
            detail: format!("{}; API fallback failed: {e}", coa.detail),
            ..coa
        },
    }
}
