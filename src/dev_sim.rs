//! `proxpanel dev routeros-sim`: the RouterOS API simulator of `saas_core::routeros::sim` as a
//! foreground process (inside a router namespace of the e2e harness, or for a demo).

use std::net::SocketAddr;

use saas_core::routeros::sim::{SimConfig, Simulator};

use crate::Fatal;

/// `dev routeros-sim` flags.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on, e.g. 127.0.0.1:8728 (a router's tunnel address in the e2e tests).
    #[arg(long)]
    pub listen: SocketAddr,
    /// API user.
    #[arg(long)]
    pub user: String,
    /// Its password.
    #[arg(long)]
    pub password: String,
    /// Serve API-SSL with a fresh self-signed certificate (its fingerprint is printed).
    #[arg(long)]
    pub tls: bool,
    /// Accept only the pre-6.43 challenge-response login.
    #[arg(long)]
    pub legacy_login: bool,
    /// `/system identity` name.
    #[arg(long, default_value = "sim-router")]
    pub identity: String,
    /// `/system resource` version.
    #[arg(long, default_value = "7.16.2 (stable)")]
    pub version: String,
    /// PPP sessions to start with (`user1`…`userN`, counters growing by ~1 MB/s).
    #[arg(long, default_value_t = 0)]
    pub sessions: u32,
}

/// Runs the simulator until Ctrl-C (or SIGTERM).
pub async fn run(args: SimArgs) -> Result<(), Fatal> {
    saas_core::tls::install_crypto_provider();
    let sim = Simulator::start(
        args.listen,
        SimConfig {
            user: args.user,
            password: args.password,
            tls: args.tls,
            legacy_login: args.legacy_login,
            identity: args.identity,
            version: args.version,
        },
    )
    .await
    .map_err(|e| Fatal::failure(format!("routeros-sim: {e}")))?;
    for n in 1..=args.sessions {
        sim.add_session(
            &format!("user{n}"),
            &format!("100.64.{}.{}", (n >> 8) & 0xff, n & 0xff),
            (0, 0),
            (250_000, 1_000_000),
        );
    }
    println!(
        "RouterOS API simulator on {}{}",
        sim.addr(),
        sim.fingerprint()
            .map(|f| format!(" (API-SSL, certificate SHA-256 {f})"))
            .unwrap_or_default()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Fatal::failure(format!("signal handler: {e}")))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(sim);
    Ok(())
}
