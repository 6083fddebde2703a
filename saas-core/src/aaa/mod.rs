//! The tenant-scoped RADIUS AAA engine. Sans-IO with respect to the network: the caller (direct
//! UDP listeners here, the WireGuard relay later) hands in a datagram with the tenant and NAS it
//! came from and sends back the reply bytes the engine returns.
//!
//! Authentication checks run in a fixed order, each with its own reason in the auth log and in
//! Reply-Message: unknown user, wrong password, disabled, expired, MAC lock, simultaneous use,
//! quota. Accounting is acknowledged only after the store has committed it.

pub mod coa;
pub mod events;
pub mod ledger;
mod metrics;
mod state;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub use self::metrics::AaaMetrics;
use self::state::{AuthLogWriter, LiveState};
use self::writer::{AcctOp, AcctWriter};
use crate::ids::{NasId, TenantId};
use crate::model::*;
use crate::radius::{
    Code, DropReason, MaStatus, PacketBuilder, Validated, chap, dict, validate, verify_request,
};
use crate::store::{Store, TenantScope, normalize_mac};

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Acct-Interim-Interval sent in every Access-Accept.
    pub interim_interval_s: u32,
    /// How long a reply is kept for retransmitted requests.
    pub duplicate_window: Duration,
    /// Requests per second allowed per tenant (0 = unlimited).
    pub tenant_rps: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            interim_interval_s: 60,
            duplicate_window: Duration::from_secs(30),
            tenant_rps: 2000,
        }
    }
}

/// One datagram handed to the engine.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Tenant the NAS belongs to (from the source address or the WireGuard peer).
    pub tenant: TenantId,
    /// The NAS.
    pub nas: NasId,
    /// Where the datagram came from.
    pub source: SocketAddr,
    /// The raw RADIUS packet.
    pub datagram: &'a [u8],
    /// Receive time.
    pub now: DateTime<Utc>,
}

/// What happened, beside the reply, for the caller to publish.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// An accounting Start was stored.
    SessionStarted {
        /// Login.
        username: String,
        /// Acct-Session-Id.
        acct_session_id: String,
    },
    /// An accounting Stop was stored.
    SessionStopped {
        /// Login.
        username: String,
        /// Acct-Session-Id.
        acct_session_id: String,
    },
}

/// The engine's answer.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Bytes to send back to the source, if any.
    pub reply: Option<Vec<u8>>,
    /// Why the datagram was dropped, if it was.
    pub dropped: Option<&'static str>,
    /// Side effects to announce.
    pub effects: Vec<Effect>,
}

impl Outcome {
    fn drop(reason: &'static str) -> Self {
        Self {
            reply: None,
            dropped: Some(reason),
            effects: vec![],
        }
    }
}

/// A reason a subscriber is refused, in check order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// No such username in this tenant.
    UnknownUser,
    /// The password does not match.
    WrongPassword,
    /// Disabled by an admin.
    Disabled,
    /// Past its expiry.
    Expired,
    /// Calling-Station-Id is not the locked MAC.
    MacLock,
    /// As many sessions open as allowed.
    SimultaneousUse,
    /// Quota used up on a plan that rejects then.
    QuotaExhausted,
    /// No PAP, CHAP or MS-CHAPv2 credentials.
    UnsupportedMethod,
    /// The tenant is not active.
    TenantSuspended,
}

impl RejectReason {
    /// The text in Reply-Message and the auth log.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownUser => "unknown user",
            RejectReason::WrongPassword => "wrong password",
            RejectReason::Disabled => "account disabled",
            RejectReason::Expired => "account expired",
            RejectReason::MacLock => "MAC address not allowed",
            RejectReason::SimultaneousUse => "simultaneous-use limit reached",
            RejectReason::QuotaExhausted => "quota exhausted",
            RejectReason::UnsupportedMethod => "unsupported authentication method",
            RejectReason::TenantSuspended => "service suspended",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Method {
    Pap,
    Chap,
    MsChapV2,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Pap => "pap",
            Method::Chap => "chap",
            Method::MsChapV2 => "mschap",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Method::Pap => "PAP",
            Method::Chap => "CHAP",
            Method::MsChapV2 => "MSCHAPv2",
        }
    }
}

/// What the engine keeps of a NAS between packets (invalidated by `nas.changed`).
struct NasInfo {
    secret: Vec<u8>,
    vendor: NasVendor,
    policy: MessageAuthPolicy,
    ma_seen: Mutex<HashSet<String>>,
    last_touch: Mutex<Option<Instant>>,
}

type DupKey = (NasId, u8, [u8; 16]);

/// Token bucket per tenant.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The AAA engine; cheap to share behind an `Arc`.
pub struct Engine {
    store: Store,
    writer: AcctWriter,
    live: LiveState,
    auth_log: AuthLogWriter,
    config: EngineConfig,
    metrics: AaaMetrics,
    nas: RwLock<HashMap<NasId, Arc<NasInfo>>>,
    duplicates: Mutex<HashMap<DupKey, (Instant, Vec<u8>)>>,
    swept: Mutex<Option<Instant>>,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
    ledger: Arc<dyn ledger::Ledger>,
    instance: uuid::Uuid,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn attr_str(v: &Validated<'_>, typ: u8) -> Option<String> {
    v.attr(typ).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn attr_u32(v: &Validated<'_>, typ: u8) -> Option<u32> {
    v.attr(typ)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
}

/// RFC 3162 prefix encoding: reserved, prefix length, the prefix octets that the length covers.
fn ipv6_prefix_attr(p: &str) -> Option<Vec<u8>> {
    let net: ipnet::Ipv6Net = p.parse().ok()?;
    let len = net.prefix_len();
    let octets = net.network().octets();
    let n = usize::from(len).div_ceil(8);
    let mut v = vec![0, len];
    v.extend_from_slice(&octets[..n]);
    Some(v)
}

fn terminate_cause_name(code: u32) -> String {
    const NAMES: [&str; 23] = [
        "",
        "User-Request",
        "Lost-Carrier",
        "Lost-Service",
        "Idle-Timeout",
        "Session-Timeout",
        "Admin-Reset",
        "Admin-Reboot",
        "Port-Error",
        "NAS-Error",
        "NAS-Request",
        "NAS-Reboot",
        "Port-Unneeded",
        "Port-Preempted",
        "Port-Suspended",
        "Service-Unavailable",
        "Callback",
        "User-Error",
        "Host-Request",
        "Supplicant-Restart",
        "Reauthentication-Failure",
        "Port-Reinitialized",
        "Port-Administratively-Disabled",
    ];
    NAMES
        .get(code as usize)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("Cause-{code}"))
}

enum Verdict {
    Accept { attrs: Vec<(AttrOut, Vec<u8>)> },
    Reject(RejectReason),
}

enum AttrOut {
    Std(u8),
    Vsa(u32, u8),
}

impl Engine {
    /// An engine over a store; accounting goes through `writer` (group commit, spool).
    pub fn new(
        store: Store,
        writer: AcctWriter,
        config: EngineConfig,
        metrics: AaaMetrics,
    ) -> Self {
        Self {
            auth_log: AuthLogWriter::start(store.clone()),
            live: LiveState::default(),
            store,
            writer,
            config,
            metrics,
            nas: RwLock::new(HashMap::new()),
            duplicates: Mutex::new(HashMap::new()),
            swept: Mutex::new(None),
            buckets: Mutex::new(HashMap::new()),
            ledger: Arc::new(ledger::MemoryLedger::default()),
            instance: uuid::Uuid::new_v4(),
        }
    }

    /// Keeps the session ledger there (Redis, shared by every node) instead of in-process.
    pub fn with_ledger(mut self, ledger: Arc<dyn ledger::Ledger>) -> Self {
        self.ledger = ledger;
        self
    }

    /// This engine's id: session events it caused carry it as `origin`.
    pub fn instance(&self) -> uuid::Uuid {
        self.instance
    }

    /// Forgets what is cached about a NAS (on `nas.changed`).
    pub fn invalidate_nas(&self, nas: NasId) {
        self.nas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&nas);
    }

    /// Forgets every cached NAS, tenant and subscriber.
    pub fn invalidate_all(&self) {
        self.nas.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.live.forget_all();
    }

    /// Forgets what is cached about one tenant (tenant, subscriber or plan changed: a usage
    /// reset or a new plan changes what the ledger must count).
    pub async fn invalidate_tenant(&self, tenant: TenantId) {
        self.live.forget_tenant(tenant);
        self.forget_ledger(tenant, None).await;
    }

    /// Sessions started or stopped elsewhere (another node, the stale sweeper): an in-process
    /// ledger re-seeds those subscribers from the store. `usernames` None = the whole tenant.
    /// A shared ledger already has what other nodes' accounting did, so only sweeps count.
    pub async fn invalidate_sessions(&self, tenant: TenantId, usernames: Option<&[String]>) {
        match usernames {
            Some(_) if self.ledger.shared() => {}
            Some(users) => {
                for u in users {
                    self.forget_ledger(tenant, Some(u)).await;
                }
            }
            None => self.forget_ledger(tenant, None).await,
        }
    }

    /// After missed bus events: an in-process ledger re-seeds everything from the store.
    pub async fn resync_ledger(&self) {
        if let Err(e) = self.ledger.forget_local().await {
            tracing::warn!(error = %e, "could not clear the session ledger");
        }
    }

    async fn forget_ledger(&self, tenant: TenantId, username: Option<&str>) {
        if let Err(e) = self.ledger.forget(tenant, username).await {
            tracing::warn!(error = %e, %tenant, "could not clear the session ledger");
        }
    }

    /// A subscriber's open sessions and usage: from the ledger, seeded from the store when cold.
    /// If the cache fails, the store answers (slower, still exact).
    async fn usage(
        &self,
        scope: &TenantScope,
        username: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<ledger::Usage, crate::store::StoreError> {
        match self.ledger.get(scope.tenant_id(), username).await {
            Ok(Some(u)) => return Ok(u),
            Ok(None) => {}
            Err(e) => {
                self.metrics.dropped("ledger_unavailable");
                tracing::warn!(error = %e, "session ledger unavailable; reading the store");
            }
        }
        // The store must have every acknowledged record before it seeds the ledger (records the
        // writer spooled ahead of the store, an Accounting-On that closed sessions). After the
        // wait it answers anyway: while the store is down the read fails on its own.
        if !self.writer.settled(Duration::from_secs(1)).await {
            tracing::debug!(
                "accounting spool not yet in the store; seeding the ledger from it anyway"
            );
        }
        // Boxed: cold-path store futures are large; inline they would bloat every request's task.
        let seed = Box::pin(scope.ledger_seed(username, since)).await?;
        let u = seed.usage();
        if let Err(e) = self.ledger.seed(scope.tenant_id(), username, &seed).await {
            tracing::debug!(error = %e, "could not seed the session ledger");
        }
        Ok(u)
    }

    /// Counts a datagram dropped before it reached the engine (listener-level reasons).
    pub fn count_drop(&self, reason: &'static str) {
        self.metrics.dropped(reason);
    }

    fn admit(&self, tenant: TenantId) -> bool {
        let rps = self.config.tenant_rps;
        if rps == 0 {
            return true;
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = b.entry(tenant).or_insert(Bucket {
            tokens: f64::from(rps),
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * f64::from(rps);
        bucket.tokens = (bucket.tokens + refill).min(f64::from(rps));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn nas_info(&self, scope: &TenantScope, nas: NasId) -> Option<Arc<NasInfo>> {
        if let Some(i) = self.nas.read().unwrap_or_else(|p| p.into_inner()).get(&nas) {
            return Some(i.clone());
        }
        let n = Box::pin(scope.nas(nas)).await.ok()??;
        let secret = Box::pin(scope.nas_secret(nas)).await.ok()?;
        let info = Arc::new(NasInfo {
            secret: secret.into_bytes(),
            vendor: n.vendor,
            policy: n.message_auth,
            ma_seen: Mutex::new(n.message_auth_seen.into_iter().collect()),
            last_touch: Mutex::new(None),
        });
        self.nas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(nas, info.clone());
        Some(info)
    }

    fn duplicate(&self, key: &DupKey) -> Option<Vec<u8>> {
        let d = self.duplicates.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.config.duplicate_window;
        match d.get(key) {
            Some((at, reply)) if at.elapsed() < window => Some(reply.clone()),
            _ => None,
        }
    }

    fn remember(&self, key: DupKey, reply: &[u8]) {
        let now = Instant::now();
        let mut d = self.duplicates.lock().unwrap_or_else(|p| p.into_inner());
        // Expired replies are swept at most once per window, not on every request: a full scan
        // per packet under this lock was the hot spot of the benchmark.
        if d.len() > 50_000
            && self
                .swept
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none_or(|at| now.duration_since(at) >= self.config.duplicate_window)
        {
            let window = self.config.duplicate_window;
            d.retain(|_, (at, _)| now.duration_since(*at) < window);
            *self.swept.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        }
        d.insert(key, (now, reply.to_vec()));
    }

    /// Handles one datagram. Never panics on any input.
    pub async fn handle(&self, req: Request<'_>) -> Outcome {
        let v = match validate(req.datagram) {
            Ok(v) => v,
            Err(e) => return self.dropped(req.tenant, e.as_str()),
        };
        if !self.admit(req.tenant) {
            self.metrics.tenant_throttled(req.tenant);
            return Outcome::drop("tenant_budget");
        }
        let scope = self.store.tenant(req.tenant);
        let Some(nas) = self.nas_info(&scope, req.nas).await else {
            return self.dropped(req.tenant, "unknown_nas");
        };
        let key = (req.nas, v.identifier(), v.authenticator());
        if let Some(reply) = self.duplicate(&key) {
            self.metrics.duplicate();
            return Outcome {
                reply: Some(reply),
                dropped: None,
                effects: vec![],
            };
        }
        let ma = match verify_request(&v, &nas.secret) {
            Ok(s) => s,
            Err(e) => {
                if matches!(
                    e,
                    DropReason::BadAuthenticator | DropReason::BadMessageAuthenticator
                ) {
                    tracing::warn!(tenant = %req.tenant, nas = %req.nas, source = %req.source, reason = e.as_str(), "RADIUS packet failed authentication (wrong secret?)");
                }
                return self.dropped(req.tenant, e.as_str());
            }
        };
        self.touch(&scope, req.nas, &nas, req.now).await;
        let outcome = match v.code() {
            Code::AccessRequest => self.access(&scope, &req, &v, &nas, ma).await,
            Code::AccountingRequest => self.accounting(&scope, &req, &v, &nas).await,
            Code::StatusServer => self.status_server(&v, &nas),
            _ => return self.dropped(req.tenant, DropReason::UnexpectedCode.as_str()),
        };
        if let Some(r) = &outcome.reply {
            self.remember(key, r);
        }
        outcome
    }

    fn dropped(&self, tenant: TenantId, reason: &'static str) -> Outcome {
        self.metrics.dropped(reason);
        let _ = tenant;
        Outcome::drop(reason)
    }

    async fn touch(&self, scope: &TenantScope, id: NasId, nas: &NasInfo, now: DateTime<Utc>) {
        // One write per NAS per 30 s keeps radius_last_seen useful without a write per packet.
        let due = {
            let mut t = nas.last_touch.lock().unwrap_or_else(|p| p.into_inner());
            let due = t.is_none_or(|at| at.elapsed() > Duration::from_secs(30));
            if due {
                *t = Some(Instant::now());
            }
            due
        };
        if due && let Err(e) = Box::pin(scope.touch_nas(id, now)).await {
            tracing::debug!(error = %e, "could not record radius_last_seen");
        }
    }

    fn status_server(&self, v: &Validated<'_>, nas: &NasInfo) -> Outcome {
        match PacketBuilder::reply(v, Code::AccessAccept) {
            Ok(b) => Outcome {
                reply: Some(b.finish(&nas.secret)),
                dropped: None,
                effects: vec![],
            },
            Err(_) => Outcome::drop("encode"),
        }
    }

    async fn access(
        &self,
        scope: &TenantScope,
        req: &Request<'_>,
        v: &Validated<'_>,
        nas: &NasInfo,
        ma: MaStatus,
    ) -> Outcome {
        let method = if v.attr(dict::USER_PASSWORD).is_some() {
            Some(Method::Pap)
        } else if v.attr(dict::CHAP_PASSWORD).is_some() {
            Some(Method::Chap)
        } else if v
            .vsa(dict::VENDOR_MICROSOFT, dict::microsoft::CHAP2_RESPONSE)
            .is_some()
        {
            Some(Method::MsChapV2)
        } else {
            None
        };
        let username = attr_str(v, dict::USER_NAME).unwrap_or_default();
        let csid = attr_str(v, dict::CALLING_STATION_ID);
        // Blast-RADIUS: the policy decides whether a request without Message-Authenticator is
        // acceptable; `auto` learns per method once the NAS has sent one.
        if let Some(m) = method {
            let seen = nas
                .ma_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(m.as_str());
            match (ma, nas.policy) {
                (MaStatus::Absent, MessageAuthPolicy::Require)
                | (MaStatus::Absent, MessageAuthPolicy::Auto)
                    if nas.policy == MessageAuthPolicy::Require || seen =>
                {
                    let why = if nas.policy == MessageAuthPolicy::Require {
                        "Message-Authenticator missing (NAS policy: require)"
                    } else {
                        "Message-Authenticator missing (this NAS sent one before for this method)"
                    };
                    tracing::warn!(tenant = %req.tenant, nas = %req.nas, username, method = m.label(), "Access-Request refused: {why}");
                    self.log_auth(
                        scope,
                        req,
                        &username,
                        Some(m),
                        false,
                        Some(why),
                        csid.as_deref(),
                    )
                    .await;
                    return self
                        .dropped(req.tenant, DropReason::MissingMessageAuthenticator.as_str());
                }
                (MaStatus::Valid, MessageAuthPolicy::Auto) if !seen => {
                    nas.ma_seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(m.as_str().to_owned());
                    if let Err(e) =
                        Box::pin(scope.mark_message_auth_seen(req.nas, m.as_str())).await
                    {
                        tracing::warn!(error = %e, "could not remember Message-Authenticator use");
                    }
                }
                _ => {}
            }
        }
        let (verdict, mschap) = match method {
            None => (Verdict::Reject(RejectReason::UnsupportedMethod), None),
            Some(m) => match self
                .decide(scope, req, v, nas, m, &username, csid.as_deref())
                .await
            {
                Ok(x) => x,
                Err(e) => {
                    // Store trouble: no answer, the NAS retries or fails over.
                    tracing::error!(error = %e, tenant = %req.tenant, "authentication failed on the store");
                    return self.dropped(req.tenant, "store_error");
                }
            },
        };
        let (code, reason) = match &verdict {
            Verdict::Accept { .. } => (Code::AccessAccept, None),
            Verdict::Reject(r) => (Code::AccessReject, Some(*r)),
        };
        self.metrics.auth(
            method.map(Method::label).unwrap_or("none"),
            reason.map(RejectReason::as_str).unwrap_or("accept"),
        );
        self.log_auth(
            scope,
            req,
            &username,
            method,
            reason.is_none(),
            reason.map(RejectReason::as_str),
            csid.as_deref(),
        )
        .await;
        let mut b = match PacketBuilder::reply(v, code) {
            Ok(b) => b,
            Err(_) => return Outcome::drop("encode"),
        };
        let mut ok = true;
        match verdict {
            Verdict::Accept { attrs } => {
                for (a, val) in attrs {
                    ok &= match a {
                        AttrOut::Std(t) => b.attr(t, &val).is_ok(),
                        AttrOut::Vsa(vendor, t) => b.vsa(vendor, t, &val).is_ok(),
                    };
                }
            }
            Verdict::Reject(r) => {
                ok &= b.attr_str(dict::REPLY_MESSAGE, r.as_str()).is_ok();
                if let Some((ident, challenge)) = mschap {
                    let code = match r {
                        RejectReason::Disabled => chap::MSCHAP_ERROR_ACCT_DISABLED,
                        RejectReason::Expired => chap::MSCHAP_ERROR_PASSWD_EXPIRED,
                        _ => chap::MSCHAP_ERROR_AUTHENTICATION_FAILURE,
                    };
                    ok &= b
                        .vsa(
                            dict::VENDOR_MICROSOFT,
                            dict::microsoft::CHAP_ERROR,
                            &chap::mschap_error(ident, code, false, &challenge, r.as_str()),
                        )
                        .is_ok();
                }
            }
        }
        if !ok {
            return Outcome::drop("encode");
        }
        Outcome {
            reply: Some(b.finish(&nas.secret)),
            dropped: None,
            effects: vec![],
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn log_auth(
        &self,
        scope: &TenantScope,
        req: &Request<'_>,
        username: &str,
        method: Option<Method>,
        accept: bool,
        reason: Option<&str>,
        csid: Option<&str>,
    ) {
        let e = AuthLogEntry {
            at: req.now,
            nas_id: Some(req.nas),
            username: username.to_owned(),
            method: method.map(|m| m.label().to_owned()),
            outcome: if accept { "accept" } else { "reject" }.to_owned(),
            reason: reason.map(str::to_owned),
            calling_station_id: csid.map(str::to_owned),
        };
        if !self.auth_log.log(scope.tenant_id(), e) {
            self.metrics.dropped("auth_log_queue_full");
        }
    }

    /// Runs the checks in order; returns the verdict and, for MS-CHAPv2 rejects, what
    /// MS-CHAP-Error needs.
    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        scope: &TenantScope,
        req: &Request<'_>,
        v: &Validated<'_>,
        nas: &NasInfo,
        method: Method,
        username: &str,
        csid: Option<&str>,
    ) -> Result<(Verdict, Option<(u8, [u8; 16])>), crate::store::StoreError> {
        let ms = if method == Method::MsChapV2 {
            let resp = v
                .vsa(dict::VENDOR_MICROSOFT, dict::microsoft::CHAP2_RESPONSE)
                .and_then(chap::parse_mschap2_response);
            let challenge = v
                .vsa(dict::VENDOR_MICROSOFT, dict::microsoft::CHAP_CHALLENGE)
                .and_then(|c| <[u8; 16]>::try_from(c).ok());
            match (resp, challenge) {
                (Some(r), Some(c)) => Some((r, c)),
                _ => return Ok((Verdict::Reject(RejectReason::UnsupportedMethod), None)),
            }
        } else {
            None
        };
        let ms_err = ms.map(|(r, c)| (r.ident, c));
        let reject = |r| Ok((Verdict::Reject(r), ms_err));
        if self.live.tenant_status(scope).await? != TenantStatus::Active {
            return reject(RejectReason::TenantSuspended);
        }
        let Some(entry) = self.live.subscriber(scope, username).await? else {
            return reject(RejectReason::UnknownUser);
        };
        let (sub, password, plan) = (&entry.sub, &entry.password, &entry.plan);
        let mut ms_success = None;
        let good = match method {
            Method::Pap => v.attr(dict::USER_PASSWORD).is_some_and(|h| {
                chap::verify_pap(h, &nas.secret, &v.authenticator(), password.as_bytes())
            }),
            Method::Chap => v.attr(dict::CHAP_PASSWORD).is_some_and(|c| {
                chap::verify_chap(c, chap::chap_challenge(v), password.as_bytes())
            }),
            Method::MsChapV2 => match ms {
                Some((resp, challenge)) => {
                    let hash = chap::nt_password_hash(password);
                    ms_success =
                        chap::verify_mschapv2(&hash, &challenge, &resp, username.as_bytes())
                            .map(|s| (resp.ident, s));
                    ms_success.is_some()
                }
                None => false,
            },
        };
        if !good {
            return reject(RejectReason::WrongPassword);
        }
        if sub.status == SubscriberStatus::Disabled {
            return reject(RejectReason::Disabled);
        }
        if sub.status == SubscriberStatus::Expired || sub.expires_at.is_some_and(|e| e <= req.now) {
            return reject(RejectReason::Expired);
        }
        if let Some(lock) = &sub.mac_lock
            && csid.and_then(normalize_mac).as_deref() != Some(lock.as_str())
        {
            return reject(RejectReason::MacLock);
        }
        let limit = sub
            .sim_use
            .or(plan.as_ref().map(|p| p.sim_use))
            .unwrap_or(1)
            .max(1);
        let usage = self.usage(scope, username, sub.usage_reset_at).await?;
        if usage.open >= limit {
            return reject(RejectReason::SimultaneousUse);
        }
        let mut fup = false;
        if let Some(p) = &plan
            && let Some(quota) = p.quota_bytes
            && usage.input.saturating_add(usage.output) >= quota
        {
            match p.quota_action {
                QuotaAction::Reject => return reject(RejectReason::QuotaExhausted),
                QuotaAction::Fup => fup = true,
            }
        }
        let mut attrs: Vec<(AttrOut, Vec<u8>)> = Vec::new();
        if let Some(p) = &plan {
            match nas.vendor {
                NasVendor::Mikrotik => {
                    let rate = mikrotik_rate(p, fup);
                    attrs.push((
                        AttrOut::Vsa(dict::VENDOR_MIKROTIK, dict::mikrotik::RATE_LIMIT),
                        rate.into_bytes(),
                    ));
                }
                NasVendor::Generic => {
                    let filter = if fup {
                        format!("{}-fup", p.name)
                    } else {
                        p.name.clone()
                    };
                    attrs.push((AttrOut::Std(dict::FILTER_ID), filter.into_bytes()));
                }
            }
        }
        match sub
            .static_ip
            .as_deref()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        {
            Some(ip) => attrs.push((AttrOut::Std(dict::FRAMED_IP_ADDRESS), ip.octets().to_vec())),
            None => {
                if let Some(pool) = plan.as_ref().and_then(|p| p.ip_pool.clone()) {
                    attrs.push((AttrOut::Std(dict::FRAMED_POOL), pool.into_bytes()));
                }
            }
        }
        if let Some(v6) = sub.framed_ipv6_prefix.as_deref().and_then(ipv6_prefix_attr) {
            attrs.push((AttrOut::Std(dict::FRAMED_IPV6_PREFIX), v6));
        } else if let Some(pool) = plan.as_ref().and_then(|p| p.ipv6_pool.clone()) {
            attrs.push((AttrOut::Std(dict::FRAMED_IPV6_POOL), pool.into_bytes()));
        }
        if let Some(pd) = sub
            .delegated_ipv6_prefix
            .as_deref()
            .and_then(ipv6_prefix_attr)
        {
            attrs.push((AttrOut::Std(dict::DELEGATED_IPV6_PREFIX), pd));
        } else if let Some(pool) = plan.as_ref().and_then(|p| p.delegated_ipv6_pool.clone()) {
            attrs.push((
                AttrOut::Std(dict::DELEGATED_IPV6_PREFIX_POOL),
                pool.into_bytes(),
            ));
        }
        let to_expiry = sub.expires_at.map(|e| (e - req.now).num_seconds().max(1));
        let timeout = match (to_expiry, plan.as_ref().and_then(|p| p.session_timeout_s)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = timeout {
            attrs.push((
                AttrOut::Std(dict::SESSION_TIMEOUT),
                (t.clamp(1, i64::from(u32::MAX)) as u32)
                    .to_be_bytes()
                    .to_vec(),
            ));
        }
        attrs.push((
            AttrOut::Std(dict::ACCT_INTERIM_INTERVAL),
            self.config.interim_interval_s.to_be_bytes().to_vec(),
        ));
        if let Some((ident, s)) = ms_success {
            let ra = v.authenticator();
            attrs.push((
                AttrOut::Vsa(dict::VENDOR_MICROSOFT, dict::microsoft::CHAP2_SUCCESS),
                chap::mschap2_success(ident, &s.authenticator_response),
            ));
            let mut salt = [0u8; 2];
            crate::crypto::fill_random(&mut salt);
            let send =
                chap::encrypt_mppe_key(&s.send_key, &nas.secret, &ra, [salt[0] | 0x80, salt[1]]);
            let recv = chap::encrypt_mppe_key(
                &s.recv_key,
                &nas.secret,
                &ra,
                [salt[0] | 0x80, salt[1] ^ 1],
            );
            if let (Ok(send), Ok(recv)) = (send, recv) {
                attrs.push((
                    AttrOut::Vsa(dict::VENDOR_MICROSOFT, dict::microsoft::MPPE_SEND_KEY),
                    send,
                ));
                attrs.push((
                    AttrOut::Vsa(dict::VENDOR_MICROSOFT, dict::microsoft::MPPE_RECV_KEY),
                    recv,
                ));
                attrs.push((
                    AttrOut::Vsa(
                        dict::VENDOR_MICROSOFT,
                        dict::microsoft::MPPE_ENCRYPTION_POLICY,
                    ),
                    dict::microsoft::MPPE_POLICY_ALLOWED.to_be_bytes().to_vec(),
                ));
                attrs.push((
                    AttrOut::Vsa(
                        dict::VENDOR_MICROSOFT,
                        dict::microsoft::MPPE_ENCRYPTION_TYPES,
                    ),
                    dict::microsoft::MPPE_TYPES_RC4_40_OR_128
                        .to_be_bytes()
                        .to_vec(),
                ));
            }
        }
        Ok((Verdict::Accept { attrs }, None))
    }

    async fn accounting(
        &self,
        scope: &TenantScope,
        req: &Request<'_>,
        v: &Validated<'_>,
        nas: &NasInfo,
    ) -> Outcome {
        let status = attr_u32(v, dict::ACCT_STATUS_TYPE);
        let delay = i64::from(attr_u32(v, dict::ACCT_DELAY_TIME).unwrap_or(0));
        let at = req.now - chrono::Duration::seconds(delay);
        let mut effects = Vec::new();
        let result = match status {
            Some(dict::ACCT_STATUS_ACCOUNTING_ON) | Some(dict::ACCT_STATUS_ACCOUNTING_OFF) => {
                let cause = if status == Some(dict::ACCT_STATUS_ACCOUNTING_ON) {
                    "NAS-Reboot"
                } else {
                    "NAS-Request"
                };
                tracing::info!(tenant = %req.tenant, nas = %req.nas, "{}: closing the NAS's open sessions", if cause == "NAS-Reboot" { "Accounting-On" } else { "Accounting-Off" });
                self.writer
                    .submit(
                        req.tenant,
                        AcctOp::CloseNas {
                            nas: req.nas,
                            at,
                            cause: cause.to_owned(),
                        },
                    )
                    .await
            }
            Some(
                s @ (dict::ACCT_STATUS_START
                | dict::ACCT_STATUS_STOP
                | dict::ACCT_STATUS_INTERIM_UPDATE),
            ) => {
                let kind = match s {
                    dict::ACCT_STATUS_START => AcctKind::Start,
                    dict::ACCT_STATUS_STOP => AcctKind::Stop,
                    _ => AcctKind::Interim,
                };
                let Some(acct_id) = attr_str(v, dict::ACCT_SESSION_ID) else {
                    return self.dropped(req.tenant, "missing_acct_session_id");
                };
                let username = attr_str(v, dict::USER_NAME).unwrap_or_default();
                let wide = |lo: u8, hi: u8| {
                    (i64::from(attr_u32(v, hi).unwrap_or(0)) << 32)
                        | i64::from(attr_u32(v, lo).unwrap_or(0))
                };
                // From the cache: a warm accounting record costs one write, no read.
                let subscriber = match self.live.subscriber(scope, &username).await {
                    Ok(s) => s.map(|s| s.sub.id),
                    Err(e) => return self.store_failed(req, e),
                };
                let rec = AcctRecord {
                    id: crate::ids::SessionId::new(),
                    kind,
                    nas: req.nas,
                    subscriber,
                    username: username.clone(),
                    acct_session_id: acct_id.clone(),
                    framed_ip: v
                        .attr(dict::FRAMED_IP_ADDRESS)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(|o| IpAddr::from(o).to_string()),
                    calling_station_id: attr_str(v, dict::CALLING_STATION_ID),
                    nas_port_id: attr_str(v, dict::NAS_PORT_ID),
                    session_time_s: i64::from(attr_u32(v, dict::ACCT_SESSION_TIME).unwrap_or(0)),
                    input_octets: wide(dict::ACCT_INPUT_OCTETS, dict::ACCT_INPUT_GIGAWORDS),
                    output_octets: wide(dict::ACCT_OUTPUT_OCTETS, dict::ACCT_OUTPUT_GIGAWORDS),
                    terminate_cause: attr_u32(v, dict::ACCT_TERMINATE_CAUSE)
                        .map(terminate_cause_name),
                    at,
                };
                let (input, output) = (rec.input_octets, rec.output_octets);
                let r = self.writer.submit(req.tenant, AcctOp::Record(rec)).await;
                if r.is_ok() {
                    let change = match kind {
                        AcctKind::Start => ledger::Change::Start,
                        AcctKind::Stop => ledger::Change::Stop,
                        AcctKind::Interim => ledger::Change::Interim,
                    };
                    if let Err(e) = self
                        .ledger
                        .apply(
                            req.tenant,
                            &ledger::Record {
                                username: &username,
                                nas: req.nas,
                                acct_session_id: &acct_id,
                                change,
                                input,
                                output,
                            },
                        )
                        .await
                    {
                        // The record is durable; the entry is re-seeded from the store.
                        tracing::warn!(error = %e, "could not update the session ledger");
                        self.forget_ledger(req.tenant, Some(&username)).await;
                    }
                }
                match kind {
                    AcctKind::Start => effects.push(Effect::SessionStarted {
                        username,
                        acct_session_id: acct_id,
                    }),
                    AcctKind::Stop => effects.push(Effect::SessionStopped {
                        username,
                        acct_session_id: acct_id,
                    }),
                    AcctKind::Interim => {}
                }
                r
            }
            _ => return self.dropped(req.tenant, "unknown_acct_status"),
        };
        if let Err(e) = result {
            return self.store_failed(req, e);
        }
        // Accounting-On/Off closed sessions of many subscribers: they are re-seeded.
        if matches!(
            status,
            Some(dict::ACCT_STATUS_ACCOUNTING_ON) | Some(dict::ACCT_STATUS_ACCOUNTING_OFF)
        ) {
            self.forget_ledger(req.tenant, None).await;
        }
        self.metrics.accounting(status.unwrap_or(0));
        // Acknowledged only now: the record is committed or in the fsync'd spool.
        match PacketBuilder::reply(v, Code::AccountingResponse) {
            Ok(b) => Outcome {
                reply: Some(b.finish(&nas.secret)),
                dropped: None,
                effects,
            },
            Err(_) => Outcome::drop("encode"),
        }
    }

    fn store_failed(&self, req: &Request<'_>, e: impl std::fmt::Display) -> Outcome {
        tracing::error!(error = %e, tenant = %req.tenant, nas = %req.nas, "accounting not stored; not acknowledged (the NAS will retransmit)");
        self.dropped(req.tenant, "store_error")
    }
}

/// The Mikrotik-Rate-Limit of a plan (its FUP rate once the quota is used up).
pub fn mikrotik_rate(p: &Plan, fup: bool) -> String {
    let (down, up) = if fup {
        (
            p.fup_download_kbps.unwrap_or(p.download_kbps),
            p.fup_upload_kbps.unwrap_or(p.upload_kbps),
        )
    } else {
        (p.download_kbps, p.upload_kbps)
    };
    // Bursting stays off while throttled.
    let burst = match (fup, p.burst_download_kbps, p.burst_upload_kbps) {
        (false, Some(bd), Some(bu)) => Some(dict::Burst {
            download_kbps: bd as u64,
            upload_kbps: bu as u64,
            threshold_download_kbps: p.burst_threshold_kbps.unwrap_or(p.download_kbps * 3 / 4)
                as u64,
            threshold_upload_kbps: p.burst_threshold_kbps.unwrap_or(p.upload_kbps * 3 / 4) as u64,
            time_download_s: p.burst_time_s.unwrap_or(8) as u32,
            time_upload_s: p.burst_time_s.unwrap_or(8) as u32,
        }),
        _ => None,
    };
    dict::mikrotik_rate_limit(&dict::RateLimit {
        download_kbps: down as u64,
        upload_kbps: up as u64,
        burst,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_prefix_encoding() {
        assert_eq!(
            ipv6_prefix_attr("2001:db8:1::/64").unwrap(),
            vec![0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0]
        );
        assert_eq!(
            ipv6_prefix_attr("2001:db8:100::/56").unwrap(),
            vec![0, 56, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0]
        );
        assert!(ipv6_prefix_attr("nope").is_none());
    }

    #[test]
    fn terminate_causes() {
        assert_eq!(terminate_cause_name(1), "User-Request");
        assert_eq!(terminate_cause_name(11), "NAS-Reboot");
        assert_eq!(terminate_cause_name(99), "Cause-99");
    }
}
