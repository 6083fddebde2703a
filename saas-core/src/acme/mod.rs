//! The certificate of the zone: `<base>` and `*.<base>` from an ACME server (RFC 8555) with
//! DNS-01 answered by our own DNS server, renewed when two thirds of its lifetime have passed.
//!
//! Flow of one issue: account (created once per directory, credentials sealed in the store) →
//! order → the `_acme-challenge.<base>` TXT values written through the managed DNS records (which
//! announce `dns.changed`, so the DNS role serves them) → wait until our DNS server answers them →
//! tell the ACME server to look → finalize with a fresh ECDSA P-256 key → download the chain →
//! store chain and sealed key → `cert.changed`, which every HTTPS listener reloads. The TXT values
//! are removed whatever the outcome. One node at a time renews: it holds the store lease
//! `acme:<base>`.

pub mod probe;
pub mod resolver;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use tokio::sync::watch;

use crate::bus::{Bus, Next, next_event};
use crate::config::{Config, Listen};
use crate::model::StoredCertificate;
use crate::platform::{Actor, Platform, PlatformError};
use crate::store::{Store, StoreError};

pub use resolver::CertResolver;

/// Failures of issuing or loading a certificate; `hint()` says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// The ACME server refused or could not be reached.
    #[error("ACME server: {0}")]
    Acme(#[from] instant_acme::Error),
    /// Our DNS server did not answer the challenge values in time.
    #[error("our DNS server does not answer the challenge TXT {name}: {detail}")]
    DnsNotAnswering {
        /// The record name.
        name: String,
        /// What was missing.
        detail: String,
    },
    /// The ACME server looked and did not accept the challenge.
    #[error("challenge failed: {0}")]
    Challenge(String),
    /// The chain or key is not usable.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the DNS records failed.
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

impl AcmeError {
    /// What an operator should do about it (logged and stored with the error).
    pub fn hint(&self) -> &'static str {
        match self {
            AcmeError::Config(_) => {
                "fix the setting named in the error (PROXPANEL_ACME_*) and restart serve"
            }
            AcmeError::Acme(_) => {
                "check that PROXPANEL_ACME_DIRECTORY is reachable from this node (for a private or test CA also PROXPANEL_ACME_CA_FILE); rate limits clear by themselves; retried with backoff"
            }
            AcmeError::DnsNotAnswering { .. } => {
                "check that the dns role runs (PROXPANEL_ROLES, PROXPANEL_DNS_LISTEN) and that PROXPANEL_DNS_NAMESERVERS name reachable servers; retried with backoff"
            }
            AcmeError::Challenge(_) => {
                "the ACME server could not read the TXT record from our DNS: check that the parent zone delegates <base> to PROXPANEL_DNS_NAMESERVERS (dig NS <base>) and that UDP and TCP port 53 reach them; retried with backoff"
            }
            AcmeError::Certificate(_) => {
                "the ACME server sent an unusable chain; `proxpanel cert renew` asks for a new one"
            }
            AcmeError::Store(_) | AcmeError::Platform(_) => {
                "check that the database is reachable; retried with backoff"
            }
        }
    }
}

/// Event kinds of the certificate manager.
pub mod events {
    /// A new certificate was stored; payload `{name}`. Every HTTPS listener reloads.
    pub const CERT_CHANGED: &str = "cert.changed";
    /// Request: renew now (answered by the node holding the lease).
    pub const CERT_RENEW: &str = "cert.renew";
    /// Result of a `cert.renew`: `{ok, not_after}` or `{ok: false, error, hint}`.
    pub const CERT_RENEW_RESULT: &str = "cert.renew.result";
}

/// Everything one issue needs.
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    /// ACME directory URL.
    pub directory: String,
    /// Account e-mail.
    pub contact: Option<String>,
    /// The zone (`<base>`).
    pub base: String,
    /// Extra PEM roots for the ACME server's HTTPS.
    pub ca_file: Option<PathBuf>,
    /// Our DNS servers that must answer the challenge before the ACME server looks.
    pub dns_servers: Vec<SocketAddr>,
    /// How long to wait for them.
    pub dns_wait: Duration,
    /// How long the ACME server may take to validate, and to issue.
    pub order_timeout: Duration,
}

impl AcmeSettings {
    /// The settings from the configuration; None when ACME is off.
    pub fn from_config(c: &Config) -> Option<Self> {
        let directory = c.acme_directory.clone()?;
        // The servers to ask: our own listener when this configuration runs the DNS role, else
        // every name server of the zone.
        let dns_servers = match c.dns_listen {
            Listen::On(a) if c.has_role("dns") => vec![loopback_if_unspecified(a)],
            _ => c
                .dns_nameservers
                .iter()
                .map(|(_, ip)| SocketAddr::new(*ip, 53))
                .collect(),
        };
        Some(Self {
            directory,
            contact: c.acme_contact.clone(),
            base: c.base_domain.clone(),
            ca_file: c.acme_ca_file.clone(),
            dns_servers,
            dns_wait: Duration::from_secs(120),
            order_timeout: Duration::from_secs(120),
        })
    }

    /// The lease name that makes one node the renewer.
    pub fn lease_name(&self) -> String {
        format!("acme:{}", self.base)
    }
}

fn loopback_if_unspecified(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), a.port())
        }
        _ => a,
    }
}

/// The names the certificate covers.
pub fn names_for(base: &str) -> Vec<String> {
    vec![base.to_owned(), format!("*.{base}")]
}

/// When a certificate valid from `not_before` to `not_after` is renewed: once two thirds of
/// its lifetime have passed (a 90-day certificate at day 60, leaving 30 days for retries).
pub fn renew_at(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> DateTime<Utc> {
    let life = not_after - not_before;
    not_before + life * 2 / 3
}

/// Delay before retry number `failures` (1, 2, ...): doubling from `base`, at most six hours.
pub fn retry_delay(base: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    base.saturating_mul(factor)
        .min(Duration::from_secs(6 * 3600))
}

/// What the leaf certificate of a chain says.
#[derive(Clone, Debug, PartialEq)]
pub struct CertInfo {
    /// Subject alternative names (DNS).
    pub names: Vec<String>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

/// Reads names and validity from the leaf (first) certificate of a PEM chain.
pub fn parse_chain(chain_pem: &str) -> Result<CertInfo, AcmeError> {
    let first = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| AcmeError::Certificate("chain holds no certificate".into()))?
        .map_err(|e| AcmeError::Certificate(format!("chain is not PEM: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref())
        .map_err(|e| AcmeError::Certificate(format!("leaf certificate does not parse: {e}")))?;
    let time = |t: i64| {
        Utc.timestamp_opt(t, 0)
            .single()
            .ok_or_else(|| AcmeError::Certificate("validity out of range".into()))
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    Ok(CertInfo {
        names,
        not_before: time(cert.validity().not_before.timestamp())?,
        not_after: time(cert.validity().not_after.timestamp())?,
    })
}

/// The ACME HTTP client: Mozilla's roots plus the PEM roots of `ca_file`, over rustls with ring.
fn http_client(ca_file: Option<&Path>) -> Result<Box<dyn HttpClient>, AcmeError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(p) = ca_file {
        let bad = |e: String| {
            AcmeError::Config(format!(
                "PROXPANEL_ACME_CA_FILE {}: {e} (expected PEM certificates)",
                p.display()
            ))
        };
        let mut n = 0;
        for c in CertificateDer::pem_file_iter(p).map_err(|e| bad(e.to_string()))? {
            roots
                .add(c.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad("no certificate in the file".into()));
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: HyperClient<_, BodyWrapper<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}

/// The account of this directory: restored from the store, or registered and stored (sealed).
async fn account(store: &Store, s: &AcmeSettings) -> Result<Account, AcmeError> {
    let builder = Account::builder_with_http(http_client(s.ca_file.as_deref())?);
    if let Some(json) = store.platform().acme_account(&s.directory).await? {
        let creds: AccountCredentials = serde_json::from_str(&json)
            .map_err(|e| AcmeError::Config(format!("stored ACME account does not parse: {e}")))?;
        return Ok(builder.from_credentials(creds).await?);
    }
    let contact: Vec<String> = s
        .contact
        .iter()
        .map(|c| {
            if c.starts_with("mailto:") {
                c.clone()
            } else {
                format!("mailto:{c}")
            }
        })
        .collect();
    let contact_refs: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder
        .create(
            &NewAccount {
                contact: &contact_refs,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            s.directory.clone(),
            None,
        )
        .await?;
    let json = serde_json::to_string(&creds)
        .map_err(|e| AcmeError::Config(format!("cannot serialise the ACME account: {e}")))?;
    store
        .platform()
        .save_acme_account(&s.directory, s.contact.as_deref(), &json)
        .await?;
    tracing::info!(directory = %s.directory, account = account.id(), "ACME account registered");
    Ok(account)
}

/// A newly issued certificate.
#[derive(Clone, Debug)]
pub struct Issued {
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// PEM private key (PKCS#8).
    pub key_pem: String,
    /// What the leaf says.
    pub info: CertInfo,
}

/// The actor on audit lines of the challenge records.
fn actor() -> Actor {
    Actor("acme".into())
}

/// Obtains a certificate for `<base>` and `*.<base>` (does not store it).
pub async fn issue(platform: &Platform, s: &AcmeSettings) -> Result<Issued, AcmeError> {
    let account = account(platform.store(), s).await?;
    let names = names_for(&s.base);
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    tracing::info!(names = %names.join(","), order = order.url(), "ACME order placed");

    // The TXT values every pending authorization wants (both names use _acme-challenge.<base>).
    let mut wanted: Vec<(String, String)> = Vec::new();
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a?;
            match a.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Challenge(format!(
                        "authorization is {other:?} before we started"
                    )));
                }
            }
            let ch = a.challenge(ChallengeType::Dns01).ok_or_else(|| {
                AcmeError::Challenge("the ACME server offers no dns-01 challenge".into())
            })?;
            let Identifier::Dns(domain) = ch.identifier().identifier else {
                return Err(AcmeError::Challenge(
                    "non-DNS identifier in the order".into(),
                ));
            };
            wanted.push((
                format!("_acme-challenge.{domain}"),
                ch.key_authorization().dns_value(),
            ));
        }
    }

    let mut added: Vec<(String, String)> = Vec::new();
    let result = async {
        for (name, value) in &wanted {
            platform
                .add_dns_record(name, "TXT", value, Some(60), &actor())
                .await?;
            added.push((name.clone(), value.clone()));
        }
        let mut names_to_check: Vec<&String> = wanted.iter().map(|(n, _)| n).collect();
        names_to_check.sort();
        names_to_check.dedup();
        for name in names_to_check {
            let values: Vec<String> = wanted
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect();
            probe::wait_for_txt(&s.dns_servers, name, &values, s.dns_wait)
                .await
                .map_err(|detail| AcmeError::DnsNotAnswering {
                    name: name.clone(),
                    detail,
                })?;
        }
        tracing::info!(
            records = wanted.len(),
            "challenge TXT records answered by our DNS; asking the ACME server to validate"
        );
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut ch) = a.challenge(ChallengeType::Dns01) {
                ch.set_ready().await?;
            }
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(s.order_timeout);
        let status = order.poll_ready(&retry).await?;
        if status != OrderStatus::Ready {
            // Collect the validation errors the server reported.
            let mut details = Vec::new();
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a?;
                let state = a.refresh().await?;
                for c in &state.challenges {
                    if let Some(e) = &c.error {
                        details.push(e.to_string());
                    }
                }
            }
            return Err(AcmeError::Challenge(format!(
                "order is {status:?}: {}",
                if details.is_empty() {
                    "no detail from the server".to_owned()
                } else {
                    details.join("; ")
                }
            )));
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| AcmeError::Certificate(format!("key generation: {e}")))?;
        let mut params = rcgen::CertificateParams::new(names.clone())
            .map_err(|e| AcmeError::Certificate(format!("CSR: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| AcmeError::Certificate(format!("CSR: {e}")))?;
        order.finalize_csr(csr.der().as_ref()).await?;
        let chain_pem = order.poll_certificate(&retry).await?;
        let info = parse_chain(&chain_pem)?;
        for n in &names {
            if !info.names.contains(n) {
                return Err(AcmeError::Certificate(format!(
                    "issued certificate lacks {n} (has {})",
                    info.names.join(", ")
                )));
            }
        }
        resolver::certified_key(&chain_pem, &key.serialize_pem())?;
        Ok(Issued {
            chain_pem,
            key_pem: key.serialize_pem(),
            info,
        })
    }
    .await;
    // The challenge values are single-use: remove them whatever happened.
    for (name, value) in &added {
        if let Err(e) = platform
            .remove_dns_records(name, "TXT", Some(value), &actor())
            .await
        {
            tracing::warn!(error = %e, record = %name, "could not remove an ACME challenge record; remove it with `proxpanel dns txt clear`");
        }
    }
    result
}

/// Whether the stored certificate needs replacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// No certificate yet.
    Missing,
    /// Two thirds of the lifetime have passed (renewal was due at the time given).
    Renew(DateTime<Utc>),
    /// Good until the renewal time given.
    Valid(DateTime<Utc>),
}

/// The renewal state of a stored certificate at `now`.
pub fn due(c: Option<&StoredCertificate>, names: &[String], now: DateTime<Utc>) -> Due {
    let Some(c) = c else { return Due::Missing };
    let (Some(_), Some(nb), Some(na)) = (&c.chain_pem, c.not_before, c.not_after) else {
        return Due::Missing;
    };
    if names.iter().any(|n| !c.names.contains(n)) {
        // The zone's names changed (another base domain): a new certificate is needed.
        return Due::Missing;
    }
    let at = renew_at(nb, na);
    if now >= at {
        Due::Renew(at)
    } else {
        Due::Valid(at)
    }
}

/// Result of one renewal check.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A new certificate was stored.
    Issued(CertInfo),
    /// The stored one is good until the given renewal time.
    NotDue(DateTime<Utc>),
}

/// Issues and stores a certificate when none is stored, it is due, or `force`; announces it.
pub async fn renew_if_due(
    platform: &Platform,
    s: &AcmeSettings,
    force: bool,
) -> Result<Outcome, AcmeError> {
    let names = names_for(&s.base);
    let stored = platform.store().platform().certificate(&s.base).await?;
    match due(stored.as_ref(), &names, Utc::now()) {
        Due::Valid(at) if !force => return Ok(Outcome::NotDue(at)),
        d => tracing::info!(zone = %s.base, state = ?d, force, "obtaining a certificate"),
    }
    match issue(platform, s).await {
        Ok(i) => {
            platform
                .store()
                .platform()
                .save_certificate(
                    &s.base,
                    &names,
                    &i.chain_pem,
                    &i.key_pem,
                    i.info.not_before,
                    i.info.not_after,
                )
                .await?;
            if let Err(e) = platform
                .bus()
                .publish(None, events::CERT_CHANGED, &json!({"name": s.base}))
                .await
            {
                tracing::warn!(error = %e, "could not announce the new certificate; HTTPS listeners pick it up within a minute");
            }
            Ok(Outcome::Issued(i.info))
        }
        Err(e) => {
            let text = format!("{e} — {}", e.hint());
            if let Err(se) = platform
                .store()
                .platform()
                .record_certificate_error(&s.base, &names, &text)
                .await
            {
                tracing::warn!(error = %se, "could not store the certificate error");
            }
            Err(e)
        }
    }
}

/// Labels of the renewal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `issued` or `failed`.
    pub result: String,
}

/// Certificate metrics.
#[derive(Clone, Debug, Default)]
pub struct AcmeMetrics {
    /// Seconds until the stored certificate expires (negative once expired).
    pub expiry_seconds: Gauge,
    /// Issue and renewal attempts by result.
    pub renewals: Family<ResultLabels, Counter>,
}

impl AcmeMetrics {
    /// Registers the families.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        r.register(
            "certificate_expiry_seconds",
            "Seconds until the zone's certificate expires (negative once expired)",
            m.expiry_seconds.clone(),
        );
        r.register(
            "certificate_renewals",
            "Certificate issue and renewal attempts by result",
            m.renewals.clone(),
        );
        m
    }

    fn set_expiry(&self, not_after: Option<DateTime<Utc>>) {
        if let Some(na) = not_after {
            self.expiry_seconds.set((na - Utc::now()).num_seconds());
        }
    }
}

/// How often the renewer re-checks (and extends its lease).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// How long the lease lasts without being extended.
pub const LEASE_TTL: Duration = Duration::from_secs(600);
/// First retry delay after a failure (doubling up to six hours).
pub const RETRY_BASE: Duration = Duration::from_secs(60);

/// The background renewer of `serve`: every minute the node holding (or taking) the lease
/// checks the stored certificate and renews it when due; failures are retried with backoff.
/// Also answers `cert.renew` requests when it holds the lease.
pub async fn run(
    platform: Platform,
    s: AcmeSettings,
    metrics: AcmeMetrics,
    holder: String,
    mut stop: watch::Receiver<bool>,
) {
    let lease = s.lease_name();
    let bus: Bus = platform.bus().clone();
    let mut rx = bus.subscribe();
    let mut failures = 0u32;
    let mut retry_at = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tracing::info!(zone = %s.base, directory = %s.directory, dns = ?s.dns_servers, "certificate manager started");
    loop {
        let request = tokio::select! {
            _ = tick.tick() => None,
            n = next_event(&mut rx, &mut stop) => match n {
                Next::Event(ev) if ev.kind == events::CERT_RENEW => Some(ev),
                Next::Event(_) | Next::Lagged => continue,
                Next::Stopped => break,
            },
        };
        let store = platform.store().platform();
        match store.try_lease(&lease, &holder, LEASE_TTL).await {
            Ok(true) => {}
            Ok(false) => {
                // Another node renews; keep the gauge current from the store.
                if let Ok(c) = store.certificate(&s.base).await {
                    metrics.set_expiry(c.and_then(|c| c.not_after));
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the certificate lease; retrying in a minute");
                continue;
            }
        }
        let forced = request.is_some();
        if !forced && tokio::time::Instant::now() < retry_at {
            continue;
        }
        let result = tokio::select! {
            r = renew_if_due(&platform, &s, forced) => r,
            _ = stop.wait_for(|v| *v) => break,
        };
        let payload = match &result {
            Ok(Outcome::Issued(info)) => {
                failures = 0;
                metrics
                    .renewals
                    .get_or_create(&ResultLabels {
                        result: "issued".into(),
                    })
                    .inc();
                metrics.set_expiry(Some(info.not_after));
                tracing::info!(zone = %s.base, names = %info.names.join(","), not_after = %info.not_after, renew_at = %renew_at(info.not_before, info.not_after), "certificate issued and stored");
                json!({"ok": true, "issued": true, "not_after": info.not_after})
            }
            Ok(Outcome::NotDue(at)) => {
                failures = 0;
                if let Ok(c) = store.certificate(&s.base).await {
                    metrics.set_expiry(c.and_then(|c| c.not_after));
                }
                tracing::debug!(zone = %s.base, renew_at = %at, "certificate not due");
                json!({"ok": true, "issued": false, "renew_at": at})
            }
            Err(e) => {
                failures += 1;
                metrics
                    .renewals
                    .get_or_create(&ResultLabels {
                        result: "failed".into(),
                    })
                    .inc();
                let delay = retry_delay(RETRY_BASE, failures);
                retry_at = tokio::time::Instant::now() + delay;
                tracing::error!(zone = %s.base, error = %e, failures, retry_in_s = delay.as_secs(), next = e.hint(), "certificate issue/renewal failed");
                json!({"ok": false, "error": e.to_string(), "hint": e.hint()})
            }
        };
        if let Some(ev) = request
            && let Err(e) = bus.respond(&ev, events::CERT_RENEW_RESULT, &payload).await
        {
            tracing::warn!(error = %e, "could not answer cert.renew");
        }
    }
    let _ = platform
        .store()
        .platform()
        .release_lease(&lease, &holder)
        .await;
}

/// Keeps `resolver` serving the stored certificate of `base`: loads it now, then again on every
/// `cert.changed` and at least every minute (a missed event costs a minute at most).
pub async fn follow(
    store: Store,
    bus: Bus,
    base: String,
    resolver: Arc<CertResolver>,
    metrics: AcmeMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = bus.subscribe();
    let mut loaded: Option<DateTime<Utc>> = None;
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    let mut warned = false;
    loop {
        match store.platform().certificate_with_key(&base).await {
            Ok(Some((c, key))) => {
                metrics.set_expiry(c.not_after);
                if c.issued_at != loaded {
                    match c
                        .chain_pem
                        .as_deref()
                        .map(|chain| resolver::certified_key(chain, &key))
                    {
                        Some(Ok(k)) => {
                            resolver.set(k);
                            loaded = c.issued_at;
                            tracing::info!(zone = %base, not_after = ?c.not_after, "HTTPS certificate loaded");
                        }
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "stored certificate is unusable; `proxpanel cert renew` replaces it")
                        }
                        None => {}
                    }
                }
            }
            Ok(None) => {
                if !warned {
                    tracing::warn!(zone = %base, "no certificate stored yet: HTTPS handshakes fail until one is issued (set PROXPANEL_ACME_DIRECTORY on the workers role; `proxpanel cert status`)");
                    warned = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the certificate; retrying"),
        }
        // Wait for the minute tick or a certificate event; other events are skipped here.
        loop {
            tokio::select! {
                _ = tick.tick() => break,
                n = next_event(&mut rx, &mut stop) => match n {
                    Next::Event(ev) if ev.kind == events::CERT_CHANGED => break,
                    Next::Event(_) => continue,
                    Next::Lagged => break,
                    Next::Stopped => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests;
