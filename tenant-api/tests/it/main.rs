//! Integration tests of the tenant API: the axum app with a real store (SQLite always,
//! PostgreSQL when PP_TEST_PG_SUPER_URL is set), requests carrying Host headers.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

mod auth;
mod changes;
mod hosts;
mod operator;
mod resources;
mod signup;
