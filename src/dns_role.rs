//! The `dns` role: binds UDP and TCP on `PROXPANEL_DNS_LISTEN`, builds the zone from the store
//! and keeps it current from the bus (the `dns` crate does the work; this only wires it).

use std::net::SocketAddr;

use dns::{DnsMetrics, DnsServer, ServerSettings, Zone, ZoneSettings};
use saas_core::config::Config;
use saas_core::metrics::Metrics;
use tokio::sync::watch;

use crate::context::Context;
use crate::{Fatal, ports};

/// The zone settings from the configuration.
pub fn zone_settings(c: &Config) -> ZoneSettings {
    ZoneSettings {
        base: c.base_domain.clone(),
        nameservers: c.dns_nameservers.clone(),
        ingress: c.ingress_addrs.clone(),
        default_relay: c.wg_public_endpoint.map(|e| e.ip()),
        ttl: 300,
    }
}

/// Binds UDP then TCP on the same port (port 0 picks one free for both).
pub async fn bind(
    addr: SocketAddr,
) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener), Fatal> {
    let what = "DNS listener";
    let udp = ports::bind_udp(addr, what, "PROXPANEL_DNS_LISTEN").await?;
    let actual = udp
        .local_addr()
        .map_err(|e| Fatal::failure(format!("DNS listener: {e}")))?;
    let tcp = ports::bind_tcp(actual, what, "PROXPANEL_DNS_LISTEN").await?;
    Ok((udp, tcp))
}

/// Starts the DNS role on bound sockets.
pub async fn start(
    ctx: &Context,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    metrics: &Metrics,
    tasks: &mut tokio::task::JoinSet<()>,
    stop: watch::Receiver<bool>,
) -> Result<(), Fatal> {
    let settings = zone_settings(&ctx.config);
    let data = dns::load_zone_data(&ctx.store).await?;
    let zone = Zone::build(&settings, &data, dns::next_serial(0))
        .map_err(|e| Fatal::usage(e.to_string()))?;
    for s in zone.skipped() {
        tracing::warn!(record = %s, "dns: record not served");
    }
    let addr = udp.local_addr().ok();
    tracing::info!(
        listen = ?addr,
        zone = %settings.base,
        serial = zone.serial(),
        names = zone.names(),
        "DNS listener (UDP and TCP)"
    );
    let m = metrics.with_registry(DnsMetrics::register);
    let rrl = ctx.config.dns_rrl;
    let server = DnsServer::new(
        zone,
        ServerSettings {
            secondaries: ctx.config.dns_secondaries.clone(),
            rrl_per_second: (rrl > 0).then_some(rrl),
            notify_port: 53,
        },
        m,
    );
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    tasks.spawn(server.clone().serve_udp(udp, workers, stop.clone()));
    tasks.spawn(server.clone().serve_tcp(tcp, stop.clone()));
    tasks.spawn(dns::live::follow(
        server,
        settings,
        ctx.store.clone(),
        ctx.platform.bus().clone(),
        stop,
    ));
    Ok(())
}
