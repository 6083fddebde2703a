//! Integration tests of saas-core: the store battery runs on SQLite and PostgreSQL, the cache and
//! bus battery on the in-process implementations and Redis.

mod bus_cache;
mod platform;
mod store;
