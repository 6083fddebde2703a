//! `proxpanel dev routeros-sim`: the RouterOS API simulator of `saas_core::routeros::sim` as a
//! foreground process (inside a router namespace of the e2e harness, or for a demo).

use std::net::SocketAddr;

use saas_core::routeros::sim::{Fault, SimConfig, Simulator};
use tokio::io::AsyncBufReadExt as _;

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
    println!("control on stdin: {CONTROL_HELP}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Fatal::failure(format!("signal handler: {e}")))?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => match control(&sim, &line) {
                    Ok(done) => println!("ok {done}"),
                    Err(e) => println!("error: {e}; {CONTROL_HELP}"),
                },
                // No controller (stdin closed or not readable): run until a signal.
                Ok(None) | Err(_) => stdin_open = false,
            },
        }
    }
    drop(sim);
    Ok(())
}

/// What the stdin control accepts.
const CONTROL_HELP: &str = "`fault stall|drop|none`, `fault trap MESSAGE`, `session add USER IP`, \
                            `bytes USER IN OUT`";

/// Applies one control line (fault injection and sessions for a demo or an external test).
fn control(sim: &Simulator, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["fault", "stall"] => sim.set_fault(Some(Fault::Stall)),
        ["fault", "drop"] => sim.set_fault(Some(Fault::Drop)),
        ["fault", "none"] => sim.set_fault(None),
        ["fault", "trap", msg @ ..] if !msg.is_empty() => {
            sim.set_fault(Some(Fault::Trap(msg.join(" "))));
        }
        ["session", "add", user, ip] => {
            ip.parse::<std::net::Ipv4Addr>()
                .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
            sim.add_session(user, ip, (0, 0), (0, 0));
        }
        ["bytes", user, rx, tx] => {
            let n = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("{v:?} is not a byte count"))
            };
            sim.set_bytes(user, n(rx)?, n(tx)?);
        }
        _ => return Err(format!("unknown command {line:?}")),
    }
    Ok(line.trim().to_owned())
}
