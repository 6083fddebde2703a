//! What the cargo-fuzz target `relay_datagram` (in `fuzz/`) runs, shared with the seed-corpus
//! replay test so both exercise the same code. The relay and the one configured peer use fixed
//! keys, so seed initiations made with [`seed_client`] get past the handshake stages.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use boringtun::noise::Tunn;
use boringtun::x25519::{PublicKey, StaticSecret};
use saas_core::ids::{NasId, PeerId, TenantId};
use saas_core::model::{PeerIdentity, TenantStatus};

use crate::metrics::RelayMetrics;
use crate::relay::{Relay, RelayConfig};
use crate::vnet::{self, TunnelNet};

const RELAY_SECRET: [u8; 32] = [7; 32];
const PEER_SECRET: [u8; 32] = [9; 32];
/// Tunnel address of the fuzzing peer.
pub const TUNNEL: &str = "10.200.0.2/24";

fn relay() -> &'static Relay {
    static RELAY: OnceLock<Relay> = OnceLock::new();
    RELAY.get_or_init(|| {
        let r = Relay::new(
            RelayConfig {
                handshakes_per_second: 0,
                source_handshakes_per_second: 0,
                tenant_handshakes_per_second: 0,
                ..Default::default()
            },
            StaticSecret::from(RELAY_SECRET),
            RelayMetrics::default(),
        );
        let peer = PublicKey::from(&StaticSecret::from(PEER_SECRET));
        let identity = PeerIdentity {
            peer_id: PeerId::new(),
            tenant_id: TenantId::new(),
            tenant_status: TenantStatus::Active,
            suspended_at: None,
            nas_id: NasId::new(),
            tunnel_address: TUNNEL.into(),
        };
        // A valid constant address; cannot fail.
        let _ = r.upsert_peer(*peer.as_bytes(), &identity, None);
        r
    })
}

/// A boringtun client with the fuzzing peer's key (to make seed datagrams).
pub fn seed_client(index: u32) -> Tunn {
    let relay_public = PublicKey::from(&StaticSecret::from(RELAY_SECRET));
    Tunn::new(
        StaticSecret::from(PEER_SECRET),
        relay_public,
        None,
        None,
        index,
        None,
    )
}

/// Feeds `data` to every parser that sees attacker-controlled bytes: as an outer datagram to
/// the relay (then a timer tick), and as an inner packet to the virtual network.
pub fn datagram(data: &[u8]) {
    let src: SocketAddr = SocketAddr::from(([192, 0, 2, 1], 51820));
    let r = relay();
    let _ = r.on_datagram(src, data, Instant::now());
    let _ = r.tick(Instant::now());
    let _ = crate::handshake::open_initiation(
        &StaticSecret::from(RELAY_SECRET),
        &PublicKey::from(&StaticSecret::from(RELAY_SECRET)),
        data,
    );
    if let Some(net) = TunnelNet::parse(TUNNEL) {
        let _ = vnet::classify(data, &net);
    }
    let _ = vnet::parse_udp(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::noise::TunnResult;

    fn corpus_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/datagram")
    }

    /// Replays the seed corpus shared with the cargo-fuzz target (`fuzz/`): nothing may panic.
    #[test]
    fn corpus_replay() {
        let mut seen = 0;
        for entry in std::fs::read_dir(corpus_dir()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            datagram(&bytes);
            for len in [0, 1, 4, 16, 32, bytes.len() / 2] {
                datagram(&bytes[..len.min(bytes.len())]);
            }
            seen += 1;
        }
        assert!(seen >= 5, "only {seen} seeds");
    }

    /// Writes the seed corpus (run by hand: `cargo test -p relay write_seed_corpus -- --ignored`).
    #[test]
    #[ignore]
    fn write_seed_corpus() {
        let dir = corpus_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let mut client = seed_client(1);
        let mut buf = vec![0u8; 2048];
        let TunnResult::WriteToNetwork(init) = client.format_handshake_initiation(&mut buf, true)
        else {
            panic!()
        };
        std::fs::write(dir.join("handshake-init.bin"), init).unwrap();
        let udp = vnet::udp_packet(
            "10.200.0.2:40000".parse().unwrap(),
            "10.200.0.1:1812".parse().unwrap(),
            b"\x01\x01\x00\x14aaaaaaaaaaaaaaaa",
        );
        std::fs::write(dir.join("inner-udp-1812.bin"), &udp).unwrap();
        let mut data = vec![4u8, 0, 0, 0, 0, 1, 0, 0];
        data.extend_from_slice(&[0u8; 8]);
        data.extend_from_slice(&[0xaa; 48]);
        std::fs::write(dir.join("data-unknown-index.bin"), &data).unwrap();
        let mut cookie = vec![3u8, 0, 0, 0, 0, 1, 0, 0];
        cookie.extend_from_slice(&[0x55; 56]);
        std::fs::write(dir.join("cookie-reply.bin"), &cookie).unwrap();
        let mut resp = vec![2u8, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0];
        resp.extend_from_slice(&[0x11; 80]);
        std::fs::write(dir.join("handshake-response.bin"), &resp).unwrap();
        std::fs::write(dir.join("garbage.bin"), b"\xff\x00garbage").unwrap();
    }
}
