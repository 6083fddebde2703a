//! TCP through a peer's tunnel: a smoltcp `Interface` per peer that has platform-opened
//! connections (onetun-style: the device is two packet queues). The interface holds the relay's
//! tunnel address; only connections the platform opens exist, so any other TCP is dropped.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::vnet::TunnelNet;

/// Inner MTU of the tunnel (WireGuard's default 1420).
pub const MTU: usize = 1420;

/// Socket buffer per direction and connection.
const BUFFER: usize = 16 * 1024;

/// A smoltcp device over two packet queues: `rx` is fed with decrypted packets, `tx` is drained
/// into the tunnel.
#[derive(Debug, Default)]
pub struct QueueDevice {
    /// Packets for the stack.
    pub rx: VecDeque<Vec<u8>>,
    /// Packets from the stack.
    pub tx: VecDeque<Vec<u8>>,
}

/// Receive token.
#[derive(Debug)]
pub struct RxTok(Vec<u8>);

/// Transmit token.
#[derive(Debug)]
pub struct TxTok<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a>
        = RxTok
    where
        Self: 'a;
    type TxToken<'a>
        = TxTok<'a>
    where
        Self: 'a;

    fn receive(&mut self, _ts: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((RxTok(p), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<Self::TxToken<'_>> {
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// An interface with `addr/prefix` over a fresh [`QueueDevice`].
pub fn interface(addr: Ipv4Addr, prefix: u8, seed: u64, now: Instant) -> (Interface, QueueDevice) {
    let mut dev = QueueDevice::default();
    let mut cfg = Config::new(HardwareAddress::Ip);
    cfg.random_seed = seed;
    let mut iface = Interface::new(cfg, &mut dev, now);
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), prefix));
    });
    (iface, dev)
}

/// A new TCP socket with the relay's buffer sizes.
pub fn socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; BUFFER]),
        tcp::SocketBuffer::new(vec![0; BUFFER]),
    )
}

/// The TCP stack of one peer.
pub struct TcpStack {
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    conns: HashMap<u16, SocketHandle>,
}

impl std::fmt::Debug for TcpStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStack")
            .field("conns", &self.conns.len())
            .finish()
    }
}

impl TcpStack {
    /// A stack holding the relay's address of `net`.
    pub fn new(net: &TunnelNet, seed: u64, now: Instant) -> Self {
        let (iface, dev) = interface(net.relay, net.prefix, seed, now);
        Self {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            conns: HashMap::new(),
        }
    }

    /// Whether a connection uses local `port`.
    pub fn has_port(&self, port: u16) -> bool {
        self.conns.contains_key(&port)
    }

    /// No connection left.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Starts connecting from local `port` to `remote`.
    pub fn connect(&mut self, local_port: u16, remote: (Ipv4Addr, u16)) -> Result<(), String> {
        if self.conns.contains_key(&local_port) {
            return Err("local port in use".into());
        }
        let mut s = socket();
        s.set_nagle_enabled(false);
        s.connect(
            self.iface.context(),
            (IpAddress::Ipv4(remote.0), remote.1),
            local_port,
        )
        .map_err(|e| e.to_string())?;
        let h = self.sockets.add(s);
        self.conns.insert(local_port, h);
        Ok(())
    }

    /// The socket of local `port`.
    pub fn socket_mut(&mut self, port: u16) -> Option<&mut tcp::Socket<'static>> {
        let h = *self.conns.get(&port)?;
        Some(self.sockets.get_mut::<tcp::Socket>(h))
    }

    /// Forgets local `port` (aborting it if still open).
    pub fn remove(&mut self, port: u16) {
        if let Some(h) = self.conns.remove(&port) {
            self.sockets.remove(h);
        }
    }

    /// Aborts every connection (the tunnel is going away).
    pub fn abort_all(&mut self) {
        for h in self.conns.values() {
            self.sockets.get_mut::<tcp::Socket>(*h).abort();
        }
    }

    /// Feeds one packet from the peer.
    pub fn push(&mut self, packet: Vec<u8>) {
        // Bounded: smoltcp consumes everything at the next poll, which follows at once.
        if self.dev.rx.len() < 64 {
            self.dev.rx.push_back(packet);
        }
    }

    /// Runs the stack and returns the packets to send into the tunnel.
    pub fn poll(&mut self, now: Instant) -> Vec<Vec<u8>> {
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        self.dev.tx.drain(..).collect()
    }

    /// Drops connections that are closed (dropped by their stream, then finished).
    pub fn reap(&mut self, orphaned: impl Fn(u16) -> bool) {
        let mut gone = Vec::new();
        for (port, h) in &self.conns {
            let s = self.sockets.get::<tcp::Socket>(*h);
            let closed = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
            if closed && orphaned(*port) {
                gone.push(*port);
            }
        }
        for p in gone {
            self.remove(p);
        }
    }
}
