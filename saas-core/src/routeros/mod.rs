//! The MikroTik RouterOS API: wire codec ([`wire`]), async client ([`client`]), API-SSL with a
//! pinned certificate ([`tls`]), the platform's rules for reaching a NAS ([`connect_nas`]) and a
//! simulator of a router's API for tests and demos ([`sim`]).

pub mod client;
pub mod health;
pub mod quota;
pub mod sim;
pub mod tls;
pub mod wire;
pub mod workers;

use std::time::{Duration, Instant};

pub use client::Client;

use crate::model::{Nas, NasReach};
use crate::store::{StoreError, TenantScope};
use crate::transport::{NasTransport, TransportError};

/// Failures talking to a router's API. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum RosError {
    /// The NAS could not be reached.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Socket error.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes that are not the RouterOS API.
    #[error("not a RouterOS API answer: {0}")]
    Wire(#[from] wire::WireError),
    /// A well-formed but unexpected answer.
    #[error("unexpected RouterOS answer: {0}")]
    Protocol(String),
    /// No complete answer in time.
    #[error("{what}: no answer from the router within {after:?}")]
    Timeout {
        /// Command path.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// Wrong API user name or password.
    #[error(
        "the router refused the API login ({0}); check the API user and password (`proxpanel nas add --api-user/--api-password`, or the router's /user)"
    )]
    LoginFailed(String),
    /// The command failed on the router.
    #[error("the router refused the command: {message}")]
    Trap {
        /// `=category=` of the trap, when given.
        category: Option<u32>,
        /// `=message=`.
        message: String,
    },
    /// The router ended the session.
    #[error("the router ended the API session: {0}")]
    Fatal(String),
    /// The connection is gone.
    #[error("API connection lost: {0}")]
    Closed(String),
    /// TLS handshake failure.
    #[error("API-SSL handshake failed: {0}")]
    Tls(String),
    /// The router shows a different certificate than the pinned one.
    #[error(
        "the router's API-SSL certificate changed (pinned SHA-256 {pinned}, presented {presented}); if the router's certificate was really replaced, re-pin it with `proxpanel nas pin --tenant SLUG --nas NAME`"
    )]
    CertificateChanged {
        /// Pinned fingerprint.
        pinned: String,
        /// Presented fingerprint.
        presented: String,
    },
    /// Plain API to a NAS outside the tunnel.
    #[error(
        "NAS {0} is reached directly, and the plain RouterOS API sends the password in clear: enable api-ssl on the router and use `--api-tls` (port 8729), or connect the NAS through the WireGuard relay"
    )]
    PlainRefused(String),
    /// No API user or password stored.
    #[error(
        "NAS {0} has no RouterOS API login; set one with `proxpanel nas add ... --api-user U --api-password P`"
    )]
    NoCredentials(String),
    /// Reading credentials or the pin failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RosError {
    pub(crate) fn closed(why: &str) -> Self {
        Self::Closed(why.to_owned())
    }
}

/// Decodes every sentence in `data` as replies, re-encodes each and checks the round trip: the
/// fuzz target's body (`fuzz/fuzz_targets/routeros_decode.rs`) and its corpus replay. Returns
/// how many sentences were decoded.
///
/// # Errors
/// The first decoding error, as text.
pub fn fuzz_decode(data: &[u8]) -> Result<usize, String> {
    let mut at = 0;
    let mut n = 0;
    while at < data.len() {
        let Some((s, used)) = wire::Sentence::decode(&data[at..]).map_err(|e| e.to_string())?
        else {
            return Err("truncated sentence".into());
        };
        at += used;
        n += 1;
        let bytes = s.encode().map_err(|e| e.to_string())?;
        let (again, _) = wire::Sentence::decode(&bytes)
            .map_err(|e| e.to_string())?
            .ok_or("re-encoded sentence incomplete")?;
        assert_eq!(again, s, "sentence round trip");
        let reply = wire::Reply::parse(s.clone()).map_err(|e| e.to_string())?;
        let _ = wire::Command::parse(&s);
        // A reply re-encoded from its parts parses to the same reply.
        assert_eq!(
            wire::Reply::parse(reply.sentence()).map_err(|e| e.to_string())?,
            reply
        );
    }
    Ok(n)
}

/// How the platform reached a NAS's API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Connected {
    /// TCP port used.
    pub port: u16,
    /// API-SSL used.
    pub tls: bool,
    /// Certificate fingerprint (API-SSL).
    pub fingerprint: Option<String>,
    /// The certificate was pinned by this connection (first use).
    pub pinned_now: bool,
    /// Time to connect and log in.
    pub login_ms: u64,
}

/// How long one connection attempt and each command may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to a NAS's API through `transport` and logs in, enforcing the platform's rules:
/// plain API only inside the tunnel; API-SSL certificates pinned on first use and refused when
/// they change.
///
/// # Errors
/// [`RosError::PlainRefused`], [`RosError::NoCredentials`], [`RosError::CertificateChanged`],
/// and whatever the connection or login returns.
pub async fn connect_nas(
    transport: &dyn NasTransport,
    scope: &TenantScope,
    nas: &Nas,
    timeout: Duration,
) -> Result<(Client, Connected), RosError> {
    if nas.reach == NasReach::Direct && !nas.use_ssl {
        return Err(RosError::PlainRefused(nas.name.clone()));
    }
    let (Some(user), Some(password)) = (
        nas.api_user.as_deref(),
        scope.nas_api_password(nas.id).await?,
    ) else {
        return Err(RosError::NoCredentials(nas.name.clone()));
    };
    let port = if nas.use_ssl {
        nas.api_ssl_port
    } else {
        nas.api_port
    };
    let started = Instant::now();
    let stream = transport
        .tcp_connect(scope.tenant_id(), nas, port, timeout)
        .await?;
    let ms = |s: Instant| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX);
    if !nas.use_ssl {
        let client = Client::login(stream, user, &password, timeout).await?;
        return Ok((
            client,
            Connected {
                port,
                tls: false,
                fingerprint: None,
                pinned_now: false,
                login_ms: ms(started),
            },
        ));
    }
    let pinned = scope.nas_api_pin(nas.id).await?;
    let tls = tokio::time::timeout(timeout, tls::connect(stream, pinned.as_deref()))
        .await
        .map_err(|_| RosError::Timeout {
            what: "API-SSL handshake".into(),
            after: timeout,
        })??;
    // Log in before pinning: a certificate is only remembered for a router that knows our login.
    let fingerprint = tls.fingerprint.clone();
    let client = Client::login(tls.stream, user, &password, timeout).await?;
    let mut pinned_now = false;
    if pinned.is_none() {
        pinned_now = scope.pin_nas_api_first_use(nas.id, &fingerprint).await?;
        if pinned_now {
            tracing::info!(nas = %nas.id, fingerprint = %fingerprint, "API-SSL certificate pinned on first use");
        } else if scope.nas_api_pin(nas.id).await?.as_deref() != Some(fingerprint.as_str()) {
            // Another connection pinned a different certificate in the meantime.
            return Err(RosError::CertificateChanged {
                pinned: scope.nas_api_pin(nas.id).await?.unwrap_or_default(),
                presented: fingerprint,
            });
        }
    }
    Ok((
        client,
        Connected {
            port,
            tls: true,
            fingerprint: Some(fingerprint),
            pinned_now,
            login_ms: ms(started),
        },
    ))
}

/// What `proxpanel nas check` reports for a NAS.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    /// The router's identity.
    pub identity: String,
    /// The router's resources (version, uptime, CPU, board).
    pub resource: client::Resource,
    /// How it was reached.
    pub connected: Connected,
    /// Round trip of one `/system/identity/print` on the logged-in connection.
    pub rtt_ms: f64,
}

/// Connects, logs in, reads identity and resources, and times one identity round trip.
///
/// # Errors
/// As [`connect_nas`] and the commands.
pub async fn check_nas(
    transport: &dyn NasTransport,
    scope: &TenantScope,
    nas: &Nas,
    timeout: Duration,
) -> Result<CheckReport, RosError> {
    let (client, connected) = connect_nas(transport, scope, nas, timeout).await?;
    let resource = client.resource().await?;
    let started = Instant::now();
    let identity = client.identity().await?;
    let rtt_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(CheckReport {
        identity,
        resource,
        connected,
        rtt_ms,
    })
}

/// Finds a RADIUS session among a router's `/ppp/active` rows: by Acct-Session-Id (RouterOS
/// shows it as `session-id`), else by user name and framed address.
pub fn find_active<'a>(
    rows: &'a [client::PppActive],
    session: &crate::model::Session,
) -> Option<&'a client::PppActive> {
    rows.iter()
        .find(|r| {
            r.session_id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(&session.acct_session_id))
        })
        .or_else(|| {
            rows.iter().find(|r| {
                r.name == session.username
                    && session
                        .framed_ip
                        .as_deref()
                        .is_none_or(|ip| ip == r.address)
            })
        })
}

/// The disconnect fallback: removes a session from the router's `/ppp/active` through the API
/// (used when a Disconnect-Request got a NAK or no answer). Returns the RouterOS id removed,
/// or `None` when the router no longer has that session.
///
/// # Errors
/// As [`connect_nas`] and the commands.
pub async fn kick_session(
    transport: &dyn NasTransport,
    scope: &TenantScope,
    nas: &Nas,
    session: &crate::model::Session,
    timeout: Duration,
) -> Result<Option<String>, RosError> {
    let (client, _) = connect_nas(transport, scope, nas, timeout).await?;
    let rows = client.ppp_active().await?;
    let Some(row) = find_active(&rows, session) else {
        return Ok(None);
    };
    client.ppp_active_remove(&row.id).await?;
    Ok(Some(row.id.clone()))
}

/// What a router says about one open session right now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveRow {
    /// RouterOS id in `/ppp/active`.
    pub router_id: String,
    /// Uptime as the router prints it.
    pub uptime: String,
    /// Address the router assigned.
    pub address: String,
    /// Bytes from the subscriber (the PPPoE interface's rx).
    pub input_octets: u64,
    /// Bytes to the subscriber.
    pub output_octets: u64,
}

/// An open session and its router's live view (`None`: the router does not have it, or was
/// not asked).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveSession {
    /// The stored session.
    #[serde(flatten)]
    pub session: crate::model::Session,
    /// The router's view.
    pub live: Option<LiveRow>,
}

/// `session list --online --live`: every open session of the tenant with its router's live
/// view, asking each MikroTik NAS (with an API login) that `reachable` allows; NAS that could
/// not be asked are listed with the reason.
///
/// # Errors
/// Store failures; router failures are reported per NAS instead.
pub async fn live_sessions(
    transport: &dyn NasTransport,
    scope: &TenantScope,
    reachable: &(dyn Fn(&Nas) -> bool + Send + Sync),
    timeout: Duration,
) -> Result<(Vec<LiveSession>, Vec<(String, String)>), StoreError> {
    let open = scope.sessions(true, 1000).await?;
    let mut out: Vec<LiveSession> = open
        .into_iter()
        .map(|session| LiveSession {
            session,
            live: None,
        })
        .collect();
    let mut errors = Vec::new();
    for nas in scope.nas_list().await? {
        if !out.iter().any(|s| s.session.nas == nas.id) {
            continue;
        }
        if nas.vendor != crate::model::NasVendor::Mikrotik || nas.api_user.is_none() {
            errors.push((nas.name.clone(), "no RouterOS API login".to_owned()));
            continue;
        }
        if !reachable(&nas) {
            errors.push((nas.name.clone(), "not reachable from this node".to_owned()));
            continue;
        }
        let rows = async {
            let (client, _) = connect_nas(transport, scope, &nas, timeout).await?;
            Ok::<_, RosError>((client.ppp_active().await?, client.interfaces().await?))
        }
        .await;
        let (active, interfaces) = match rows {
            Ok(r) => r,
            Err(e) => {
                errors.push((nas.name.clone(), e.to_string()));
                continue;
            }
        };
        for s in out.iter_mut().filter(|s| s.session.nas == nas.id) {
            let Some(row) = find_active(&active, &s.session) else {
                continue;
            };
            let iface = interfaces
                .iter()
                .find(|i| i.ppp_user() == Some(row.name.as_str()));
            s.live = Some(LiveRow {
                router_id: row.id.clone(),
                uptime: row.uptime.clone(),
                address: row.address.clone(),
                input_octets: iface.map_or(0, |i| i.rx_bytes),
                output_octets: iface.map_or(0, |i| i.tx_bytes),
            });
        }
    }
    Ok((out, errors))
}
