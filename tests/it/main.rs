//! End-to-end tests of the `proxpanel` binary: the CLI, `serve --demo`, the admin listener.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod acme;
mod api;
mod cli;
mod coa;
mod dns;
mod radius;
mod relay;
mod schemathesis;
mod serve;
mod support;
mod web;
