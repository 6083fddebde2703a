//! Handler tests of the web panel: the whole app (API host routing + panel) over a real store,
//! requests with Host headers and cookies, as a browser sends them.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

mod console;
mod security;
mod tenant;
