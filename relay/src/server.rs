//! The tokio shell around [`Relay`]: one UDP socket, a receive loop, a timer task (250 ms),
//! RADIUS requests dispatched to a [`RadiusSink`], unknown keys looked up in a
//! [`PeerDirectory`], and [`RelayHandle`]: what the platform holds (peer changes, status,
//! `NasTransport` through the tunnels).

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boringtun::x25519::StaticSecret;
use chrono::{DateTime, Utc};
use prometheus_client::registry::Registry;
use saas_core::ids::{NasId, TenantId};
use saas_core::model::{Nas, PeerIdentity, TenantStatus};
use saas_core::transport::{NasStream, NasTransport, TransportError};
use smoltcp::socket::tcp;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::handshake::Tai64N;
use crate::metrics::RelayMetrics;
use crate::peers::Peer;
use crate::relay::{Output, PeerError, PeerStatus, Relay, RelayConfig};

/// Answers RADIUS requests that came through a tunnel (the platform adapts it to the AAA
/// engine and publishes the engine's effects).
#[async_trait]
pub trait RadiusSink: Send + Sync {
    /// `source` is the inner source (the peer's tunnel address and port); `None` = no reply.
    async fn handle(
        &self,
        tenant: TenantId,
        nas: NasId,
        source: SocketAddr,
        datagram: Vec<u8>,
    ) -> Option<Vec<u8>>;
}

/// What the directory knows about a public key.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryEntry {
    /// Who the key belongs to.
    pub identity: PeerIdentity,
    /// Newest accepted initiation timestamp, as persisted.
    pub handshake_tai64: Option<Tai64N>,
}

/// On-demand lookup of keys the table does not hold (the platform implements it with
/// `SystemScope::peer_by_public_key`). Misses are cached (negative cache), so a flood of
/// unknown keys costs no queries.
#[async_trait]
pub trait PeerDirectory: Send + Sync {
    /// The peer owning `public_key`, if any.
    async fn lookup(&self, public_key: &[u8; 32]) -> Option<DirectoryEntry>;
}

/// RADIUS requests handled at once; more are dropped (the NAS retransmits).
const RADIUS_CONCURRENCY: usize = 512;

/// Timer period for every live peer.
pub const TICK: Duration = Duration::from_millis(250);

struct Inner {
    relay: Relay,
    socket: Arc<UdpSocket>,
    sink: Arc<dyn RadiusSink>,
    directory: Option<Arc<dyn PeerDirectory>>,
    radius_permits: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    next_port: AtomicU32,
}

/// A running relay. Cheap to clone; `shutdown` stops its tasks.
#[derive(Clone)]
pub struct RelayHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle")
            .field("relay", &self.inner.relay)
            .finish()
    }
}

impl RelayHandle {
    /// Starts the relay on `socket` (already bound, e.g. to `wg.listen`) with this node's
    /// static key. Metrics go into `registry` (pass a `relay` sub-registry). Must be called
    /// inside a tokio runtime.
    pub fn start(
        config: RelayConfig,
        secret: StaticSecret,
        socket: UdpSocket,
        sink: Arc<dyn RadiusSink>,
        directory: Option<Arc<dyn PeerDirectory>>,
        registry: &mut Registry,
    ) -> Self {
        let metrics = RelayMetrics::default();
        metrics.register(registry);
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            relay: Relay::new(config, secret, metrics),
            socket: Arc::new(socket),
            sink,
            directory,
            radius_permits: Arc::new(Semaphore::new(RADIUS_CONCURRENCY)),
            stop,
            next_port: AtomicU32::new(rand::random::<u32>()),
        });
        tokio::spawn(recv_loop(inner.clone()));
        tokio::spawn(tick_loop(inner.clone()));
        Self { inner }
    }

    /// The core (for tests and metrics).
    pub fn relay(&self) -> &Relay {
        &self.inner.relay
    }

    /// This node's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.relay.public_key()
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.socket.local_addr()
    }

    /// Stops the receive and timer tasks.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Adds or updates a peer (`peer.changed`); `handshake_tai64` from the store seeds replay
    /// protection.
    pub fn upsert_peer(
        &self,
        public_key: [u8; 32],
        identity: &PeerIdentity,
        handshake_tai64: Option<Tai64N>,
    ) -> Result<(), PeerError> {
        self.inner
            .relay
            .upsert_peer(public_key, identity, handshake_tai64)
    }

    /// Removes a peer (`peer.changed` for a deleted peer).
    pub fn remove_peer(&self, public_key: &[u8; 32]) -> bool {
        self.inner.relay.remove_peer(public_key)
    }

    /// A tenant's status changed (`tenant.changed`).
    pub fn set_tenant_status(
        &self,
        tenant: TenantId,
        status: TenantStatus,
        suspended_at: Option<DateTime<Utc>>,
    ) {
        self.inner
            .relay
            .set_tenant_status(tenant, status, suspended_at)
    }

    /// Every peer's status (`peer list`).
    pub fn status(&self) -> Vec<PeerStatus> {
        self.inner.relay.status()
    }

    /// Initiates a handshake to a persisted endpoint (on start).
    pub async fn connect(&self, public_key: &[u8; 32], endpoint: SocketAddr) {
        let out = self.inner.relay.connect(public_key, endpoint);
        self.inner.dispatch(out).await;
    }

    fn port(&self) -> u16 {
        // Ephemeral range 49152..=65535.
        let n = self.inner.next_port.fetch_add(1, Ordering::Relaxed);
        49152 + (n % 16384) as u16
    }

    fn peer_for(&self, tenant: TenantId, nas: &Nas) -> Result<Arc<Peer>, TransportError> {
        let peer = self.inner.relay.peer_of_nas(nas.id).ok_or_else(|| {
            TransportError::Unreachable(format!("NAS {} has no WireGuard peer here", nas.name))
        })?;
        if peer.lock().tenant != tenant {
            return Err(TransportError::Unreachable(format!(
                "NAS {} belongs to another tenant",
                nas.name
            )));
        }
        Ok(peer)
    }
}

async fn recv_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, src) = tokio::select! {
            r = inner.socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "relay recv_from failed");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let out = inner.relay.on_datagram(src, &buf[..n], Instant::now());
        inner.dispatch(out).await;
    }
}

async fn tick_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let out = inner.relay.tick(Instant::now());
        inner.dispatch(out).await;
    }
}

impl Inner {
    async fn dispatch(self: &Arc<Self>, out: Output) {
        for (to, d) in &out.transmits {
            if let Err(e) = self.socket.send_to(d, to).await {
                tracing::trace!(error = %e, "relay send_to failed");
            }
        }
        self.dispatch_rest(out);
    }

    /// Sends without waiting (from poll functions and `Drop`).
    fn dispatch_now(self: &Arc<Self>, out: Output) {
        for (to, d) in &out.transmits {
            let _ = self.socket.try_send_to(d, *to);
        }
        self.dispatch_rest(out);
    }

    fn dispatch_rest(self: &Arc<Self>, out: Output) {
        if (out.radius.is_empty() && out.lookups.is_empty())
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        for req in out.radius {
            let Ok(permit) = self.radius_permits.clone().try_acquire_owned() else {
                self.relay
                    .metrics()
                    .drop_packet(crate::vnet::DropReason::Busy);
                continue;
            };
            let inner = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let reply = inner
                    .sink
                    .handle(
                        req.tenant,
                        req.nas,
                        SocketAddr::V4(req.source),
                        req.datagram.clone(),
                    )
                    .await;
                if let Some(reply) = reply {
                    let out = inner.relay.radius_reply(&req, &reply);
                    inner.dispatch(out).await;
                }
            });
        }
        for lookup in out.lookups {
            let Some(dir) = self.directory.clone() else {
                self.relay.lookup_failed(&lookup.public_key, Instant::now());
                continue;
            };
            let inner = self.clone();
            tokio::spawn(async move {
                match dir.lookup(&lookup.public_key).await {
                    Some(entry) => {
                        let added = inner.relay.upsert_peer(
                            lookup.public_key,
                            &entry.identity,
                            entry.handshake_tai64,
                        );
                        inner.relay.lookup_done(&lookup.public_key);
                        if let Err(e) = added {
                            tracing::warn!(error = %e, "peer from the directory not served");
                            return;
                        }
                        let out = inner.relay.on_datagram(
                            lookup.source,
                            &lookup.datagram,
                            Instant::now(),
                        );
                        inner.dispatch(out).await;
                    }
                    None => inner
                        .relay
                        .lookup_failed(&lookup.public_key, Instant::now()),
                }
            });
        }
    }
}

/// Removes a `udp_exchange` waiter however the exchange ends.
struct WaiterGuard<'a> {
    relay: &'a Relay,
    peer: &'a Peer,
    port: u16,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.relay.udp_forget(self.peer, self.port);
    }
}

#[async_trait]
impl NasTransport for RelayHandle {
    async fn udp_exchange(
        &self,
        tenant: TenantId,
        nas: &Nas,
        port: u16,
        request: &[u8],
        timeout: Duration,
        accept: &(dyn for<'b> Fn(&'b [u8]) -> bool + Send + Sync),
    ) -> Result<Vec<u8>, TransportError> {
        let peer = self.peer_for(tenant, nas)?;
        let (tx, mut rx) = mpsc::channel(16);
        let mut attempt = 0;
        let (local, out) = loop {
            let local = self.port();
            match self
                .inner
                .relay
                .udp_send(&peer, local, port, request, Some(tx.clone()))
            {
                Ok(out) => break (local, out),
                Err(_) if attempt < 8 => attempt += 1,
                Err(e) => return Err(TransportError::Unreachable(e)),
            }
        };
        let _guard = WaiterGuard {
            relay: &self.inner.relay,
            peer: &peer,
            port: local,
        };
        self.inner.dispatch(out).await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .map_err(|_| TransportError::Timeout(timeout))?;
            let Some(reply) = got else {
                return Err(TransportError::Unreachable("peer removed".into()));
            };
            if accept(&reply) {
                return Ok(reply);
            }
        }
    }

    async fn tcp_connect(
        &self,
        tenant: TenantId,
        nas: &Nas,
        port: u16,
        timeout: Duration,
    ) -> Result<NasStream, TransportError> {
        let peer = self.peer_for(tenant, nas)?;
        let relay = &self.inner.relay;
        let mut local = 0;
        for _ in 0..8 {
            let candidate = self.port();
            let r = relay.with_tcp(&peer, true, Instant::now(), |stack, net| {
                stack.connect(candidate, (net.peer, port))
            });
            match r {
                None => {
                    return Err(TransportError::Unreachable(format!(
                        "the WireGuard peer of NAS {} is not connected",
                        nas.name
                    )));
                }
                Some((Ok(()), out)) => {
                    self.inner.dispatch(out).await;
                    local = candidate;
                    break;
                }
                Some((Err(_), _)) => {}
            }
        }
        if local == 0 {
            return Err(TransportError::Unreachable("no free local port".into()));
        }
        let stream = TunnelStream {
            inner: self.inner.clone(),
            peer,
            port: local,
        };
        let established = poll_fn(|cx| {
            let r = stream.with_socket(|s| match s.state() {
                tcp::State::Established => Poll::Ready(Ok(())),
                tcp::State::Closed | tcp::State::TimeWait => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "connection refused through the tunnel",
                ))),
                _ => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
            });
            r.unwrap_or_else(|e| Poll::Ready(Err(e)))
        });
        match tokio::time::timeout(timeout, established).await {
            Err(_) => Err(TransportError::Timeout(timeout)),
            Ok(Err(e)) => Err(TransportError::Io(e)),
            Ok(Ok(())) => Ok(Box::new(stream)),
        }
    }
}

/// A TCP connection to a NAS through its peer's tunnel.
pub struct TunnelStream {
    inner: Arc<Inner>,
    peer: Arc<Peer>,
    port: u16,
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream")
            .field("peer", &self.peer)
            .field("port", &self.port)
            .finish()
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the WireGuard tunnel is gone")
}

impl TunnelStream {
    /// Runs `f` on this connection's socket, then polls the stack and sends what it produced.
    fn with_socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> io::Result<R> {
        let port = self.port;
        let (r, out) = self
            .inner
            .relay
            .with_tcp(&self.peer, false, Instant::now(), |stack, _| {
                stack.socket_mut(port).map(f)
            })
            .ok_or_else(gone)?;
        self.inner.dispatch_now(out);
        r.ok_or_else(gone)
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = self.with_socket(|s| {
            if s.can_recv() {
                match s.recv_slice(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        Poll::Ready(Ok(()))
                    }
                    Err(_) => Poll::Ready(Ok(())),
                }
            } else if !s.may_recv() {
                Poll::Ready(Ok(()))
            } else {
                s.register_recv_waker(cx.waker());
                Poll::Pending
            }
        });
        r.unwrap_or_else(|e| Poll::Ready(Err(e)))
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = self.with_socket(|s| {
            if s.can_send() {
                Poll::Ready(s.send_slice(data).map_err(|_| gone()))
            } else if !s.may_send() {
                Poll::Ready(Err(gone()))
            } else {
                s.register_send_waker(cx.waker());
                Poll::Pending
            }
        });
        r.unwrap_or_else(|e| Poll::Ready(Err(e)))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.with_socket(|s| s.close()))
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        let _ = self.with_socket(|s| s.close());
        self.inner.relay.tcp_orphan(&self.peer, self.port);
    }
}
