//! ProxPanel domain core: tenancy scopes, the store, cache, event bus, secrets, and the traits the
//! relay, DNS, API and web crates plug into.

pub mod aaa;
pub mod acme;
pub mod bus;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod dns_records;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod platform;
pub mod radius;
pub mod routeros;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod tls;
pub mod transport;

pub use ids::{Email, NasId, OperatorId, PlanId, Slug, SubscriberId, TenantId, UserId};
pub use store::{PlatformScope, Store, StoreError, SystemScope, TenantScope};
