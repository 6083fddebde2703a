//! WireGuard relay: terminates every tenant's tunnels on one UDP socket (boringtun `noise` only,
//! no TUN), finds the peer of a handshake by its public key and of later packets by receiver
//! index, gives each peer its own small virtual network (RADIUS over UDP to the relay's `.1`,
//! ICMP echo, TCP through smoltcp for connections the platform opens), and implements
//! `NasTransport` through the tunnels.
//!
//! Layout: [`relay::Relay`] is the sans-IO core (datagrams and ticks in, datagrams, RADIUS
//! requests and directory lookups out); [`server`] is its tokio shell and [`server::RelayHandle`]
//! what the rest of the platform holds.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admission;
pub mod fuzzing;
pub mod handshake;
pub mod keys;
pub mod metrics;
pub mod peers;
pub mod relay;
pub mod server;
pub mod tcp;
pub mod vnet;

/// The x25519 types of the relay's keys (boringtun's re-export of x25519-dalek).
pub use boringtun::x25519;

pub use handshake::Tai64N;
pub use metrics::RelayMetrics;
pub use relay::{Output, PeerError, PeerStatus, RadiusRequest, Relay, RelayConfig};
pub use server::{DirectoryEntry, PeerDirectory, RadiusSink, RelayHandle};
