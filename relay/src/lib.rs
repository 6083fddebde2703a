//! WireGuard relay: terminates every tenant's tunnels on UDP 51820 (boringtun `noise`), demuxes
//! RADIUS to the tenant AAA engine and carries API/CoA traffic into the tunnels.
//!
//! Not built yet: the relay issue fills this crate. `serve` does not start a relay role until then.
