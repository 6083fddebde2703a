//! Server-rendered web panel: signup, operator console and tenant panels.
//!
//! Not built yet: the web issue fills this crate. `serve` does not start the web role until then.
