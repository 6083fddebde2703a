//! Integration tests of saas-core: the store battery runs on SQLite and PostgreSQL, the cache and
//! bus battery on the in-process implementations and Redis.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod aaa;
mod acme;
mod bus_cache;
mod platform;
mod routeros;
mod store;
