//! Tenant REST API on wildcard subdomains, signup and operator endpoints (axum).
//!
//! Not built yet: the API issue fills this crate. `serve` does not start the api role until then.
