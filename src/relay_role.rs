//! The relay role: this node's WireGuard key, the relay started on `wg.listen`, RADIUS through
//! the tunnels into the AAA engine, peer and tenant changes applied live from the bus, status
//! persisted, and the transport that reaches tunnel NAS for CoA and the RouterOS API.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relay::handshake::Tai64N;
use relay::server::{DirectoryEntry, PeerDirectory, RadiusSink, RelayHandle};
use saas_core::aaa::events::EffectPublisher;
use saas_core::aaa::{Engine, Request};
use saas_core::bus::{Bus, Next, kinds, next_event, next_of_kind};
use saas_core::config::Config;
use saas_core::ids::{NasId, TenantId};
use saas_core::model::{Nas, PeerStatusUpdate, TunnelState, WgPeer};
use saas_core::store::Store;
use saas_core::transport::{DirectTransport, NasStream, NasTransport, TransportError};
use tokio::sync::watch;

use crate::Fatal;

/// How often peer status is looked at: a new handshake or endpoint is written at once (a
/// restarted relay dials the endpoints it finds), byte counters at most every BYTES_EVERY.
const STATUS_EVERY: Duration = Duration::from_secs(2);
const BYTES_EVERY: Duration = Duration::from_secs(30);
/// How often this node's heartbeat and counters are written for the operator console.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// A handshake older than this means the tunnel is down (WireGuard rekeys every 2 minutes).
const UP_WITHIN: Duration = Duration::from_secs(180);

/// This relay node's key pair: created (and stored sealed) on first use.
pub async fn node_key(
    store: &Store,
    config: &Config,
) -> Result<(relay::x25519::StaticSecret, [u8; 32]), Fatal> {
    let platform = store.platform();
    if let Some((_, private)) = platform.relay_node_keys(&config.relay_node).await? {
        let secret = relay::keys::decode_secret(&private).map_err(|_| {
            Fatal::failure(format!(
                "the stored key of relay node {:?} is not a WireGuard key",
                config.relay_node
            ))
        })?;
        let public = relay::x25519::PublicKey::from(&secret).to_bytes();
        return Ok((secret, public));
    }
    let (secret, public) = relay::keys::generate();
    let endpoint = config.wg_public_endpoint.map(|e| e.to_string());
    platform
        .upsert_relay_node(
            &config.relay_node,
            &relay::keys::encode(public.as_bytes()),
            &relay::keys::encode(&secret.to_bytes()),
            endpoint.as_deref(),
        )
        .await?;
    tracing::info!(node = %config.relay_node, "relay node key pair created");
    Ok((secret, public.to_bytes()))
}

/// Whether the base domain is a real, public one (then routers may dial `SLUG.relay.<base>`).
pub fn real_domain(base: &str) -> bool {
    let b = base.trim_end_matches('.').to_ascii_lowercase();
    ![
        "localhost",
        "test",
        "example",
        "invalid",
        "local",
        "internal",
    ]
    .iter()
    .any(|tld| b == *tld || b.ends_with(&format!(".{tld}")))
        && !b.ends_with("example.com")
        && !b.ends_with("example.net")
        && !b.ends_with("example.org")
}

/// The relay's tunnel address for a peer: the .1 of the peer's subnet.
pub fn relay_tunnel_address(peer_cidr: &str) -> Option<Ipv4Addr> {
    let net: ipnet::Ipv4Net = peer_cidr.parse().ok()?;
    net.hosts().next()
}

/// The DESIGN §8 peer object.
pub fn peer_object(
    config: &Config,
    slug: &str,
    nas: &Nas,
    peer: &WgPeer,
    relay_public: &[u8; 32],
) -> serde_json::Value {
    let endpoint = config.wg_public_endpoint;
    serde_json::json!({
        "id": peer.id,
        "tenant": slug,
        "nas": nas.name,
        "public_key": peer.public_key,
        "relay_public_key": relay::keys::encode(relay_public),
        "tunnel_address": peer.tunnel_address,
        "relay_tunnel_address": relay_tunnel_address(&peer.tunnel_address).map(|a| a.to_string()),
        "relay_endpoint_ip": endpoint.map(|e| e.ip().to_string()),
        "relay_endpoint_port": endpoint.map(|e| e.port()),
        "relay_endpoint_host": real_domain(&config.base_domain)
            .then(|| format!("{slug}.relay.{}", config.base_domain)),
        "remote_endpoint": peer.endpoint,
        "last_handshake": peer.last_handshake,
        "rx_bytes": peer.rx_bytes,
        "tx_bytes": peer.tx_bytes,
    })
}

/// What the RouterOS script needs beyond the peer object.
pub struct ScriptInput<'a> {
    /// The peer object.
    pub peer: &'a serde_json::Value,
    /// The router's private key, when we generated it (else the router keeps its own).
    pub private_key: Option<&'a str>,
    /// NAS RADIUS secret.
    pub radius_secret: &'a str,
    /// CoA port on the router.
    pub coa_port: u16,
    /// API login the platform uses.
    pub api_user: &'a str,
    /// Its password.
    pub api_password: &'a str,
    /// Acct-Interim-Interval in seconds.
    pub interim_s: u32,
}

fn ros_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' | '$' | '?' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The RouterOS v7 script a tenant pastes once into the router.
pub fn routeros_script(i: &ScriptInput<'_>) -> String {
    let p = i.peer;
    let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
    let relay_ip = s("relay_tunnel_address");
    let host = p["relay_endpoint_host"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| s("relay_endpoint_ip"));
    let port = p["relay_endpoint_port"].as_u64().unwrap_or(51820);
    let tunnel = s("tunnel_address");
    let router_ip = tunnel.split('/').next().unwrap_or_default().to_owned();
    let (key, key_note) = match i.private_key {
        Some(k) => (format!(" private-key={}", ros_quote(k)), ""),
        // Without the key (the router brought its own, or ours was shown only once) a new
        // interface would get a key the relay does not know: the script says so.
        None => (
            String::new(),
            "# No WireGuard private key here: the router keeps the key of its interface \"proxpanel\" (its public key is the one registered with ProxPanel); on a router without it, add this router again for a new key pair.\n",
        ),
    };
    let coa = i.coa_port;
    format!(
        r#"# ProxPanel: WireGuard tunnel, RADIUS and API access for NAS {nas} of {tenant}.
# Paste once into a RouterOS v7 terminal. Everything it adds carries the comment "proxpanel".
{key_note}/interface wireguard add name=proxpanel listen-port=13231 mtu=1420{key} comment="proxpanel"
/interface wireguard peers add interface=proxpanel public-key={relay_pub} endpoint-address={host} endpoint-port={port} allowed-address={relay_ip}/32 persistent-keepalive=25s comment="proxpanel relay"
/ip address add address={tunnel} interface=proxpanel comment="proxpanel"
# Only the platform may reach the router through the tunnel: API, API-SSL, CoA and ping.
/ip firewall filter add chain=input in-interface=proxpanel src-address={relay_ip} protocol=tcp dst-port=8728,8729 action=accept comment="proxpanel API"
/ip firewall filter add chain=input in-interface=proxpanel src-address={relay_ip} protocol=udp dst-port={coa} action=accept comment="proxpanel CoA"
/ip firewall filter add chain=input in-interface=proxpanel src-address={relay_ip} protocol=icmp action=accept comment="proxpanel ping"
/ip firewall filter add chain=input in-interface=proxpanel action=drop comment="proxpanel drop rest"
:foreach r in=[/ip firewall filter find where comment~"^proxpanel (API|CoA|ping|drop rest)"] do={{ /ip firewall filter move $r destination=0 }}
/radius add address={relay_ip} secret={secret} service=ppp,hotspot,login src-address={router_ip} timeout=3s comment="proxpanel"
# Message-Authenticator on every request when RouterOS supports it (7.15 and later).
:local v [/system resource get version]
:local dot [:find $v "."]
:local major [:tonum [:pick $v 0 $dot]]
:local rest [:pick $v ($dot + 1) [:len $v]]
:local end [:find $rest "."]
:if ([:typeof $end] = "nil") do={{ :set end [:find $rest " "] }}
:if ([:typeof $end] = "nil") do={{ :set end [:len $rest] }}
:local minor [:tonum [:pick $rest 0 $end]]
:if (($major > 7) || (($major = 7) && ($minor >= 15))) do={{ /radius set [find comment="proxpanel"] require-message-auth=yes-for-request-resp }}
/radius incoming set accept=yes port={coa}
/ppp aaa set use-radius=yes accounting=yes interim-update={interim}s
/certificate add name=proxpanel-api common-name=proxpanel-api days-valid=3650 key-usage=digital-signature,key-encipherment,tls-server
/certificate sign proxpanel-api
/ip service set api-ssl certificate=proxpanel-api address={relay_ip}/32 disabled=no
/ip service set api address={relay_ip}/32 disabled=no
/user group add name=proxpanel-api policy=api,read,write comment="proxpanel"
/user add name={api_user} group=proxpanel-api password={api_password} address={relay_ip}/32 comment="proxpanel"
"#,
        nas = s("nas"),
        tenant = s("tenant"),
        relay_pub = ros_quote(&s("relay_public_key")),
        secret = ros_quote(i.radius_secret),
        api_user = ros_quote(i.api_user),
        api_password = ros_quote(i.api_password),
        interim = i.interim_s,
    )
}

/// RADIUS from the tunnels into the engine; effects published like the direct listeners'.
struct Sink {
    engine: Arc<Engine>,
    events: EffectPublisher,
}

#[async_trait]
impl RadiusSink for Sink {
    async fn handle(
        &self,
        tenant: TenantId,
        nas: NasId,
        source: SocketAddr,
        datagram: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let out = self
            .engine
            .handle(Request {
                tenant,
                nas,
                source,
                datagram: &datagram,
                now: saas_core::store::now(),
            })
            .await;
        self.events.publish(tenant, out.effects);
        out.reply
    }
}

/// Keys the relay has not loaded, looked up through the system scope.
struct Directory {
    store: Store,
}

#[async_trait]
impl PeerDirectory for Directory {
    async fn lookup(&self, public_key: &[u8; 32]) -> Option<DirectoryEntry> {
        let key = relay::keys::encode(public_key);
        match self.store.system().peer_by_public_key(&key).await {
            Ok(Some(identity)) => Some(DirectoryEntry {
                identity,
                handshake_tai64: None,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "peer lookup failed");
                None
            }
        }
    }
}

/// Reaches tunnel NAS through the relay and direct NAS with plain sockets.
#[derive(Debug, Clone)]
pub struct Transport {
    relay: Option<RelayHandle>,
}

impl Transport {
    /// Through `relay` when this process runs it.
    pub fn new(relay: Option<RelayHandle>) -> Self {
        Self { relay }
    }

    /// Whether this process holds the path to a NAS: any direct NAS; a tunnel NAS only where
    /// the relay holding its peer runs (another node answers for the other tunnels).
    pub fn reaches(&self, nas: &Nas) -> bool {
        nas.ip.is_some()
            || self
                .relay
                .as_ref()
                .is_some_and(|r| r.relay().peer_of_nas(nas.id).is_some())
    }

    /// [`Transport::reaches`] as a shareable predicate (for the NAS health poller).
    pub fn reach_check(&self) -> Arc<dyn Fn(&Nas) -> bool + Send + Sync> {
        let t = self.clone();
        Arc::new(move |n: &Nas| t.reaches(n))
    }
}

#[async_trait]
impl NasTransport for Transport {
    async fn udp_exchange(
        &self,
        tenant: TenantId,
        nas: &Nas,
        port: u16,
        request: &[u8],
        timeout: Duration,
        accept: &(dyn for<'b> Fn(&'b [u8]) -> bool + Send + Sync),
    ) -> Result<Vec<u8>, TransportError> {
        match (&self.relay, nas.ip) {
            (Some(r), None) => {
                r.udp_exchange(tenant, nas, port, request, timeout, accept)
                    .await
            }
            _ => {
                DirectTransport
                    .udp_exchange(tenant, nas, port, request, timeout, accept)
                    .await
            }
        }
    }

    async fn tcp_connect(
        &self,
        tenant: TenantId,
        nas: &Nas,
        port: u16,
        timeout: Duration,
    ) -> Result<NasStream, TransportError> {
        match (&self.relay, nas.ip) {
            (Some(r), None) => r.tcp_connect(tenant, nas, port, timeout).await,
            _ => {
                DirectTransport
                    .tcp_connect(tenant, nas, port, timeout)
                    .await
            }
        }
    }
}

fn tai64(bytes: Option<&[u8]>) -> Option<Tai64N> {
    bytes.and_then(Tai64N::from_slice)
}

/// Loads every peer into the relay (this node's and those of no node) and starts handshakes to
/// the endpoints routers were last seen at, so API and CoA paths come back without waiting.
async fn load_peers(relay: &RelayHandle, store: &Store, node: &str) -> Result<usize, Fatal> {
    let peers = store.system().relay_peers().await?;
    let mut n = 0;
    for p in peers {
        if p.relay_node.as_deref().is_some_and(|r| r != node) {
            continue;
        }
        let Ok(key) = relay::keys::decode(&p.public_key) else {
            tracing::warn!(peer = %p.identity.peer_id, "stored public key is not a WireGuard key; skipped");
            continue;
        };
        if let Err(e) = relay.upsert_peer(key, &p.identity, tai64(p.handshake_tai64.as_deref())) {
            tracing::warn!(peer = %p.identity.peer_id, error = %e, "peer not loaded");
            continue;
        }
        n += 1;
        if let Some(ep) = p
            .endpoint
            .as_deref()
            .and_then(|e| e.parse::<SocketAddr>().ok())
        {
            relay.connect(&key, ep).await;
        }
    }
    Ok(n)
}

/// Starts the relay on its socket; returns the handle (a `NasTransport`).
pub async fn start(
    ctx: &crate::context::Context,
    socket: tokio::net::UdpSocket,
    engine: Arc<Engine>,
    events: EffectPublisher,
    metrics: &saas_core::metrics::Metrics,
    tasks: &mut tokio::task::JoinSet<()>,
    stop: watch::Receiver<bool>,
) -> Result<RelayHandle, Fatal> {
    let (secret, public) = node_key(&ctx.store, &ctx.config).await?;
    let c = &ctx.config;
    // The key is made once, but PROXPANEL_WG_PUBLIC_ENDPOINT may change between starts: the
    // node's row follows it, and DNS (SLUG.relay.<base>) with it.
    let endpoint = c.wg_public_endpoint.map(|e| e.to_string());
    if ctx
        .store
        .platform()
        .set_relay_endpoint(&c.relay_node, endpoint.as_deref())
        .await?
    {
        tracing::info!(node = %c.relay_node, endpoint = ?endpoint, "relay endpoint changed");
        if let Err(e) = ctx
            .platform
            .bus()
            .publish(
                None,
                saas_core::bus::kinds::DNS_CHANGED,
                &serde_json::json!({"relay_node": c.relay_node}),
            )
            .await
        {
            tracing::warn!(error = %e, "could not announce the relay endpoint change; DNS picks it up on its next reload");
        }
    }
    let config = relay::relay::RelayConfig {
        handshakes_per_second: c.wg_handshake_rate,
        source_handshakes_per_second: c.wg_source_handshake_rate,
        source_handshake_burst: c.wg_source_handshake_rate.saturating_mul(2),
        tenant_handshakes_per_second: c.wg_tenant_handshake_rate,
        tenant_handshake_burst: c.wg_tenant_handshake_rate.saturating_mul(2),
        drain_window: Duration::from_secs(c.wg_drain_s),
        ..Default::default()
    };
    let sink = Arc::new(Sink { engine, events });
    let directory = Arc::new(Directory {
        store: ctx.store.clone(),
    });
    let relay = metrics.with_registry(|r| {
        RelayHandle::start(
            config,
            secret,
            socket,
            sink,
            Some(directory),
            r.sub_registry_with_prefix("relay"),
        )
    });
    let n = load_peers(&relay, &ctx.store, &c.relay_node).await?;
    tracing::info!(
        public_key = %relay::keys::encode(&public),
        peers = n,
        node = %c.relay_node,
        "WireGuard relay ready"
    );
    tasks.spawn(follow_changes(
        ctx.platform.bus().clone(),
        ctx.store.clone(),
        relay.clone(),
        c.relay_node.clone(),
        stop.clone(),
    ));
    tasks.spawn(report_stats(
        ctx.store.clone(),
        relay.clone(),
        c.relay_node.clone(),
        stop.clone(),
    ));
    tasks.spawn(persist_status(ctx.store.clone(), relay.clone(), stop));
    Ok(relay)
}

/// Heartbeat of this node with its counters (peers, handshakes, drops by stage), which the
/// operator console of any node shows; the first one at start.
async fn report_stats(
    store: Store,
    relay: RelayHandle,
    node: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(REPORT_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let stats = relay.relay().metrics().stats();
        match store.platform().report_relay_stats(&node, &stats).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!(%node, "relay node not registered; stats not reported"),
            Err(e) => tracing::debug!(error = %e, "could not report relay stats"),
        }
    }
}

/// Applies peer and tenant changes without a restart; other peers are left alone.
async fn follow_changes(
    bus: Bus,
    store: Store,
    relay: RelayHandle,
    node: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = bus.subscribe();
    loop {
        let ev = match next_event(&mut rx, &mut stop).await {
            Next::Event(ev) => Some(ev),
            Next::Lagged => None,
            Next::Stopped => break,
        };
        let Some(ev) = ev else {
            // Missed events: reload every peer (upsert is idempotent).
            if let Err(e) = load_peers(&relay, &store, &node).await {
                tracing::warn!(error = %e.message, "could not reload peers");
            }
            continue;
        };
        match (ev.kind.as_str(), ev.tenant_id) {
            (kinds::PEER_CHANGED, Some(_)) => {
                let v: serde_json::Value = serde_json::from_str(&ev.payload).unwrap_or_default();
                let Some(key) = v["public_key"]
                    .as_str()
                    .and_then(|k| relay::keys::decode(k).ok())
                else {
                    continue;
                };
                match store
                    .system()
                    .peer_by_public_key(&relay::keys::encode(&key))
                    .await
                {
                    Ok(Some(identity)) => {
                        if let Err(e) = relay.upsert_peer(key, &identity, None) {
                            tracing::warn!(error = %e, "peer change not applied");
                        }
                    }
                    Ok(None) => {
                        relay.remove_peer(&key);
                    }
                    Err(e) => tracing::warn!(error = %e, "peer lookup failed"),
                }
            }
            (kinds::TENANT_CHANGED, Some(t)) => match store.system().tenant_by_id(t).await {
                Ok(Some(tenant)) => relay.set_tenant_status(t, tenant.status, tenant.suspended_at),
                Ok(None) => {
                    relay.set_tenant_status(t, saas_core::model::TenantStatus::Deleted, None)
                }
                Err(e) => tracing::warn!(error = %e, "tenant lookup failed"),
            },
            _ => {}
        }
    }
}

/// Writes each peer's status (like `wg show`) and its NAS's tunnel state periodically.
async fn persist_status(store: Store, relay: RelayHandle, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(STATUS_EVERY);
    let mut last = std::collections::HashMap::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        for st in relay.status() {
            let up = st.last_handshake.is_some_and(|h| {
                (saas_core::store::now() - h)
                    .to_std()
                    .is_ok_and(|age| age < UP_WITHIN)
            });
            let state = match (st.last_handshake, up) {
                (None, _) => TunnelState::Waiting,
                (Some(_), true) => TunnelState::Up,
                (Some(_), false) => TunnelState::Down,
            };
            let update = PeerStatusUpdate {
                last_handshake: st.last_handshake,
                endpoint: st.endpoint.map(|e| e.to_string()),
                rx_bytes: i64::try_from(st.rx_bytes).unwrap_or(i64::MAX),
                tx_bytes: i64::try_from(st.tx_bytes).unwrap_or(i64::MAX),
                handshake_tai64: st.handshake_tai64.map(Tai64N::to_bytes),
                state,
            };
            let same_state = |(u, _): &(PeerStatusUpdate, std::time::Instant)| {
                u.last_handshake == update.last_handshake
                    && u.endpoint == update.endpoint
                    && u.state == update.state
                    && u.handshake_tai64 == update.handshake_tai64
            };
            if last.get(&st.peer_id).is_some_and(|x| {
                same_state(x)
                    && (x.1.elapsed() < BYTES_EVERY
                        || (x.0.rx_bytes, x.0.tx_bytes) == (update.rx_bytes, update.tx_bytes))
            }) {
                continue;
            }
            match store
                .tenant(st.tenant_id)
                .record_peer_status(st.peer_id, &update)
                .await
            {
                Ok(()) => {
                    last.insert(st.peer_id, (update, std::time::Instant::now()));
                }
                Err(e) => tracing::debug!(error = %e, "could not record peer status"),
            }
        }
    }
}

/// Checks one NAS's RouterOS API through `transport`: connect (TLS with the pinned certificate
/// when API-SSL), log in, identity, resources and one round trip. Always an answer: failures
/// carry `ok: false` and the error, worded for the admin.
pub async fn check_nas(
    transport: &dyn NasTransport,
    scope: &saas_core::TenantScope,
    nas: &Nas,
) -> serde_json::Value {
    match saas_core::routeros::check_nas(
        transport,
        scope,
        nas,
        saas_core::routeros::DEFAULT_TIMEOUT,
    )
    .await
    {
        Ok(r) => serde_json::json!({
            "nas": nas.id,
            "ok": true,
            "api": "ok",
            "identity": r.identity,
            "version": r.resource.version,
            "board": r.resource.board_name,
            "uptime": r.resource.uptime,
            "cpu_load": r.resource.cpu_load,
            "rtt_ms": r.rtt_ms,
            "login_ms": r.connected.login_ms,
            "port": r.connected.port,
            "tls": r.connected.tls,
            "fingerprint": r.connected.fingerprint,
            "pinned_now": r.connected.pinned_now,
        }),
        Err(e) => serde_json::json!({
            "nas": nas.id,
            "ok": false,
            "api": "error",
            "port": if nas.use_ssl { nas.api_ssl_port } else { nas.api_port },
            "tls": nas.use_ssl,
            "error": e.to_string(),
        }),
    }
}

/// Answers `nas.check` requests for NAS this process can reach: tunnel NAS only where the
/// relay runs (another node holds the other tunnels), direct NAS anywhere.
pub async fn answer_nas_checks(
    bus: Bus,
    store: Store,
    transport: Transport,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = bus.subscribe();
    while let Some(ev) = next_of_kind(&mut rx, &mut stop, kinds::NAS_CHECK).await {
        let Some(tenant) = ev.tenant_id else { continue };
        let v: serde_json::Value = serde_json::from_str(&ev.payload).unwrap_or_default();
        let Some(nas_id) = v["nas"].as_str().and_then(|s| s.parse().ok()).map(NasId) else {
            continue;
        };
        let (bus, store, transport) = (bus.clone(), store.clone(), transport.clone());
        tokio::spawn(async move {
            let Ok(Some(nas)) = store.tenant(tenant).nas(nas_id).await else {
                return;
            };
            if !transport.reaches(&nas) {
                // Not our tunnel: the node holding it answers.
                return;
            }
            let result = check_nas(&transport, &store.tenant(tenant), &nas).await;
            if let Err(e) = bus.respond(&ev, kinds::NAS_CHECK_RESULT, &result).await {
                tracing::warn!(error = %e, "could not answer nas.check");
            }
        });
    }
}

/// Answers `sessions.live` requests: the tenant's open sessions with what each reachable
/// router's API says about them.
pub async fn answer_live_sessions(
    bus: Bus,
    store: Store,
    transport: Transport,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = bus.subscribe();
    while let Some(ev) = next_of_kind(&mut rx, &mut stop, kinds::SESSIONS_LIVE).await {
        let Some(tenant) = ev.tenant_id else { continue };
        let (bus, store, transport) = (bus.clone(), store.clone(), transport.clone());
        tokio::spawn(async move {
            let scope = store.tenant(tenant);
            let reach = transport.reach_check();
            let payload = match saas_core::routeros::live_sessions(
                &transport,
                &scope,
                reach.as_ref(),
                saas_core::routeros::DEFAULT_TIMEOUT,
            )
            .await
            {
                Ok((items, errors)) => serde_json::json!({
                    "items": items,
                    "next_cursor": null,
                    "nas_errors": errors.into_iter().map(|(nas, error)| serde_json::json!({"nas": nas, "error": error})).collect::<Vec<_>>(),
                }),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            };
            if let Err(e) = bus
                .respond(&ev, kinds::SESSIONS_LIVE_RESULT, &payload)
                .await
            {
                tracing::warn!(error = %e, "could not answer sessions.live");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_domains_only() {
        assert!(real_domain("saas.isp-cloud.net"));
        for d in [
            "saas.localhost",
            "x.test",
            "example.com",
            "saas.example.com",
            "a.local",
        ] {
            assert!(!real_domain(d), "{d}");
        }
    }

    #[test]
    fn relay_is_dot_one_of_the_peer_subnet() {
        assert_eq!(
            relay_tunnel_address("10.200.0.7/24"),
            Some(Ipv4Addr::new(10, 200, 0, 1))
        );
        assert_eq!(
            relay_tunnel_address("172.16.8.9/22"),
            Some(Ipv4Addr::new(172, 16, 8, 1))
        );
        assert_eq!(relay_tunnel_address("nonsense"), None);
    }

    #[test]
    fn script_quotes_secrets_and_limits_access_to_the_relay() {
        let peer = serde_json::json!({
            "nas": "core", "tenant": "acme", "relay_public_key": "PUB=",
            "relay_tunnel_address": "10.200.0.1", "relay_endpoint_ip": "203.0.113.10",
            "relay_endpoint_port": 51820, "relay_endpoint_host": null,
            "tunnel_address": "10.200.0.2/24",
        });
        let s = routeros_script(&ScriptInput {
            peer: &peer,
            private_key: Some("PRIV="),
            radius_secret: "s\"e$c?r\\et",
            coa_port: 1700,
            api_user: "proxpanel",
            api_password: "pw",
            interim_s: 300,
        });
        // RouterOS string escapes: a secret cannot break out of its quotes or expand a variable.
        assert!(s.contains(r#"secret="s\"e\$c\?r\\et""#), "{s}");
        assert!(s.contains("private-key=\"PRIV=\""));
        assert!(s.contains("endpoint-address=203.0.113.10 endpoint-port=51820"));
        assert!(s.contains("persistent-keepalive=25s"));
        assert!(s.contains("src-address=10.200.0.1 protocol=udp dst-port=1700 action=accept"));
        assert!(s.contains("in-interface=proxpanel action=drop"));
        assert!(s.contains("/radius incoming set accept=yes port=1700"));
        assert!(s.contains("interim-update=300s"));
        assert!(s.contains("require-message-auth=yes-for-request-resp"));
        assert!(s.contains("($minor >= 15)"));
        assert!(s.contains("policy=api,read,write"));
        assert!(s.contains("address=10.200.0.1/32 comment=\"proxpanel\""));
        // Without a generated key the router keeps its own.
        let s = routeros_script(&ScriptInput {
            peer: &peer,
            private_key: None,
            radius_secret: "x",
            coa_port: 3799,
            api_user: "u",
            api_password: "p",
            interim_s: 60,
        });
        assert!(!s.contains("private-key"));
        assert!(s.contains("# No WireGuard private key here"), "{s}");
    }
}
