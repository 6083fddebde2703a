//! Authoritative DNS for the SaaS zone (hickory-server), fed live from the store.
//!
//! [`zone`] builds an immutable snapshot of `<base>` from the store; [`server`] answers from it
//! over UDP and TCP, with pre-encoded answers ([`fast`]) in front of hickory's catalog
//! ([`handler`]); [`live`] rebuilds the snapshot on bus events. Certificates live in saas-core.

pub mod fast;
pub mod fuzzing;
pub mod handler;
pub mod live;
pub mod metrics;
pub mod rrl;
pub mod server;
pub mod udp_batch;
pub mod zone;

pub use live::{load_zone_data, next_serial};
pub use metrics::DnsMetrics;
pub use server::{DnsServer, ServerSettings};
pub use zone::{Zone, ZoneData, ZoneSettings};
