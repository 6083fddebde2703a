//! Relay benchmark helper for `infra/bench/relay.sh` (run by hand, release build:
//! `cargo build --release -p relay --example relay_bench`). Every key is derived from
//! `--seed` and the peer number, so a responder and a client started separately agree on them.
//!
//! Subcommands (output: `key=value` lines on stdout):
//!
//! - `memory PEERS`: resident memory (VmRSS) of a `Relay` holding PEERS configured peers, never
//!   connected, then after a complete handshake (initiation, response, first data packet) with
//!   each of them, i.e. every peer connected with a live `Tunn`. The synthetic boringtun client
//!   of each handshake is created and dropped per peer, so only the relay's state grows.
//!   Prints `base_kib`, `never_kib`, `connected_kib` and the growth per peer in bytes.
//! - `inproc PEERS ROUNDS`: handshakes/s of `Relay::on_datagram` on this one thread, fed
//!   PEERS × ROUNDS initiations pre-computed by PEERS synthetic boringtun clients (each round a
//!   fresh initiation of every peer; limits off). Client work is not timed.
//! - `responder LISTEN PEERS SEED`: the relay's tokio shell (`RelayHandle`, as `proxpanel serve`
//!   runs it) on a current-thread runtime (pin it with taskset), PEERS peers configured, limits
//!   off; prints `ready=1` and serves until killed.
//! - `wg-config PEERS SEED LISTEN_PORT`: a `wg setconf` file giving a wireguard-go interface the
//!   same private key and the same PEERS peers as `responder`.
//! - `blast TARGET PEERS ROUNDS WINDOW SEED`: pre-computes PEERS × ROUNDS initiations to the
//!   seed's responder key, then sends them over UDP keeping WINDOW unanswered, and counts
//!   handshake responses (type 2) and cookie replies (type 3) per second of wall time.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use relay::x25519::{PublicKey, StaticSecret};
use relay::{Relay, RelayConfig, RelayMetrics};
use saas_core::ids::{NasId, PeerId, TenantId};
use saas_core::model::{PeerIdentity, TenantStatus};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Peers per synthetic tenant.
const PEERS_PER_TENANT: usize = 10;

fn arg(args: &[String], i: usize) -> Res<&str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument {i}; see the header of relay_bench.rs").into())
}

fn num(args: &[String], i: usize) -> Res<usize> {
    Ok(arg(args, i)?.parse()?)
}

fn main() -> Res<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let seed = |i| num(&a, i).map(|s| s as u64);
    match arg(&a, 0)? {
        "memory" => memory(num(&a, 1)?),
        "inproc" => inproc(num(&a, 1)?, num(&a, 2)?),
        "responder" => responder(arg(&a, 1)?.parse()?, num(&a, 2)?, seed(3)?),
        "wg-config" => {
            wg_config(num(&a, 1)?, seed(2)?, num(&a, 3)?);
            Ok(())
        }
        "blast" => blast(
            arg(&a, 1)?.parse()?,
            num(&a, 2)?,
            num(&a, 3)?,
            num(&a, 4)?,
            seed(5)?,
        ),
        other => Err(format!("unknown subcommand {other:?}").into()),
    }
}

// ---- keys and peers ----

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The private key of peer `n` (`u64::MAX` = the responder) of `seed`.
fn secret(seed: u64, n: u64) -> StaticSecret {
    let mut b = [0u8; 32];
    for (i, chunk) in b.chunks_mut(8).enumerate() {
        let v = splitmix(seed ^ splitmix(n.wrapping_add(i as u64 * 0x1_0000_0001)));
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    StaticSecret::from(b)
}

const RESPONDER: u64 = u64::MAX;

fn open_config() -> RelayConfig {
    RelayConfig {
        handshakes_per_second: 0,
        source_handshakes_per_second: 0,
        tenant_handshakes_per_second: 0,
        ..Default::default()
    }
}

/// Configures peers 0..n of `seed` (one tenant per `PEERS_PER_TENANT`).
fn load_peers(relay: &Relay, seed: u64, n: usize) -> Res<()> {
    let mut tenant = TenantId::new();
    for i in 0..n {
        if i % PEERS_PER_TENANT == 0 {
            tenant = TenantId::new();
        }
        let public = PublicKey::from(&secret(seed, i as u64));
        let identity = PeerIdentity {
            peer_id: PeerId::new(),
            tenant_id: tenant,
            tenant_status: TenantStatus::Active,
            suspended_at: None,
            nas_id: NasId::new(),
            tunnel_address: "10.200.0.2/24".into(),
        };
        relay.upsert_peer(*public.as_bytes(), &identity, None)?;
    }
    Ok(())
}

fn client(seed: u64, n: usize, responder: &PublicKey) -> Tunn {
    Tunn::new(
        secret(seed, n as u64),
        *responder,
        None,
        None,
        (n as u32) & 0x00FF_FFFF,
        None,
    )
}

fn initiation(tunn: &mut Tunn, buf: &mut [u8]) -> Res<Vec<u8>> {
    match tunn.format_handshake_initiation(buf, true) {
        TunnResult::WriteToNetwork(p) => Ok(p.to_vec()),
        _ => Err("the client produced no initiation".into()),
    }
}

/// `PEERS × rounds` initiations, round by round (so a peer's timestamps only grow).
fn initiations(seed: u64, peers: usize, rounds: usize, responder: &PublicKey) -> Res<Vec<Vec<u8>>> {
    let mut clients: Vec<Tunn> = (0..peers).map(|n| client(seed, n, responder)).collect();
    let mut buf = vec![0u8; 256];
    let mut all = Vec::with_capacity(peers * rounds);
    for _ in 0..rounds {
        for c in &mut clients {
            all.push(initiation(c, &mut buf)?);
        }
    }
    Ok(all)
}

fn src_of(n: usize) -> SocketAddr {
    SocketAddr::from((
        [198, 18, (n >> 8) as u8, n as u8],
        40_000 + (n % 20_000) as u16,
    ))
}

// ---- memory ----

fn rss_kib() -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("bad VmRSS line")?
        .parse()?)
}

fn memory(peers: usize) -> Res<()> {
    let seed = 1;
    let relay_secret = secret(seed, RESPONDER);
    let responder = PublicKey::from(&relay_secret);
    let relay = Relay::new(open_config(), relay_secret, RelayMetrics::default());
    // Warm the allocator, the scratch buffer and the crypto paths with one peer of another seed.
    load_peers(&relay, 2, 1)?;
    connect(&relay, 2, 0, &responder)?;
    let base = rss_kib()?;
    load_peers(&relay, seed, peers)?;
    let never = rss_kib()?;
    for n in 0..peers {
        connect(&relay, seed, n, &responder)?;
    }
    let connected = rss_kib()?;
    let live = relay.status().iter().filter(|s| s.connected).count();
    if live != peers + 1 {
        return Err(format!("{live} peers connected, expected {}", peers + 1).into());
    }
    let per = |kib: u64, from: u64| (kib.saturating_sub(from) * 1024) as f64 / peers as f64;
    println!("peers={peers}");
    println!("base_kib={base}");
    println!("never_kib={never}");
    println!("connected_kib={connected}");
    println!("never_bytes_per_peer={:.0}", per(never, base));
    println!("connected_bytes_per_peer={:.0}", per(connected, base));
    Ok(())
}

/// A full handshake of peer `n` with `relay`; the client is dropped afterwards.
fn connect(relay: &Relay, seed: u64, n: usize, responder: &PublicKey) -> Res<()> {
    let mut c = client(seed, n, responder);
    let mut buf = vec![0u8; 2048];
    let src = src_of(n);
    let init = initiation(&mut c, &mut buf)?;
    let out = relay.on_datagram(src, &init, Instant::now());
    let response = out
        .transmits
        .first()
        .ok_or_else(|| format!("no handshake response for peer {n}"))?;
    // The initiator answers the response with a keepalive: the responder's session starts.
    let keepalive = match c.decapsulate(None, &response.1, &mut buf) {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        _ => return Err(format!("peer {n}: the response did not complete the handshake").into()),
    };
    relay.on_datagram(src, &keepalive, Instant::now());
    Ok(())
}

// ---- handshakes ----

fn inproc(peers: usize, rounds: usize) -> Res<()> {
    let seed = 1;
    let relay_secret = secret(seed, RESPONDER);
    let responder = PublicKey::from(&relay_secret);
    let relay = Relay::new(open_config(), relay_secret, RelayMetrics::default());
    load_peers(&relay, seed, peers)?;
    let all = initiations(seed, peers, rounds, &responder)?;
    let start = Instant::now();
    let mut ok = 0u64;
    for (i, init) in all.iter().enumerate() {
        let out = relay.on_datagram(src_of(i % peers), init, Instant::now());
        if out
            .transmits
            .first()
            .is_some_and(|(_, d)| d.first() == Some(&2))
        {
            ok += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("initiations={}", all.len());
    println!("responses={ok}");
    println!("seconds={secs:.3}");
    println!("handshakes_per_s={:.0}", ok as f64 / secs);
    Ok(())
}

struct NoRadius;

#[async_trait::async_trait]
impl relay::RadiusSink for NoRadius {
    async fn handle(
        &self,
        _tenant: TenantId,
        _nas: NasId,
        _source: SocketAddr,
        _datagram: Vec<u8>,
    ) -> Option<Vec<u8>> {
        None
    }
}

fn responder(listen: SocketAddr, peers: usize, seed: u64) -> Res<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let socket = tokio::net::UdpSocket::bind(listen).await?;
        let mut registry = prometheus_client::registry::Registry::default();
        let handle = relay::RelayHandle::start(
            open_config(),
            secret(seed, RESPONDER),
            socket,
            Arc::new(NoRadius),
            None,
            &mut registry,
        );
        load_peers(handle.relay(), seed, peers)?;
        println!("ready=1");
        std::future::pending::<()>().await;
        Ok(())
    })
}

fn wg_config(peers: usize, seed: u64, port: usize) {
    let key = |s: &StaticSecret| relay::keys::encode(&s.to_bytes());
    println!("[Interface]");
    println!("PrivateKey = {}", key(&secret(seed, RESPONDER)));
    println!("ListenPort = {port}");
    for n in 0..peers {
        let public = PublicKey::from(&secret(seed, n as u64));
        println!();
        println!("[Peer]");
        println!("PublicKey = {}", relay::keys::encode(public.as_bytes()));
    }
}

fn blast(target: SocketAddr, peers: usize, rounds: usize, window: usize, seed: u64) -> Res<()> {
    let responder = PublicKey::from(&secret(seed, RESPONDER));
    let all = initiations(seed, peers, rounds, &responder)?;
    let socket = UdpSocket::bind(("0.0.0.0", 0))?;
    socket.connect(target)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut kinds: HashMap<u8, u64> = HashMap::new();
    let mut buf = [0u8; 2048];
    let mut next = 0;
    let mut outstanding = 0usize;
    let mut lost = 0usize;
    let start = Instant::now();
    let mut last = start;
    while next < all.len() || outstanding > 0 {
        while outstanding < window && next < all.len() {
            socket.send(&all[next])?;
            next += 1;
            outstanding += 1;
        }
        match socket.recv(&mut buf) {
            Ok(n) if n > 0 => {
                *kinds.entry(buf[0]).or_default() += 1;
                outstanding = outstanding.saturating_sub(1);
                last = Instant::now();
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Unanswered: count them lost and go on.
                lost += outstanding;
                outstanding = 0;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let secs = last.duration_since(start).as_secs_f64().max(1e-9);
    let responses = kinds.get(&2).copied().unwrap_or(0);
    println!("initiations={}", all.len());
    println!("responses={responses}");
    println!("cookies={}", kinds.get(&3).copied().unwrap_or(0));
    println!("lost={lost}");
    println!("seconds={secs:.3}");
    println!("handshakes_per_s={:.0}", responses as f64 / secs);
    Ok(())
}
