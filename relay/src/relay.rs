//! The sans-IO core: datagrams and timer ticks in, datagrams, RADIUS requests and directory
//! lookups out. The tokio shell (`server`) owns the socket and the tasks.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use chrono::{DateTime, Utc};
use saas_core::ids::{NasId, PeerId, TenantId};
use saas_core::model::{PeerIdentity, TenantStatus};

use crate::admission::Budget;
use crate::handshake::{Tai64N, open_initiation};
use crate::metrics::{RelayMetrics, Stage, TenantLabels};
use crate::peers::{Live, Peer, PeerState, Table, TenantState};
use crate::tcp::TcpStack;
use crate::vnet::{self, DropReason, Inbound, TunnelNet};

/// Relay settings. Every budget switches off with 0 (benchmarks).
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Handshake initiations a second, all peers together, before the cookie mechanism answers
    /// instead (mac1 checked only, before any DH). 0 = off.
    pub handshakes_per_second: u64,
    /// Initiations a second per source address. 0 = off.
    pub source_handshakes_per_second: u32,
    /// Burst of the per-source budget.
    pub source_handshake_burst: u32,
    /// Initiations a second per tenant (once the peer is known). 0 = off.
    pub tenant_handshakes_per_second: u32,
    /// Burst of the per-tenant budget.
    pub tenant_handshake_burst: u32,
    /// How long a suspended tenant's peers are still served (disconnects go out meanwhile).
    pub drain_window: Duration,
    /// Keepalive the relay sends itself (routers keep the NAT mapping with theirs).
    pub persistent_keepalive: Option<u16>,
    /// Bytes of packets queued for peers without a session, all peers together. 0 = off.
    pub queue_budget_bytes: usize,
    /// How long an unknown public key is remembered as unknown.
    pub negative_cache_ttl: Duration,
    /// Directory lookups running at once (more unknown keys are dropped).
    pub max_pending_lookups: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            handshakes_per_second: 2000,
            source_handshakes_per_second: 50,
            source_handshake_burst: 100,
            tenant_handshakes_per_second: 100,
            tenant_handshake_burst: 200,
            drain_window: Duration::from_secs(600),
            persistent_keepalive: None,
            queue_budget_bytes: 4 << 20,
            negative_cache_ttl: Duration::from_secs(30),
            max_pending_lookups: 64,
        }
    }
}

/// A datagram to send on the relay socket.
pub type Transmit = (SocketAddr, Vec<u8>);

/// A RADIUS request that came through a tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadiusRequest {
    /// The peer it came from.
    pub public_key: [u8; 32],
    /// Tenant of the peer.
    pub tenant: TenantId,
    /// NAS of the peer.
    pub nas: NasId,
    /// Inner source (the peer's tunnel address and port).
    pub source: SocketAddrV4,
    /// Relay port it was sent to (1812 or 1813).
    pub relay_port: u16,
    /// The RADIUS datagram.
    pub datagram: Vec<u8>,
}

/// An unknown key to look up in the directory; `datagram` is fed again once it is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// Public key.
    pub public_key: [u8; 32],
    /// Source of the initiation.
    pub source: SocketAddr,
    /// The initiation.
    pub datagram: Vec<u8>,
}

/// What the core asks its shell to do.
#[derive(Debug, Default)]
pub struct Output {
    /// Datagrams to send.
    pub transmits: Vec<Transmit>,
    /// RADIUS requests for the sink.
    pub radius: Vec<RadiusRequest>,
    /// Directory lookups.
    pub lookups: Vec<Lookup>,
}

/// A peer as `peer list` shows it (`wg show` style), persisted periodically by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Public key.
    pub public_key: [u8; 32],
    /// Peer id.
    pub peer_id: PeerId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// NAS.
    pub nas_id: NasId,
    /// Whether a tunnel is live.
    pub connected: bool,
    /// Last authenticated source.
    pub endpoint: Option<SocketAddr>,
    /// Last completed handshake.
    pub last_handshake: Option<DateTime<Utc>>,
    /// Newest accepted initiation timestamp (persist into `wg_peers.handshake_tai64`).
    pub handshake_tai64: Option<Tai64N>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
}

/// Why a peer could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Tunnel address is not an IPv4 CIDR with room for the relay's `.1`.
    #[error("tunnel address {0:?} is not an IPv4 CIDR the relay can serve")]
    TunnelAddress(String),
    /// No such peer.
    #[error("unknown peer")]
    Unknown,
    /// Every 24-bit index is in use.
    #[error("no free peer index")]
    NoIndex,
}

/// Largest buffer boringtun may write into (an inner packet of 64 KiB plus overhead).
const SCRATCH: usize = 65_536 + 64;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; SCRATCH]);
}

fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH_BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut b) => f(&mut b),
        // Re-entered (cannot happen in this module): use a fresh buffer.
        Err(_) => f(&mut vec![0u8; SCRATCH]),
    })
}

/// The relay core. All methods take `&self`; state is behind a table lock and per-peer locks.
pub struct Relay {
    config: RelayConfig,
    secret: StaticSecret,
    public: PublicKey,
    /// Front limiter: counts initiations, answers cookies under load (reset every second).
    front: RateLimiter,
    /// Passed to every `Tunn`: only re-checks mac1, never counts as under load (crates.md §1).
    tunn_limiter: Arc<RateLimiter>,
    table: RwLock<Table>,
    source_budget: Mutex<Budget<std::net::IpAddr>>,
    tenant_budget: Mutex<Budget<TenantId>>,
    queued: AtomicUsize,
    epoch: Instant,
    metrics: RelayMetrics,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("public", &crate::keys::encode(self.public.as_bytes()))
            .finish()
    }
}

impl Relay {
    /// A relay with this node's static key.
    pub fn new(config: RelayConfig, secret: StaticSecret, metrics: RelayMetrics) -> Self {
        let public = PublicKey::from(&secret);
        let limit = if config.handshakes_per_second == 0 {
            u64::MAX
        } else {
            config.handshakes_per_second
        };
        Self {
            front: RateLimiter::new(&public, limit),
            tunn_limiter: Arc::new(RateLimiter::new(&public, u64::MAX)),
            source_budget: Mutex::new(Budget::new(
                config.source_handshakes_per_second,
                config.source_handshake_burst,
            )),
            tenant_budget: Mutex::new(Budget::new(
                config.tenant_handshakes_per_second,
                config.tenant_handshake_burst,
            )),
            table: RwLock::new(Table {
                next_index: rand::random::<u32>(),
                ..Default::default()
            }),
            queued: AtomicUsize::new(0),
            epoch: Instant::now(),
            config,
            secret,
            public,
            metrics,
        }
    }

    /// This node's public key.
    pub fn public_key(&self) -> [u8; 32] {
        *self.public.as_bytes()
    }

    /// The metrics.
    pub fn metrics(&self) -> &RelayMetrics {
        &self.metrics
    }

    /// The settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    fn smol_now(&self, now: Instant) -> smoltcp::time::Instant {
        let ms = now.saturating_duration_since(self.epoch).as_millis();
        smoltcp::time::Instant::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    // ---- configuration (bus events) ----

    /// Adds or updates a peer (live: other peers are undisturbed; a live tunnel of this peer
    /// keeps running unless its tunnel address changed). `handshake_tai64` seeds replay
    /// protection from the store; the newer of it and the one in memory is kept.
    pub fn upsert_peer(
        &self,
        public_key: [u8; 32],
        identity: &PeerIdentity,
        handshake_tai64: Option<Tai64N>,
    ) -> Result<(), PeerError> {
        let net = TunnelNet::parse(&identity.tunnel_address)
            .ok_or_else(|| PeerError::TunnelAddress(identity.tunnel_address.clone()))?;
        let existing = {
            let mut t = self.write();
            t.tenants.insert(
                identity.tenant_id,
                TenantState {
                    status: identity.tenant_status,
                    suspended_at: identity.suspended_at,
                },
            );
            t.negative.remove(&public_key);
            t.by_nas.insert(identity.nas_id, public_key);
            match t.by_key.get(&public_key) {
                Some(p) => Some(p.clone()),
                None => {
                    let peer = Arc::new(Peer::new(
                        public_key,
                        PeerState {
                            id: identity.peer_id,
                            tenant: identity.tenant_id,
                            nas: identity.nas_id,
                            net,
                            last_tai64: handshake_tai64,
                            endpoint: None,
                            last_handshake: None,
                            rx: 0,
                            tx: 0,
                            removed: false,
                            live: None,
                            udp_waiters: HashMap::new(),
                        },
                    ));
                    t.by_key.insert(public_key, peer);
                    self.metrics.peers_configured.inc();
                    None
                }
            }
        };
        if let Some(peer) = existing {
            let mut st = peer.lock();
            if st.nas != identity.nas_id {
                let mut t = self.write();
                if t.by_nas.get(&st.nas) == Some(&public_key) {
                    t.by_nas.remove(&st.nas);
                }
            }
            st.id = identity.peer_id;
            st.tenant = identity.tenant_id;
            st.nas = identity.nas_id;
            if st.net != net {
                st.net = net;
                if let Some(live) = st.live.as_mut() {
                    live.tcp = None;
                }
            }
            st.last_tai64 = st.last_tai64.max(handshake_tai64);
        }
        Ok(())
    }

    /// Removes a peer; its tunnel (if any) is dropped at once.
    pub fn remove_peer(&self, public_key: &[u8; 32]) -> bool {
        let peer = {
            let mut t = self.write();
            let Some(peer) = t.by_key.remove(public_key) else {
                return false;
            };
            t.by_nas.retain(|_, k| k != public_key);
            peer
        };
        self.metrics.peers_configured.dec();
        let mut st = peer.lock();
        st.removed = true;
        st.udp_waiters.clear();
        self.drop_live(&peer, &mut st);
        true
    }

    /// A tenant's status changed: once its peers are past the drain window their tunnels are
    /// dropped (here at once if already past, otherwise by the timer tick) and initiations refused.
    pub fn set_tenant_status(
        &self,
        tenant: TenantId,
        status: TenantStatus,
        suspended_at: Option<DateTime<Utc>>,
    ) {
        let state = TenantState {
            status,
            suspended_at,
        };
        let peers: Vec<Arc<Peer>> = {
            let mut t = self.write();
            t.tenants.insert(tenant, state);
            if !state.drained(Utc::now(), self.config.drain_window) {
                return;
            }
            t.by_key.values().cloned().collect()
        };
        for peer in peers {
            let mut st = peer.lock();
            if st.tenant == tenant {
                self.drop_live(&peer, &mut st);
            }
        }
    }

    fn tenant_drained(&self, tenant: TenantId, now: DateTime<Utc>) -> bool {
        self.read()
            .tenants
            .get(&tenant)
            .is_none_or(|s| s.drained(now, self.config.drain_window))
    }

    /// A finished directory lookup that found nothing: the key is remembered as unknown.
    pub fn lookup_failed(&self, public_key: &[u8; 32], now: Instant) {
        let mut t = self.write();
        t.pending.remove(public_key);
        if t.negative.len() >= 100_000 {
            let ttl = self.config.negative_cache_ttl;
            t.negative
                .retain(|_, at| now.saturating_duration_since(*at) < ttl);
            if t.negative.len() >= 100_000 {
                t.negative.clear();
            }
        }
        t.negative.insert(*public_key, now);
        drop(t);
        self.metrics.reject(Stage::UnknownKey);
    }

    /// A finished directory lookup that found the peer (after `upsert_peer`).
    pub fn lookup_done(&self, public_key: &[u8; 32]) {
        self.write().pending.remove(public_key);
    }

    // ---- datagrams ----

    /// Handles one datagram from `src`. Never panics, whatever the bytes.
    pub fn on_datagram(&self, src: SocketAddr, datagram: &[u8], now: Instant) -> Output {
        let mut out = Output::default();
        let mut cookie = [0u8; 64];
        let packet = match self
            .front
            .verify_packet(Some(src.ip()), datagram, &mut cookie)
        {
            Ok(p) => p,
            Err(TunnResult::WriteToNetwork(c)) => {
                self.metrics.cookies_sent.inc();
                self.metrics.reject(Stage::Cookie);
                out.transmits.push((src, c.to_vec()));
                return out;
            }
            Err(_) => {
                self.metrics.drop_packet(DropReason::Invalid);
                return out;
            }
        };
        match packet {
            Packet::HandshakeInit(_) => self.on_initiation(src, datagram, now, &mut out),
            Packet::HandshakeResponse(p) => {
                self.on_indexed(p.receiver_idx, true, src, datagram, now, &mut out)
            }
            Packet::PacketCookieReply(p) => {
                self.on_indexed(p.receiver_idx, false, src, datagram, now, &mut out)
            }
            Packet::PacketData(p) => {
                self.on_indexed(p.receiver_idx, false, src, datagram, now, &mut out)
            }
        }
        out
    }

    fn on_initiation(&self, src: SocketAddr, datagram: &[u8], now: Instant, out: &mut Output) {
        if !self
            .source_budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(&src.ip(), now)
        {
            self.metrics.reject(Stage::SourceBudget);
            return;
        }
        let Ok(opened) = open_initiation(&self.secret, &self.public, datagram) else {
            self.metrics.reject(Stage::Invalid);
            return;
        };
        let key = opened.peer_static_public;
        let peer = {
            let t = self.read();
            match t.by_key.get(&key) {
                Some(p) => Some(p.clone()),
                None => {
                    let fresh_negative = t.negative.get(&key).is_some_and(|at| {
                        now.saturating_duration_since(*at) < self.config.negative_cache_ttl
                    });
                    if fresh_negative
                        || t.pending.contains(&key)
                        || t.pending.len() >= self.config.max_pending_lookups
                    {
                        drop(t);
                        self.metrics.reject(Stage::UnknownKey);
                        return;
                    }
                    None
                }
            }
        };
        let Some(peer) = peer else {
            let mut t = self.write();
            if t.pending.insert(key) {
                out.lookups.push(Lookup {
                    public_key: key,
                    source: src,
                    datagram: datagram.to_vec(),
                });
            }
            return;
        };
        let mut st = peer.lock();
        if st.removed {
            self.metrics.reject(Stage::UnknownKey);
            return;
        }
        if self.tenant_drained(st.tenant, Utc::now()) {
            self.metrics.reject(Stage::TenantDrained);
            return;
        }
        if st.last_tai64.is_some_and(|last| opened.timestamp <= last) {
            self.metrics.reject(Stage::Replay);
            return;
        }
        if !self
            .tenant_budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(&st.tenant, now)
        {
            self.metrics.reject(Stage::TenantBudget);
            return;
        }
        let created = st.live.is_none();
        if created && self.make_live(&peer, &mut st).is_err() {
            self.metrics.reject(Stage::NoIndex);
            return;
        }
        let answered = self.decapsulate(&peer, &mut st, src, datagram, now, out);
        if answered {
            st.last_tai64 = Some(opened.timestamp);
            st.last_handshake = Some(SystemTime::now());
            self.metrics.handshakes_ok.inc();
        } else {
            // boringtun refused what we opened (e.g. its own timestamp check while live).
            self.metrics.reject(Stage::Replay);
            if created {
                self.drop_live(&peer, &mut st);
            }
        }
    }

    fn on_indexed(
        &self,
        receiver_idx: u32,
        is_response: bool,
        src: SocketAddr,
        datagram: &[u8],
        now: Instant,
        out: &mut Output,
    ) {
        let idx = receiver_idx >> 8;
        let Some(peer) = self.read().by_index.get(&idx).cloned() else {
            self.metrics.drop_packet(DropReason::UnknownIndex);
            return;
        };
        let mut st = peer.lock();
        if st.live.as_ref().is_none_or(|l| l.index != idx) {
            self.metrics.drop_packet(DropReason::UnknownIndex);
            return;
        }
        if self.decapsulate(&peer, &mut st, src, datagram, now, out) && is_response {
            st.last_handshake = Some(SystemTime::now());
        }
    }

    fn make_live(&self, peer: &Arc<Peer>, st: &mut PeerState) -> Result<(), PeerError> {
        let index = self
            .write()
            .allocate_index(peer)
            .ok_or(PeerError::NoIndex)?;
        let tunn = Tunn::new(
            self.secret.clone(),
            PublicKey::from(peer.key),
            None,
            self.config.persistent_keepalive,
            index,
            Some(self.tunn_limiter.clone()),
        );
        st.live = Some(Box::new(Live {
            tunn,
            index,
            queue: VecDeque::new(),
            queued_bytes: 0,
            tcp: None,
            orphaned: HashSet::new(),
        }));
        self.metrics.peers_connected.inc();
        Ok(())
    }

    /// Drops the peer's tunnel: a compact entry again (stats and timestamp kept).
    fn drop_live(&self, peer: &Peer, st: &mut PeerState) {
        let Some(live) = st.live.take() else {
            return;
        };
        let (_, tx, rx, _, _) = live.tunn.stats();
        if let Some(mut stack) = live.tcp {
            // Wakes the streams, which then see the tunnel gone.
            stack.abort_all();
        }
        st.tx += tx as u64;
        st.rx += rx as u64;
        self.queued.fetch_sub(live.queued_bytes, Ordering::Relaxed);
        self.write().free_index(live.index, peer);
        self.metrics.peers_connected.dec();
    }

    /// Feeds a datagram to the peer's `Tunn`; true when it was authenticated (anything but an
    /// error), in which case the endpoint follows `src` (roaming).
    fn decapsulate(
        &self,
        peer: &Peer,
        st: &mut PeerState,
        src: SocketAddr,
        datagram: &[u8],
        now: Instant,
        out: &mut Output,
    ) -> bool {
        let mut inner: Option<Vec<u8>> = None;
        let ok = with_scratch(|buf| {
            let Some(live) = st.live.as_mut() else {
                return false;
            };
            match live.tunn.decapsulate(Some(src.ip()), datagram, buf) {
                TunnResult::WriteToNetwork(p) => {
                    out.transmits.push((src, p.to_vec()));
                    // Drain what boringtun queued while the handshake ran.
                    while let TunnResult::WriteToNetwork(p) = live.tunn.decapsulate(None, &[], buf)
                    {
                        out.transmits.push((src, p.to_vec()));
                    }
                    true
                }
                TunnResult::WriteToTunnelV4(p, _) => {
                    inner = Some(p.to_vec());
                    true
                }
                TunnResult::WriteToTunnelV6(..) => {
                    self.metrics.drop_packet(DropReason::Malformed);
                    true
                }
                TunnResult::Done => true,
                TunnResult::Err(_) => {
                    self.metrics.drop_packet(DropReason::Decrypt);
                    false
                }
            }
        });
        if !ok {
            return false;
        }
        st.endpoint = Some(src);
        if let Some(p) = inner {
            self.on_inner(peer, st, p, now, out);
        }
        self.flush_queue(st, out);
        true
    }

    fn on_inner(
        &self,
        peer: &Peer,
        st: &mut PeerState,
        packet: Vec<u8>,
        now: Instant,
        out: &mut Output,
    ) {
        match vnet::classify(&packet, &st.net) {
            Inbound::Udp {
                src_port,
                dst_port,
                payload,
            } => {
                if dst_port == 1812 || dst_port == 1813 {
                    self.metrics
                        .radius_requests
                        .get_or_create(&TenantLabels {
                            tenant: st.tenant.to_string(),
                        })
                        .inc();
                    out.radius.push(RadiusRequest {
                        public_key: peer.key,
                        tenant: st.tenant,
                        nas: st.nas,
                        source: SocketAddrV4::new(st.net.peer, src_port),
                        relay_port: dst_port,
                        datagram: payload.to_vec(),
                    });
                } else if let Some(tx) = st.udp_waiters.get(&dst_port) {
                    let _ = tx.try_send(payload.to_vec());
                } else {
                    self.metrics.drop_packet(DropReason::PortClosed);
                }
            }
            Inbound::EchoReply(reply) => self.send_inner(st, reply, out),
            Inbound::Tcp { dst_port } => {
                let smol_now = self.smol_now(now);
                let sent = match st.live.as_mut().and_then(|l| l.tcp.as_mut()) {
                    Some(stack) if stack.has_port(dst_port) => {
                        stack.push(packet);
                        stack.poll(smol_now)
                    }
                    _ => {
                        self.metrics.drop_packet(DropReason::TcpUnsolicited);
                        return;
                    }
                };
                for p in sent {
                    self.send_inner(st, p, out);
                }
            }
            Inbound::Drop(reason) => self.metrics.drop_packet(reason),
        }
    }

    /// Encrypts an inner packet to the peer, or queues it (global budget) until a session exists.
    fn send_inner(&self, st: &mut PeerState, packet: Vec<u8>, out: &mut Output) {
        let Some(endpoint) = st.endpoint else {
            self.metrics.drop_packet(DropReason::NoEndpoint);
            return;
        };
        let Some(live) = st.live.as_mut() else {
            self.metrics.drop_packet(DropReason::NoEndpoint);
            return;
        };
        if live.tunn.time_since_last_handshake().is_some() && live.queue.is_empty() {
            with_scratch(|buf| {
                if let TunnResult::WriteToNetwork(p) = live.tunn.encapsulate(&packet, buf) {
                    out.transmits.push((endpoint, p.to_vec()));
                }
            });
            return;
        }
        let len = packet.len();
        let budget = self.config.queue_budget_bytes;
        let prev = self.queued.fetch_add(len, Ordering::Relaxed);
        if budget != 0 && prev + len > budget {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.metrics.drop_packet(DropReason::QueueFull);
            return;
        }
        live.queue.push_back(packet);
        live.queued_bytes += len;
        // Ask for a session (no-op while one is being negotiated).
        with_scratch(|buf| {
            if let TunnResult::WriteToNetwork(p) = live.tunn.format_handshake_initiation(buf, false)
            {
                out.transmits.push((endpoint, p.to_vec()));
            }
        });
        self.flush_queue(st, out);
    }

    fn flush_queue(&self, st: &mut PeerState, out: &mut Output) {
        let Some(endpoint) = st.endpoint else {
            return;
        };
        let Some(live) = st.live.as_mut() else {
            return;
        };
        if live.queue.is_empty() || live.tunn.time_since_last_handshake().is_none() {
            return;
        }
        let packets: Vec<Vec<u8>> = live.queue.drain(..).collect();
        self.queued.fetch_sub(live.queued_bytes, Ordering::Relaxed);
        live.queued_bytes = 0;
        with_scratch(|buf| {
            for p in packets {
                if let TunnResult::WriteToNetwork(d) = live.tunn.encapsulate(&p, buf) {
                    out.transmits.push((endpoint, d.to_vec()));
                }
            }
        });
    }

    // ---- timers ----

    /// Runs every live peer's timers (call every ~250 ms): keepalive, rekey, handshake retry,
    /// expiry (an expired tunnel is dropped, the peer becomes compact again), drained tenants,
    /// TCP retransmissions; resets the front limiter each second.
    pub fn tick(&self, now: Instant) -> Output {
        let mut out = Output::default();
        self.front.reset_count();
        let wall = Utc::now();
        let live: Vec<Arc<Peer>> = self.read().by_index.values().cloned().collect();
        let smol_now = self.smol_now(now);
        for peer in live {
            let mut st = peer.lock();
            if st.live.is_none() {
                continue;
            }
            if self.tenant_drained(st.tenant, wall) {
                self.drop_live(&peer, &mut st);
                continue;
            }
            let endpoint = st.endpoint;
            let Some(live) = st.live.as_mut() else {
                continue;
            };
            let expired = with_scratch(|buf| match live.tunn.update_timers(buf) {
                TunnResult::WriteToNetwork(p) => {
                    if let Some(ep) = endpoint {
                        out.transmits.push((ep, p.to_vec()));
                    }
                    false
                }
                TunnResult::Err(boringtun::noise::errors::WireGuardError::ConnectionExpired) => {
                    true
                }
                _ => false,
            });
            if expired {
                self.drop_live(&peer, &mut st);
                continue;
            }
            let mut sent = Vec::new();
            if let Some(live) = st.live.as_mut()
                && let Some(stack) = live.tcp.as_mut()
            {
                sent = stack.poll(smol_now);
                let orphaned = &mut live.orphaned;
                stack.reap(|p| orphaned.contains(&p));
                orphaned.retain(|p| stack.has_port(*p));
                if stack.is_empty() {
                    live.tcp = None;
                }
            }
            for p in sent {
                self.send_inner(&mut st, p, &mut out);
            }
        }
        out
    }

    // ---- outbound ----

    /// Starts a handshake to `endpoint` (a persisted endpoint on start).
    pub fn connect(&self, public_key: &[u8; 32], endpoint: SocketAddr) -> Output {
        let mut out = Output::default();
        let Some(peer) = self.read().by_key.get(public_key).cloned() else {
            return out;
        };
        let mut st = peer.lock();
        if self.tenant_drained(st.tenant, Utc::now()) {
            return out;
        }
        if st.live.is_none() && self.make_live(&peer, &mut st).is_err() {
            return out;
        }
        st.endpoint = Some(endpoint);
        if let Some(live) = st.live.as_mut() {
            with_scratch(|buf| {
                if let TunnResult::WriteToNetwork(p) =
                    live.tunn.format_handshake_initiation(buf, false)
                {
                    out.transmits.push((endpoint, p.to_vec()));
                }
            });
        }
        out
    }

    /// Sends the AAA engine's reply back through the peer the request came from.
    pub fn radius_reply(&self, request: &RadiusRequest, reply: &[u8]) -> Output {
        let mut out = Output::default();
        let Some(peer) = self.read().by_key.get(&request.public_key).cloned() else {
            return out;
        };
        let mut st = peer.lock();
        let packet = vnet::udp_packet(
            SocketAddrV4::new(st.net.relay, request.relay_port),
            request.source,
            reply,
        );
        self.send_inner(&mut st, packet, &mut out);
        out
    }

    /// The peer serving `nas`.
    pub fn peer_of_nas(&self, nas: NasId) -> Option<Arc<Peer>> {
        let t = self.read();
        t.by_nas.get(&nas).and_then(|k| t.by_key.get(k)).cloned()
    }

    /// Sends a UDP datagram from the relay's `local_port` to the peer's `port`, and registers
    /// `waiter` for datagrams back to `local_port`. Errors when the peer has no live tunnel.
    pub(crate) fn udp_send(
        &self,
        peer: &Peer,
        local_port: u16,
        port: u16,
        payload: &[u8],
        waiter: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    ) -> Result<Output, String> {
        let mut out = Output::default();
        let mut st = peer.lock();
        if st.live.is_none() || st.endpoint.is_none() {
            return Err("the NAS's WireGuard peer is not connected".into());
        }
        if let Some(w) = waiter {
            if st.udp_waiters.contains_key(&local_port) {
                return Err("local port in use".into());
            }
            st.udp_waiters.insert(local_port, w);
        }
        let packet = vnet::udp_packet(
            SocketAddrV4::new(st.net.relay, local_port),
            SocketAddrV4::new(st.net.peer, port),
            payload,
        );
        self.send_inner(&mut st, packet, &mut out);
        Ok(out)
    }

    /// Forgets a `udp_exchange` waiter.
    pub(crate) fn udp_forget(&self, peer: &Peer, local_port: u16) {
        peer.lock().udp_waiters.remove(&local_port);
    }

    /// Runs `f` on the peer's TCP stack (created on demand when `create`), polls it and sends
    /// what it produced. `None` when the peer has no live tunnel (or no stack and `!create`).
    pub(crate) fn with_tcp<R>(
        &self,
        peer: &Peer,
        create: bool,
        now: Instant,
        f: impl FnOnce(&mut TcpStack, TunnelNet) -> R,
    ) -> Option<(R, Output)> {
        let mut out = Output::default();
        let mut st = peer.lock();
        let net = st.net;
        let smol_now = self.smol_now(now);
        let live = st.live.as_mut()?;
        if live.tcp.is_none() {
            if !create {
                return None;
            }
            live.tcp = Some(Box::new(TcpStack::new(&net, rand::random(), smol_now)));
        }
        let stack = live.tcp.as_mut()?;
        let r = f(stack, net);
        let sent = stack.poll(smol_now);
        for p in sent {
            self.send_inner(&mut st, p, &mut out);
        }
        Some((r, out))
    }

    /// Marks a TCP connection's stream as gone: it is removed once closed.
    pub(crate) fn tcp_orphan(&self, peer: &Peer, port: u16) {
        let mut st = peer.lock();
        if let Some(live) = st.live.as_mut() {
            live.orphaned.insert(port);
        }
    }

    // ---- status ----

    /// A snapshot of every peer (`peer list`; the caller persists it periodically).
    pub fn status(&self) -> Vec<PeerStatus> {
        let peers: Vec<Arc<Peer>> = self.read().by_key.values().cloned().collect();
        peers
            .iter()
            .map(|peer| {
                let st = peer.lock();
                let (tx, rx) = st.live.as_ref().map_or((0, 0), |l| {
                    let (_, tx, rx, _, _) = l.tunn.stats();
                    (tx as u64, rx as u64)
                });
                PeerStatus {
                    public_key: peer.key,
                    peer_id: st.id,
                    tenant_id: st.tenant,
                    nas_id: st.nas,
                    connected: st.live.is_some(),
                    endpoint: st.endpoint,
                    last_handshake: st.last_handshake.map(DateTime::<Utc>::from),
                    handshake_tai64: st.last_tai64,
                    rx_bytes: st.rx + rx,
                    tx_bytes: st.tx + tx,
                }
            })
            .collect()
    }

    /// Drops a peer's live tunnel as if its session had expired (tests, operators).
    pub fn expire_peer(&self, public_key: &[u8; 32]) -> bool {
        let Some(peer) = self.read().by_key.get(public_key).cloned() else {
            return false;
        };
        let mut st = peer.lock();
        let had = st.live.is_some();
        self.drop_live(&peer, &mut st);
        had
    }

    /// Bytes queued for peers without a session.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Stage;
    use boringtun::noise::Tunn;
    use std::net::Ipv4Addr;

    const SRC: &str = "192.0.2.10:51000";

    fn relay(config: RelayConfig) -> Relay {
        let (secret, _) = crate::keys::generate();
        Relay::new(config, secret, RelayMetrics::default())
    }

    fn open() -> RelayConfig {
        RelayConfig {
            handshakes_per_second: 0,
            source_handshakes_per_second: 0,
            tenant_handshakes_per_second: 0,
            ..Default::default()
        }
    }

    fn identity(tenant: TenantId, tunnel: &str) -> PeerIdentity {
        PeerIdentity {
            peer_id: PeerId::new(),
            tenant_id: tenant,
            tenant_status: TenantStatus::Active,
            suspended_at: None,
            nas_id: NasId::new(),
            tunnel_address: tunnel.into(),
        }
    }

    struct Client {
        tunn: Tunn,
        key: [u8; 32],
        src: SocketAddr,
        net: TunnelNet,
        ident: PeerIdentity,
    }

    impl Client {
        fn new(r: &Relay, tenant: TenantId, tunnel: &str, src: &str) -> Self {
            let (secret, public) = crate::keys::generate();
            let tunn = Tunn::new(
                secret,
                PublicKey::from(r.public_key()),
                None,
                None,
                rand::random::<u32>() >> 8,
                None,
            );
            let ident = identity(tenant, tunnel);
            r.upsert_peer(*public.as_bytes(), &ident, None).unwrap();
            Self {
                tunn,
                key: *public.as_bytes(),
                src: src.parse().unwrap(),
                net: TunnelNet::parse(tunnel).unwrap(),
                ident,
            }
        }

        fn initiation(&mut self) -> Vec<u8> {
            let mut buf = vec![0u8; 2048];
            match self.tunn.format_handshake_initiation(&mut buf, true) {
                TunnResult::WriteToNetwork(p) => p.to_vec(),
                other => panic!("{other:?}"),
            }
        }

        /// Feeds the relay's datagrams to the client; returns the client's answers and the
        /// inner packets it received.
        fn receive(&mut self, out: &Output) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
            let (mut net, mut inner) = (Vec::new(), Vec::new());
            for (to, d) in &out.transmits {
                assert_eq!(*to, self.src);
                let mut buf = vec![0u8; 65_600];
                match self.tunn.decapsulate(None, d, &mut buf) {
                    TunnResult::WriteToNetwork(p) => {
                        net.push(p.to_vec());
                        while let TunnResult::WriteToNetwork(p) =
                            self.tunn.decapsulate(None, &[], &mut buf)
                        {
                            net.push(p.to_vec());
                        }
                    }
                    TunnResult::WriteToTunnelV4(p, _) => inner.push(p.to_vec()),
                    _ => {}
                }
            }
            (net, inner)
        }

        fn handshake(&mut self, r: &Relay) {
            let init = self.initiation();
            let out = r.on_datagram(self.src, &init, Instant::now());
            assert_eq!(out.transmits.len(), 1, "no handshake response");
            let (answers, _) = self.receive(&out);
            for a in answers {
                r.on_datagram(self.src, &a, Instant::now());
            }
        }

        fn send(&mut self, r: &Relay, ip_packet: &[u8]) -> Output {
            let mut buf = vec![0u8; 65_600];
            let TunnResult::WriteToNetwork(d) = self.tunn.encapsulate(ip_packet, &mut buf) else {
                panic!("no session")
            };
            r.on_datagram(self.src, d, Instant::now())
        }

        fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
            vnet::udp_packet(
                SocketAddrV4::new(self.net.peer, sport),
                SocketAddrV4::new(self.net.relay, dport),
                payload,
            )
        }
    }

    #[test]
    fn radius_through_the_tunnel_reaches_the_peers_tenant_and_is_answered() {
        let r = relay(open());
        let (t1, t2) = (TenantId::new(), TenantId::new());
        // Same subnet and address in both tenants: the peer names the tenant.
        let mut a = Client::new(&r, t1, "10.200.0.2/24", "192.0.2.1:1000");
        let mut b = Client::new(&r, t2, "10.200.0.2/24", "192.0.2.2:1000");
        a.handshake(&r);
        b.handshake(&r);
        assert_eq!(r.metrics().handshakes_ok.get(), 2);
        assert_eq!(r.metrics().peers_connected.get(), 2);

        let out = a.send(&r, &a.udp(40000, 1812, b"access-request-a"));
        assert_eq!(out.radius.len(), 1);
        let req = &out.radius[0];
        assert_eq!((req.tenant, req.nas), (t1, a.ident.nas_id));
        assert_eq!(req.source, SocketAddrV4::new(a.net.peer, 40000));
        assert_eq!(req.datagram, b"access-request-a");
        let out_b = b.send(&r, &b.udp(40001, 1813, b"acct-b"));
        assert_eq!(
            (out_b.radius[0].tenant, out_b.radius[0].relay_port),
            (t2, 1813)
        );

        let reply = r.radius_reply(req, b"access-accept");
        let (_, inner) = a.receive(&reply);
        assert_eq!(inner.len(), 1);
        let (s, d, p) = vnet::parse_udp(&inner[0]).unwrap();
        assert_eq!(s, SocketAddrV4::new(Ipv4Addr::new(10, 200, 0, 1), 1812));
        assert_eq!(d, SocketAddrV4::new(a.net.peer, 40000));
        assert_eq!(p, b"access-accept");
        let st = r.status();
        assert!(st.iter().all(|s| s.connected && s.rx_bytes > 0));
    }

    #[test]
    fn demux_by_index_and_unknown_index_dropped() {
        let r = relay(open());
        let t = TenantId::new();
        let mut a = Client::new(&r, t, "10.1.0.2/24", "192.0.2.1:1000");
        let mut b = Client::new(&r, t, "10.2.0.2/24", "192.0.2.2:1000");
        a.handshake(&r);
        b.handshake(&r);
        let out = b.send(&r, &b.udp(1, 1812, b"from-b"));
        assert_eq!(out.radius[0].public_key, b.key);
        let out = a.send(&r, &a.udp(1, 1812, b"from-a"));
        assert_eq!(out.radius[0].public_key, a.key);
        // A data packet with an index nobody holds.
        let mut bogus = vec![4u8, 0, 0, 0];
        bogus.extend_from_slice(&0xdead_beefu32.to_le_bytes());
        bogus.extend_from_slice(&[0u8; 40]);
        r.on_datagram(a.src, &bogus, Instant::now());
        assert_eq!(r.metrics().dropped(DropReason::UnknownIndex), 1);
    }

    #[test]
    fn spoofed_inner_source_is_dropped_and_echo_answered() {
        let r = relay(open());
        let mut a = Client::new(&r, TenantId::new(), "10.200.0.2/24", SRC);
        a.handshake(&r);
        let spoofed = vnet::udp_packet(
            SocketAddrV4::new(Ipv4Addr::new(10, 200, 0, 3), 1),
            SocketAddrV4::new(a.net.relay, 1812),
            b"x",
        );
        let out = a.send(&r, &spoofed);
        assert!(out.radius.is_empty());
        assert_eq!(r.metrics().dropped(DropReason::Spoofed), 1);
        // TCP nobody opened.
        let mut tcp = a.udp(1, 8728, b"");
        tcp[9] = 6;
        let out = a.send(&r, &tcp);
        assert!(out.transmits.is_empty());

        // Ping the relay's address.
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr};
        let caps = ChecksumCapabilities::default();
        let req = Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 2,
            data: b"abc",
        };
        let ip = Ipv4Repr {
            src_addr: a.net.peer,
            dst_addr: a.net.relay,
            next_header: IpProtocol::Icmp,
            payload_len: req.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 20 + req.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut p, &caps);
        req.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
        let out = a.send(&r, &buf);
        let (_, inner) = a.receive(&out);
        assert_eq!(inner.len(), 1);
        let rp = Ipv4Packet::new_checked(&inner[0][..]).unwrap();
        let icmp = Icmpv4Packet::new_checked(rp.payload()).unwrap();
        assert!(matches!(
            Icmpv4Repr::parse(&icmp, &caps).unwrap(),
            Icmpv4Repr::EchoReply { seq_no: 2, .. }
        ));
    }

    #[test]
    fn replay_refused_after_the_tunn_was_dropped() {
        let r = relay(open());
        let mut a = Client::new(&r, TenantId::new(), "10.200.0.2/24", SRC);
        let old = a.initiation();
        let out = r.on_datagram(a.src, &old, Instant::now());
        assert_eq!(out.transmits.len(), 1);
        let seen = r.status()[0].handshake_tai64;
        assert!(seen.is_some());
        assert!(r.expire_peer(&a.key));
        assert_eq!(r.metrics().peers_connected.get(), 0);
        assert!(r.read().by_index.is_empty());
        // The old initiation again: a fresh Tunn would take it; we refuse it.
        let out = r.on_datagram(a.src, &old, Instant::now());
        assert!(out.transmits.is_empty());
        assert_eq!(r.metrics().rejected(Stage::Replay), 1);
        assert!(r.read().by_index.is_empty(), "no Tunn built for a replay");
        // A fresh initiation is accepted.
        a.handshake(&r);
        assert_eq!(r.metrics().handshakes_ok.get(), 2);
        // Seeded from the store: a restarted relay refuses older initiations too.
        let r2 = relay(open());
        let mut b = Client::new(&r2, TenantId::new(), "10.200.0.2/24", SRC);
        let stale = b.initiation();
        let newer = b.initiation();
        let ts = crate::handshake::open_initiation(&r2.secret, &r2.public, &newer)
            .unwrap()
            .timestamp;
        r2.upsert_peer(b.key, &b.ident, Some(ts)).unwrap();
        assert!(
            r2.on_datagram(b.src, &stale, Instant::now())
                .transmits
                .is_empty()
        );
        assert!(
            r2.on_datagram(b.src, &newer, Instant::now())
                .transmits
                .is_empty()
        );
        assert_eq!(r2.metrics().rejected(Stage::Replay), 2);
    }

    #[test]
    fn staged_admission_rejects_and_counts() {
        // Source budget: one initiation per source.
        let r = relay(RelayConfig {
            source_handshakes_per_second: 1,
            source_handshake_burst: 1,
            ..open()
        });
        let mut a = Client::new(&r, TenantId::new(), "10.200.0.2/24", SRC);
        a.handshake(&r);
        let init = a.initiation();
        assert!(
            r.on_datagram(a.src, &init, Instant::now())
                .transmits
                .is_empty()
        );
        assert_eq!(r.metrics().rejected(Stage::SourceBudget), 1);

        // Unknown key: a lookup, then the negative cache.
        let r = relay(open());
        let (secret, _) = crate::keys::generate();
        let mut stranger = Tunn::new(secret, PublicKey::from(r.public_key()), None, None, 1, None);
        let mut buf = vec![0u8; 256];
        let TunnResult::WriteToNetwork(init) = stranger.format_handshake_initiation(&mut buf, true)
        else {
            panic!()
        };
        let init = init.to_vec();
        let out = r.on_datagram(SRC.parse().unwrap(), &init, Instant::now());
        assert_eq!(out.lookups.len(), 1);
        // While the lookup runs, repeats do not start another.
        let again = r.on_datagram(SRC.parse().unwrap(), &init, Instant::now());
        assert!(again.lookups.is_empty());
        r.lookup_failed(&out.lookups[0].public_key, Instant::now());
        let out = r.on_datagram(SRC.parse().unwrap(), &init, Instant::now());
        assert!(out.lookups.is_empty() && out.transmits.is_empty());
        assert_eq!(r.metrics().rejected(Stage::UnknownKey), 3);

        // Garbage that passes nothing: counted as invalid packets, no panic.
        r.on_datagram(SRC.parse().unwrap(), &[1, 0, 0, 0], Instant::now());
        assert_eq!(r.metrics().dropped(DropReason::Invalid), 1);

        // Tenant drained.
        let r = relay(open());
        let t = TenantId::new();
        let mut a = Client::new(&r, t, "10.200.0.2/24", SRC);
        a.handshake(&r);
        r.set_tenant_status(
            t,
            TenantStatus::Suspended,
            Some(Utc::now() - chrono::Duration::seconds(60)),
        );
        // Within the drain window: still served.
        assert_eq!(r.metrics().peers_connected.get(), 1);
        a.handshake(&r);
        r.set_tenant_status(
            t,
            TenantStatus::Suspended,
            Some(Utc::now() - chrono::Duration::days(1)),
        );
        assert_eq!(
            r.metrics().peers_connected.get(),
            0,
            "drained tunnels dropped"
        );
        let init = a.initiation();
        assert!(
            r.on_datagram(a.src, &init, Instant::now())
                .transmits
                .is_empty()
        );
        assert_eq!(r.metrics().rejected(Stage::TenantDrained), 1);
        // Resumed: accepted again.
        r.set_tenant_status(t, TenantStatus::Active, None);
        a.handshake(&r);

        // Tenant budget: shared by the tenant's peers, not by other tenants.
        let r = relay(RelayConfig {
            tenant_handshakes_per_second: 1,
            tenant_handshake_burst: 1,
            ..open()
        });
        let t = TenantId::new();
        let mut a = Client::new(&r, t, "10.200.0.2/24", "192.0.2.1:1");
        let mut b = Client::new(&r, t, "10.200.1.2/24", "192.0.2.2:1");
        let mut c = Client::new(&r, TenantId::new(), "10.200.0.2/24", "192.0.2.3:1");
        a.handshake(&r);
        let init = b.initiation();
        assert!(
            r.on_datagram(b.src, &init, Instant::now())
                .transmits
                .is_empty()
        );
        assert_eq!(r.metrics().rejected(Stage::TenantBudget), 1);
        c.handshake(&r);

        // Removing a peer drops its tunnel and refuses it afterwards.
        assert!(r.remove_peer(&a.key));
        assert_eq!(r.metrics().peers_configured.get(), 2);
        let init = a.initiation();
        let out = r.on_datagram(a.src, &init, Instant::now());
        assert_eq!(out.lookups.len(), 1);
    }

    #[test]
    fn front_limiter_sends_cookies_and_is_reset_each_second() {
        let r = relay(RelayConfig {
            handshakes_per_second: 1,
            ..open()
        });
        let mut a = Client::new(&r, TenantId::new(), "10.200.0.2/24", SRC);
        a.handshake(&r);
        let init = a.initiation();
        let out = r.on_datagram(a.src, &init, Instant::now());
        assert_eq!(out.transmits.len(), 1);
        assert_eq!(out.transmits[0].1.len(), 64, "a cookie reply");
        assert_eq!(out.transmits[0].1[0], 3);
        assert_eq!(r.metrics().cookies_sent.get(), 1);
        assert_eq!(r.metrics().rejected(Stage::Cookie), 1);
        std::thread::sleep(Duration::from_millis(1050));
        r.tick(Instant::now());
        a.handshake(&r);
        assert_eq!(r.metrics().handshakes_ok.get(), 2);
    }

    #[test]
    fn queue_for_peers_without_session_is_bounded() {
        let r = relay(RelayConfig {
            queue_budget_bytes: 100,
            ..open()
        });
        let mut a = Client::new(&r, TenantId::new(), "10.200.0.2/24", SRC);
        // The relay initiates to a persisted endpoint; nothing answers yet.
        let init = r.connect(&a.key, a.src);
        assert_eq!(init.transmits.len(), 1);
        let peer = r.peer_of_nas(a.ident.nas_id).unwrap();
        let out = r.udp_send(&peer, 50000, 3799, &[0u8; 60], None).unwrap();
        assert!(
            out.transmits.is_empty(),
            "queued, handshake already running"
        );
        assert_eq!(r.queued_bytes(), 88);
        r.udp_send(&peer, 50000, 3799, &[0u8; 60], None).unwrap();
        assert_eq!(r.metrics().dropped(DropReason::QueueFull), 1);
        // The router answers the relay's initiation: the queued packet goes out.
        let (response, _) = a.receive(&init);
        assert_eq!(response.len(), 1);
        let out = r.on_datagram(a.src, &response[0], Instant::now());
        assert_eq!(r.queued_bytes(), 0);
        let (_, inner) = a.receive(&out);
        assert_eq!(inner.len(), 1);
        let (s, d, p) = vnet::parse_udp(&inner[0]).unwrap();
        assert_eq!((s.port(), d.port(), p.len()), (50000, 3799, 60));
        assert!(r.status()[0].last_handshake.is_some());
        r.udp_send(&peer, 50000, 3799, &[0u8; 600], None).unwrap();
        r.expire_peer(&a.key);
        assert_eq!(r.queued_bytes(), 0);
    }
}
