//! Authoritative DNS for the SaaS zone (hickory-server), fed live from the store.
//!
//! Not built yet: the DNS issue fills this crate. `serve` does not start the dns role until then.
