//! Configuration (DESIGN §7): defaults, then the TOML file, then `PROXPANEL_*` environment
//! variables, then command-line flags. Unknown keys and unknown `PROXPANEL_*` variables are errors.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::store::redact_url;

/// A configuration problem, naming the key and where the value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An unknown `PROXPANEL_*` environment variable.
    #[error("unknown environment variable {0} (see docs/configuration.md for the list)")]
    UnknownEnv(String),
    /// A value that does not parse.
    #[error("{key} = {value:?} ({source_name}): {message}")]
    Invalid {
        /// Key (TOML key / variable).
        key: String,
        /// Offending value (never a secret).
        value: String,
        /// file, environment or flag.
        source_name: String,
        /// What is expected.
        message: String,
    },
}

/// A string that never shows in `Debug` or logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// A connection URL whose password is redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct UrlWithSecret(String);

impl UrlWithSecret {
    /// Wraps a URL.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The URL with its password.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UrlWithSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

/// A listener address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// The role's listener is not started in this process.
    Off,
    /// Bind here.
    On(SocketAddr),
}

impl Listen {
    /// The address, unless off.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::On(a) => Some(a),
        }
    }
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        s.parse()
            .map(Listen::On)
            .map_err(|_| "expected IP:port (e.g. 127.0.0.1:8080, [::]:53) or off".to_owned())
    }
}

/// Roles a process can run.
pub const ALL_ROLES: [&str; 6] = ["relay", "radius", "api", "web", "dns", "workers"];

/// Effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Data directory (SQLite, generated keys, mail outbox).
    pub data_dir: PathBuf,
    /// Application database URL (None = SQLite in the data dir).
    pub database_url: Option<UrlWithSecret>,
    /// Owner URL for migrations.
    pub database_admin_url: Option<UrlWithSecret>,
    /// System-scope URL.
    pub database_system_url: Option<UrlWithSecret>,
    /// Redis URL (None = in-process cache, store-only bus).
    pub redis_url: Option<UrlWithSecret>,
    /// Server key (base64).
    pub secret_key: Option<SecretString>,
    /// File holding the server key.
    pub secret_key_file: Option<PathBuf>,
    /// The SaaS zone.
    pub base_domain: String,
    /// Roles of this process.
    pub roles: Vec<String>,
    /// Panel + API listener.
    pub http_listen: Listen,
    /// Built-in TLS listener.
    pub https_listen: Listen,
    /// Proxies whose X-Forwarded-* headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Login/signup requests per minute per client address (0 = limits and lockout off).
    pub login_rate_per_min: u32,
    /// Admin listener (/healthz, /readyz, /metrics).
    pub admin_listen: Listen,
    /// Direct RADIUS authentication.
    pub radius_auth_listen: Listen,
    /// Direct RADIUS accounting.
    pub radius_acct_listen: Listen,
    /// Requests per second allowed per tenant on RADIUS (0 = unlimited).
    pub radius_tenant_rps: u32,
    /// Acct-Interim-Interval sent to NAS devices.
    pub radius_interim_s: u32,
    /// WireGuard relay.
    pub wg_listen: Listen,
    /// Endpoint routers dial.
    pub wg_public_endpoint: Option<SocketAddr>,
    /// Default tunnel subnet of a new tenant.
    pub wg_tunnel_subnet: ipnet::Ipv4Net,
    /// This relay node's name.
    pub relay_node: String,
    /// Handshake initiations a second, all peers together, before cookies (0 = off).
    pub wg_handshake_rate: u64,
    /// Handshake initiations a second per source address (0 = off).
    pub wg_source_handshake_rate: u32,
    /// Handshake initiations a second per tenant (0 = off).
    pub wg_tenant_handshake_rate: u32,
    /// How long a suspended tenant's tunnels stay up (its sessions get their Disconnect first).
    pub wg_drain_s: u64,
    /// Seconds between RouterOS API health polls of each NAS.
    pub nas_poll_interval_s: u64,
    /// NAS polled at once by this process (all tenants together).
    pub nas_poll_concurrency: u32,
    /// Seconds between QuotaSync reads of each NAS's session counters (0 = off).
    pub nas_quota_sync_s: u64,
    /// Authoritative DNS.
    pub dns_listen: Listen,
    /// NS names and glue addresses.
    pub dns_nameservers: Vec<(String, IpAddr)>,
    /// Secondaries allowed to transfer the zone.
    pub dns_secondaries: Vec<IpAddr>,
    /// DNS answers a second per client network before response-rate limiting (0 = off).
    pub dns_rrl: u32,
    /// Addresses for the apex and tenants.
    pub ingress_addrs: Vec<IpAddr>,
    /// ACME directory URL.
    pub acme_directory: Option<String>,
    /// ACME account contact.
    pub acme_contact: Option<String>,
    /// Extra PEM roots trusted for the ACME server's own HTTPS (a private or test CA).
    pub acme_ca_file: Option<PathBuf>,
    /// SMTP URL (None = outbox files).
    pub smtp_url: Option<UrlWithSecret>,
    /// Mail sender.
    pub mail_from: Option<String>,
    /// tracing filter.
    pub log: String,
}

/// The file as written; every leaf is optional. Lists may be TOML arrays or comma-separated strings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    data_dir: Option<String>,
    database: Option<RawDatabase>,
    redis: Option<RawUrl>,
    secret_key: Option<String>,
    secret_key_file: Option<String>,
    base_domain: Option<String>,
    roles: Option<StrOrList>,
    http: Option<RawHttp>,
    admin: Option<RawListen>,
    radius: Option<RawRadius>,
    wg: Option<RawWg>,
    nas: Option<RawNas>,
    dns: Option<RawDns>,
    ingress_addrs: Option<StrOrList>,
    acme: Option<RawAcme>,
    mail: Option<RawMail>,
    log: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    admin_url: Option<String>,
    system_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUrl {
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    tls_listen: Option<String>,
    trusted_proxies: Option<StrOrList>,
    login_rate_per_min: Option<StrOrNum>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRadius {
    auth_listen: Option<String>,
    acct_listen: Option<String>,
    tenant_rps: Option<StrOrNum>,
    interim_interval_s: Option<StrOrNum>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNas {
    poll_interval_s: Option<StrOrNum>,
    poll_concurrency: Option<StrOrNum>,
    quota_sync_s: Option<StrOrNum>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWg {
    listen: Option<String>,
    public_endpoint: Option<String>,
    tunnel_subnet: Option<String>,
    node: Option<String>,
    handshake_rate: Option<StrOrNum>,
    source_handshake_rate: Option<StrOrNum>,
    tenant_handshake_rate: Option<StrOrNum>,
    drain_s: Option<StrOrNum>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    listen: Option<String>,
    nameservers: Option<StrOrList>,
    secondaries: Option<StrOrList>,
    rrl: Option<StrOrNum>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Option<String>,
    contact: Option<String>,
    ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    smtp_url: Option<String>,
    from: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrOrList {
    S(String),
    L(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrOrNum {
    S(String),
    N(i64),
}

impl StrOrNum {
    fn text(self) -> String {
        match self {
            StrOrNum::S(s) => s,
            StrOrNum::N(n) => n.to_string(),
        }
    }
}

impl StrOrList {
    fn joined(self) -> String {
        match self {
            StrOrList::S(s) => s,
            StrOrList::L(l) => l.join(","),
        }
    }
}

/// One setting: environment variable, TOML key, default (for the reference), meaning.
pub struct Setting {
    /// Environment variable.
    pub env: &'static str,
    /// TOML key (dotted), empty when there is none.
    pub key: &'static str,
    /// Default, as documented.
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
}

/// Every setting (the configuration reference is checked against this list).
pub const SETTINGS: &[Setting] = &[
    Setting {
        env: "PROXPANEL_CONFIG",
        key: "",
        default: "none",
        meaning: "path of the TOML file",
    },
    Setting {
        env: "PROXPANEL_DATA_DIR",
        key: "data_dir",
        default: "./data",
        meaning: "embedded database, generated keys, mail outbox",
    },
    Setting {
        env: "PROXPANEL_DATABASE_URL",
        key: "database.url",
        default: "SQLite in the data dir",
        meaning: "sqlite://… or postgres://… (the application role)",
    },
    Setting {
        env: "PROXPANEL_DATABASE_ADMIN_URL",
        key: "database.admin_url",
        default: "the same URL",
        meaning: "owner role that runs migrations on PostgreSQL",
    },
    Setting {
        env: "PROXPANEL_DATABASE_SYSTEM_URL",
        key: "database.system_url",
        default: "the same URL",
        meaning: "role of the SystemScope pool on PostgreSQL",
    },
    Setting {
        env: "PROXPANEL_REDIS_URL",
        key: "redis.url",
        default: "unset",
        meaning: "redis://…; unset = in-process cache, store-backed bus",
    },
    Setting {
        env: "PROXPANEL_SECRET_KEY",
        key: "secret_key",
        default: "generated into the data dir (SQLite only)",
        meaning: "server key for secrets at rest, 32 bytes base64",
    },
    Setting {
        env: "PROXPANEL_SECRET_KEY_FILE",
        key: "secret_key_file",
        default: "<data_dir>/secret.key (SQLite only)",
        meaning: "file holding the server key",
    },
    Setting {
        env: "PROXPANEL_BASE_DOMAIN",
        key: "base_domain",
        default: "saas.localhost",
        meaning: "the SaaS zone",
    },
    Setting {
        env: "PROXPANEL_ROLES",
        key: "roles",
        default: "relay,radius,api,web,dns,workers",
        meaning: "roles this process runs",
    },
    Setting {
        env: "PROXPANEL_HTTP_LISTEN",
        key: "http.listen",
        default: "127.0.0.1:8080",
        meaning: "panel + API (plain HTTP)",
    },
    Setting {
        env: "PROXPANEL_HTTPS_LISTEN",
        key: "http.tls_listen",
        default: "off",
        meaning: "built-in TLS with the ACME certificate",
    },
    Setting {
        env: "PROXPANEL_TRUSTED_PROXIES",
        key: "http.trusted_proxies",
        default: "none",
        meaning: "CIDRs whose X-Forwarded-* headers are believed",
    },
    Setting {
        env: "PROXPANEL_LOGIN_RATE_PER_MIN",
        key: "http.login_rate_per_min",
        default: "30",
        meaning: "login and signup requests per minute per client address, with the failed-login lockout ladder (0 = both off, for benchmarks)",
    },
    Setting {
        env: "PROXPANEL_ADMIN_LISTEN",
        key: "admin.listen",
        default: "127.0.0.1:8081",
        meaning: "/healthz, /readyz, /metrics",
    },
    Setting {
        env: "PROXPANEL_RADIUS_AUTH_LISTEN",
        key: "radius.auth_listen",
        default: "0.0.0.0:1812",
        meaning: "direct RADIUS authentication",
    },
    Setting {
        env: "PROXPANEL_RADIUS_ACCT_LISTEN",
        key: "radius.acct_listen",
        default: "0.0.0.0:1813",
        meaning: "direct RADIUS accounting",
    },
    Setting {
        env: "PROXPANEL_RADIUS_TENANT_RPS",
        key: "radius.tenant_rps",
        default: "2000",
        meaning: "RADIUS requests per second per tenant before excess is dropped and counted (0 = unlimited, for benchmarks)",
    },
    Setting {
        env: "PROXPANEL_RADIUS_INTERIM",
        key: "radius.interim_interval_s",
        default: "60",
        meaning: "Acct-Interim-Interval sent in every Access-Accept (seconds)",
    },
    Setting {
        env: "PROXPANEL_WG_LISTEN",
        key: "wg.listen",
        default: "0.0.0.0:51820",
        meaning: "WireGuard relay (IPv4 and IPv6 when [::])",
    },
    Setting {
        env: "PROXPANEL_WG_PUBLIC_ENDPOINT",
        key: "wg.public_endpoint",
        default: "first ingress address + the WG listen port",
        meaning: "IP:port routers dial",
    },
    Setting {
        env: "PROXPANEL_WG_TUNNEL_SUBNET",
        key: "wg.tunnel_subnet",
        default: "10.200.0.0/24",
        meaning: "default tunnel subnet of a new tenant (relay side .1)",
    },
    Setting {
        env: "PROXPANEL_RELAY_NODE",
        key: "wg.node",
        default: "host name",
        meaning: "this relay node's name",
    },
    Setting {
        env: "PROXPANEL_WG_HANDSHAKE_RATE",
        key: "wg.handshake_rate",
        default: "2000",
        meaning: "WireGuard handshake initiations per second, all peers together, before the relay answers with cookies (0 = off, for benchmarks)",
    },
    Setting {
        env: "PROXPANEL_WG_SOURCE_HANDSHAKE_RATE",
        key: "wg.source_handshake_rate",
        default: "50",
        meaning: "handshake initiations per second per source address (0 = off)",
    },
    Setting {
        env: "PROXPANEL_WG_TENANT_HANDSHAKE_RATE",
        key: "wg.tenant_handshake_rate",
        default: "100",
        meaning: "handshake initiations per second per tenant, once the peer is known (0 = off)",
    },
    Setting {
        env: "PROXPANEL_WG_DRAIN",
        key: "wg.drain_s",
        default: "600",
        meaning: "seconds a suspended tenant's tunnels stay up (online sessions get their Disconnect first)",
    },
    Setting {
        env: "PROXPANEL_NAS_POLL_INTERVAL",
        key: "nas.poll_interval_s",
        default: "30",
        meaning: "seconds between RouterOS API health polls of each NAS (three failures in a row = offline)",
    },
    Setting {
        env: "PROXPANEL_NAS_POLL_CONCURRENCY",
        key: "nas.poll_concurrency",
        default: "32",
        meaning: "NAS this process polls at once, all tenants together",
    },
    Setting {
        env: "PROXPANEL_NAS_QUOTA_SYNC",
        key: "nas.quota_sync_s",
        default: "30",
        meaning: "seconds between QuotaSync reads of session byte counters from each router's API (0 = off)",
    },
    Setting {
        env: "PROXPANEL_DNS_LISTEN",
        key: "dns.listen",
        default: "127.0.0.1:1053",
        meaning: "authoritative DNS, UDP and TCP",
    },
    Setting {
        env: "PROXPANEL_DNS_NAMESERVERS",
        key: "dns.nameservers",
        default: "ns1.<base>=<first ingress>",
        meaning: "name=IP,… for NS records and glue",
    },
    Setting {
        env: "PROXPANEL_DNS_SECONDARIES",
        key: "dns.secondaries",
        default: "none",
        meaning: "IPs allowed to transfer the zone and notified",
    },
    Setting {
        env: "PROXPANEL_DNS_RRL",
        key: "dns.rrl",
        default: "200",
        meaning: "DNS answers a second per client network (/24, /56) before response-rate limiting drops them (0 = off)",
    },
    Setting {
        env: "PROXPANEL_INGRESS_ADDRS",
        key: "ingress_addrs",
        default: "127.0.0.1",
        meaning: "addresses the zone gives for the apex and tenants",
    },
    Setting {
        env: "PROXPANEL_ACME_DIRECTORY",
        key: "acme.directory",
        default: "off",
        meaning: "ACME server directory URL",
    },
    Setting {
        env: "PROXPANEL_ACME_CONTACT",
        key: "acme.contact",
        default: "none",
        meaning: "ACME account e-mail",
    },
    Setting {
        env: "PROXPANEL_ACME_CA_FILE",
        key: "acme.ca_file",
        default: "none",
        meaning: "PEM file of extra roots trusted for the ACME server's own HTTPS, besides the Mozilla roots (a private or test ACME CA such as Pebble)",
    },
    Setting {
        env: "PROXPANEL_SMTP_URL",
        key: "mail.smtp_url",
        default: "unset",
        meaning: "outgoing mail; unset = files in the data dir's outbox",
    },
    Setting {
        env: "PROXPANEL_MAIL_FROM",
        key: "mail.from",
        default: "unset",
        meaning: "sender address of outgoing mail",
    },
    Setting {
        env: "PROXPANEL_DEMO_PASSWORD",
        key: "",
        default: "generated, printed",
        meaning: "with serve --demo: password of the demo operator and owner",
    },
    Setting {
        env: "PROXPANEL_LOG",
        key: "log",
        default: "info",
        meaning: "tracing filter, e.g. info,saas_core=debug",
    },
];

/// Overrides given as command-line flags (highest precedence), by TOML key.
pub type FlagOverrides = BTreeMap<&'static str, String>;

/// Where a value came from, for error messages.
#[derive(Clone, Copy)]
enum Origin {
    Default,
    File,
    Env,
    Flag,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Origin::Default => "default",
            Origin::File => "config file",
            Origin::Env => "environment",
            Origin::Flag => "command line",
        }
    }
}

impl Config {
    /// Loads from `file` (or `PROXPANEL_CONFIG`), the given environment and flag overrides.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        flags: &FlagOverrides,
    ) -> Result<Self, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("PROXPANEL_CONFIG").map(PathBuf::from));
        let raw = match &file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                toml::from_str::<RawFile>(&text).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => RawFile::default(),
        };
        let mut values: BTreeMap<&'static str, (String, Origin)> = BTreeMap::new();
        for (k, v) in flatten_file(raw) {
            values.insert(k, (v, Origin::File));
        }
        for (name, value) in env {
            if !name.starts_with("PROXPANEL_") {
                continue;
            }
            let Some(s) = SETTINGS.iter().find(|s| s.env == name) else {
                return Err(ConfigError::UnknownEnv(name.clone()));
            };
            if !s.key.is_empty() {
                values.insert(s.key, (value.clone(), Origin::Env));
            }
        }
        for (k, v) in flags {
            values.insert(k, (v.clone(), Origin::Flag));
        }
        Self::from_values(values)
    }

    /// Loads with the process environment.
    pub fn load_from_process(
        file: Option<&Path>,
        flags: &FlagOverrides,
    ) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::load(file, &env, flags)
    }

    fn from_values(mut v: BTreeMap<&'static str, (String, Origin)>) -> Result<Self, ConfigError> {
        let mut take = |k: &'static str| v.remove(k);
        fn parse<T: std::str::FromStr>(
            key: &str,
            (val, origin): (String, Origin),
            msg: &str,
        ) -> Result<T, ConfigError> {
            val.trim().parse().map_err(|_| ConfigError::Invalid {
                key: key.into(),
                value: val.clone(),
                source_name: origin.name().into(),
                message: msg.into(),
            })
        }
        let listen = |key: &'static str,
                      val: Option<(String, Origin)>,
                      default: &str|
         -> Result<Listen, ConfigError> {
            let val = val.unwrap_or((default.to_owned(), Origin::Default));
            parse(
                key,
                val,
                "expected IP:port (e.g. 127.0.0.1:8080, [::]:53) or off",
            )
        };
        fn list(val: Option<(String, Origin)>) -> Vec<(String, Origin)> {
            match val {
                Some((s, o)) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|x| (x.to_owned(), o))
                    .collect(),
                None => vec![],
            }
        }
        let nonempty =
            |x: Option<(String, Origin)>| x.map(|(s, _)| s).filter(|s| !s.trim().is_empty());

        let data_dir = PathBuf::from(nonempty(take("data_dir")).unwrap_or_else(|| "./data".into()));
        let base_domain_raw =
            take("base_domain").unwrap_or(("saas.localhost".into(), Origin::Default));
        let base_domain = base_domain_raw
            .0
            .trim()
            .trim_end_matches('.')
            .to_lowercase();
        if base_domain.is_empty()
            || !base_domain.contains('.')
            || base_domain
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        {
            return Err(ConfigError::Invalid {
                key: "base_domain".into(),
                value: base_domain_raw.0,
                source_name: base_domain_raw.1.name().into(),
                message: "expected a DNS name such as saas.example.com".into(),
            });
        }
        let roles_val = take("roles");
        let roles: Vec<String> = match &roles_val {
            Some(_) => {
                let mut r = Vec::new();
                for (x, o) in list(roles_val) {
                    let x = x.to_lowercase();
                    if x == "all" {
                        r.extend(ALL_ROLES.iter().map(|s| s.to_string()));
                    } else if ALL_ROLES.contains(&x.as_str()) {
                        r.push(x);
                    } else {
                        return Err(ConfigError::Invalid {
                            key: "roles".into(),
                            value: x,
                            source_name: o.name().into(),
                            message: format!("unknown role; roles are {}", ALL_ROLES.join(",")),
                        });
                    }
                }
                r.dedup();
                r
            }
            None => ALL_ROLES.iter().map(|s| s.to_string()).collect(),
        };
        let mut trusted_proxies = Vec::new();
        for item in list(take("http.trusted_proxies")) {
            let s = item.0.clone();
            let net = s
                .parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from));
            trusted_proxies.push(net.map_err(|_| ConfigError::Invalid {
                key: "http.trusted_proxies".into(),
                value: s,
                source_name: item.1.name().into(),
                message: "expected CIDRs such as 10.0.0.0/8".into(),
            })?);
        }
        let mut ingress_addrs = Vec::new();
        for item in list(take("ingress_addrs")) {
            ingress_addrs.push(parse::<IpAddr>(
                "ingress_addrs",
                item,
                "expected IP addresses",
            )?);
        }
        if ingress_addrs.is_empty() {
            ingress_addrs.push(IpAddr::from([127, 0, 0, 1]));
        }
        let wg_listen = listen("wg.listen", take("wg.listen"), "0.0.0.0:51820")?;
        let wg_public_endpoint = match take("wg.public_endpoint") {
            Some(v) if !v.0.trim().is_empty() => Some(parse::<SocketAddr>(
                "wg.public_endpoint",
                v,
                "expected IP:port",
            )?),
            _ => wg_listen
                .addr()
                .map(|a| SocketAddr::new(ingress_addrs[0], a.port())),
        };
        let wg_tunnel_subnet = parse(
            "wg.tunnel_subnet",
            take("wg.tunnel_subnet").unwrap_or(("10.200.0.0/24".into(), Origin::Default)),
            "expected an IPv4 CIDR such as 10.200.0.0/24",
        )?;
        let relay_node = nonempty(take("wg.node")).unwrap_or_else(hostname);
        let mut dns_nameservers = Vec::new();
        for item in list(take("dns.nameservers")) {
            let (s, o) = item;
            let bad = || ConfigError::Invalid {
                key: "dns.nameservers".into(),
                value: s.clone(),
                source_name: o.name().into(),
                message: "expected name=IP pairs such as ns1.saas.example.com=192.0.2.1".into(),
            };
            let (name, ip) = s.split_once('=').ok_or_else(bad)?;
            let ip: IpAddr = ip.trim().parse().map_err(|_| bad())?;
            dns_nameservers.push((name.trim().trim_end_matches('.').to_lowercase(), ip));
        }
        if dns_nameservers.is_empty() {
            dns_nameservers.push((format!("ns1.{base_domain}"), ingress_addrs[0]));
        }
        let mut dns_secondaries = Vec::new();
        for item in list(take("dns.secondaries")) {
            dns_secondaries.push(parse::<IpAddr>(
                "dns.secondaries",
                item,
                "expected IP addresses",
            )?);
        }
        let cfg = Config {
            data_dir,
            database_url: nonempty(take("database.url")).map(UrlWithSecret),
            database_admin_url: nonempty(take("database.admin_url")).map(UrlWithSecret),
            database_system_url: nonempty(take("database.system_url")).map(UrlWithSecret),
            redis_url: nonempty(take("redis.url")).map(UrlWithSecret),
            secret_key: nonempty(take("secret_key")).map(SecretString),
            secret_key_file: nonempty(take("secret_key_file")).map(PathBuf::from),
            base_domain,
            roles,
            http_listen: listen("http.listen", take("http.listen"), "127.0.0.1:8080")?,
            https_listen: listen("http.tls_listen", take("http.tls_listen"), "off")?,
            trusted_proxies,
            login_rate_per_min: parse(
                "http.login_rate_per_min",
                take("http.login_rate_per_min").unwrap_or(("30".into(), Origin::Default)),
                "expected a number of requests per minute (0 = off)",
            )?,
            admin_listen: listen("admin.listen", take("admin.listen"), "127.0.0.1:8081")?,
            radius_auth_listen: listen(
                "radius.auth_listen",
                take("radius.auth_listen"),
                "0.0.0.0:1812",
            )?,
            radius_acct_listen: listen(
                "radius.acct_listen",
                take("radius.acct_listen"),
                "0.0.0.0:1813",
            )?,
            radius_tenant_rps: parse(
                "radius.tenant_rps",
                take("radius.tenant_rps").unwrap_or(("2000".into(), Origin::Default)),
                "expected a number of requests per second (0 = unlimited)",
            )?,
            radius_interim_s: parse(
                "radius.interim_interval_s",
                take("radius.interim_interval_s").unwrap_or(("60".into(), Origin::Default)),
                "expected seconds",
            )?,
            wg_listen,
            wg_public_endpoint,
            wg_tunnel_subnet,
            relay_node,
            wg_handshake_rate: parse(
                "wg.handshake_rate",
                take("wg.handshake_rate").unwrap_or(("2000".into(), Origin::Default)),
                "expected handshakes per second (0 = off)",
            )?,
            wg_source_handshake_rate: parse(
                "wg.source_handshake_rate",
                take("wg.source_handshake_rate").unwrap_or(("50".into(), Origin::Default)),
                "expected handshakes per second (0 = off)",
            )?,
            wg_tenant_handshake_rate: parse(
                "wg.tenant_handshake_rate",
                take("wg.tenant_handshake_rate").unwrap_or(("100".into(), Origin::Default)),
                "expected handshakes per second (0 = off)",
            )?,
            wg_drain_s: parse(
                "wg.drain_s",
                take("wg.drain_s").unwrap_or(("600".into(), Origin::Default)),
                "expected seconds",
            )?,
            nas_poll_interval_s: parse(
                "nas.poll_interval_s",
                take("nas.poll_interval_s").unwrap_or(("30".into(), Origin::Default)),
                "expected seconds",
            )?,
            nas_poll_concurrency: parse(
                "nas.poll_concurrency",
                take("nas.poll_concurrency").unwrap_or(("32".into(), Origin::Default)),
                "expected a number of NAS",
            )?,
            nas_quota_sync_s: parse(
                "nas.quota_sync_s",
                take("nas.quota_sync_s").unwrap_or(("30".into(), Origin::Default)),
                "expected seconds (0 = off)",
            )?,
            dns_listen: listen("dns.listen", take("dns.listen"), "127.0.0.1:1053")?,
            dns_nameservers,
            dns_secondaries,
            dns_rrl: parse(
                "dns.rrl",
                take("dns.rrl").unwrap_or(("200".into(), Origin::Default)),
                "expected answers per second (0 = off)",
            )?,
            ingress_addrs,
            acme_directory: nonempty(take("acme.directory")).filter(|s| s != "off"),
            acme_contact: nonempty(take("acme.contact")),
            acme_ca_file: nonempty(take("acme.ca_file")).map(PathBuf::from),
            smtp_url: nonempty(take("mail.smtp_url")).map(UrlWithSecret),
            mail_from: nonempty(take("mail.from")),
            log: nonempty(take("log")).unwrap_or_else(|| "info".into()),
        };
        Ok(cfg)
    }

    /// Whether this process runs `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the store is PostgreSQL.
    pub fn uses_postgres(&self) -> bool {
        self.database_url
            .as_ref()
            .is_some_and(|u| u.expose().starts_with("postgres"))
    }
}

fn flatten_file(raw: RawFile) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, Option<String>)> = vec![
        ("data_dir", raw.data_dir),
        ("secret_key", raw.secret_key),
        ("secret_key_file", raw.secret_key_file),
        ("base_domain", raw.base_domain),
        ("roles", raw.roles.map(StrOrList::joined)),
        ("ingress_addrs", raw.ingress_addrs.map(StrOrList::joined)),
        ("log", raw.log),
    ];
    let db = raw.database.unwrap_or_default();
    out.extend([
        ("database.url", db.url),
        ("database.admin_url", db.admin_url),
        ("database.system_url", db.system_url),
    ]);
    out.push(("redis.url", raw.redis.unwrap_or_default().url));
    let http = raw.http.unwrap_or_default();
    out.extend([
        ("http.listen", http.listen),
        ("http.tls_listen", http.tls_listen),
        (
            "http.trusted_proxies",
            http.trusted_proxies.map(StrOrList::joined),
        ),
        (
            "http.login_rate_per_min",
            http.login_rate_per_min.map(StrOrNum::text),
        ),
    ]);
    out.push(("admin.listen", raw.admin.unwrap_or_default().listen));
    let r = raw.radius.unwrap_or_default();
    out.extend([
        ("radius.auth_listen", r.auth_listen),
        ("radius.acct_listen", r.acct_listen),
        ("radius.tenant_rps", r.tenant_rps.map(StrOrNum::text)),
        (
            "radius.interim_interval_s",
            r.interim_interval_s.map(StrOrNum::text),
        ),
    ]);
    let wg = raw.wg.unwrap_or_default();
    out.extend([
        ("wg.listen", wg.listen),
        ("wg.public_endpoint", wg.public_endpoint),
        ("wg.tunnel_subnet", wg.tunnel_subnet),
        ("wg.node", wg.node),
        ("wg.handshake_rate", wg.handshake_rate.map(StrOrNum::text)),
        (
            "wg.source_handshake_rate",
            wg.source_handshake_rate.map(StrOrNum::text),
        ),
        (
            "wg.tenant_handshake_rate",
            wg.tenant_handshake_rate.map(StrOrNum::text),
        ),
        ("wg.drain_s", wg.drain_s.map(StrOrNum::text)),
    ]);
    let nas = raw.nas.unwrap_or_default();
    out.extend([
        (
            "nas.poll_interval_s",
            nas.poll_interval_s.map(StrOrNum::text),
        ),
        (
            "nas.poll_concurrency",
            nas.poll_concurrency.map(StrOrNum::text),
        ),
        ("nas.quota_sync_s", nas.quota_sync_s.map(StrOrNum::text)),
    ]);
    let d = raw.dns.unwrap_or_default();
    out.extend([
        ("dns.listen", d.listen),
        ("dns.nameservers", d.nameservers.map(StrOrList::joined)),
        ("dns.secondaries", d.secondaries.map(StrOrList::joined)),
        ("dns.rrl", d.rrl.map(StrOrNum::text)),
    ]);
    let a = raw.acme.unwrap_or_default();
    out.extend([
        ("acme.directory", a.directory),
        ("acme.contact", a.contact),
        ("acme.ca_file", a.ca_file),
    ]);
    let m = raw.mail.unwrap_or_default();
    out.extend([("mail.smtp_url", m.smtp_url), ("mail.from", m.from)]);
    out.into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "relay-1".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::load(None, &env(&[]), &FlagOverrides::new()).unwrap();
        assert_eq!(c.base_domain, "saas.localhost");
        assert_eq!(c.http_listen, Listen::On("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(
            c.admin_listen,
            Listen::On("127.0.0.1:8081".parse().unwrap())
        );
        assert_eq!(c.https_listen, Listen::Off);
        assert_eq!(c.dns_listen, Listen::On("127.0.0.1:1053".parse().unwrap()));
        assert_eq!(
            c.wg_public_endpoint,
            Some("127.0.0.1:51820".parse().unwrap())
        );
        assert_eq!(
            c.dns_nameservers,
            vec![(
                "ns1.saas.localhost".to_string(),
                "127.0.0.1".parse().unwrap()
            )]
        );
        assert_eq!(c.roles.len(), 6);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.database_url.is_none() && c.redis_url.is_none());
    }

    #[test]
    fn precedence_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "base_domain = \"file.example\"\nlog = \"debug\"\n[http]\nlisten = \"127.0.0.1:1\"\n[admin]\nlisten = \"127.0.0.1:2\"\n").unwrap();
        let e = env(&[
            ("PROXPANEL_HTTP_LISTEN", "127.0.0.1:3"),
            ("PROXPANEL_ADMIN_LISTEN", "127.0.0.1:4"),
            ("HOME", "/x"),
        ]);
        let mut flags = FlagOverrides::new();
        flags.insert("admin.listen", "off".into());
        let c = Config::load(Some(&f), &e, &flags).unwrap();
        assert_eq!(c.base_domain, "file.example"); // file over default
        assert_eq!(c.log, "debug");
        assert_eq!(c.http_listen, Listen::On("127.0.0.1:3".parse().unwrap())); // env over file
        assert_eq!(c.admin_listen, Listen::Off); // flag over env
        // PROXPANEL_CONFIG names the file when no flag does.
        let e2 = env(&[("PROXPANEL_CONFIG", f.to_str().unwrap())]);
        assert_eq!(
            Config::load(None, &e2, &FlagOverrides::new())
                .unwrap()
                .base_domain,
            "file.example"
        );
    }

    #[test]
    fn unknown_keys_and_variables_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[http]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n").unwrap();
        let err = Config::load(Some(&f), &env(&[]), &FlagOverrides::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = Config::load(
            None,
            &env(&[("PROXPANEL_HTTP_LISTN", "x")]),
            &FlagOverrides::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("PROXPANEL_HTTP_LISTN"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_source() {
        let err = Config::load(
            None,
            &env(&[("PROXPANEL_ADMIN_LISTEN", "nope")]),
            &FlagOverrides::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("admin.listen") && err.contains("environment"),
            "{err}"
        );
        let err = Config::load(
            None,
            &env(&[("PROXPANEL_ROLES", "api,teleport")]),
            &FlagOverrides::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("teleport"), "{err}");
    }

    #[test]
    fn lists_and_roles() {
        let c = Config::load(
            None,
            &env(&[
                ("PROXPANEL_ROLES", "api, dns"),
                ("PROXPANEL_INGRESS_ADDRS", "192.0.2.1,2001:db8::1"),
                ("PROXPANEL_DNS_NAMESERVERS", "ns1.x.example=192.0.2.53"),
            ]),
            &FlagOverrides::new(),
        )
        .unwrap();
        assert_eq!(c.roles, vec!["api", "dns"]);
        assert!(c.has_role("dns") && !c.has_role("relay"));
        assert_eq!(c.ingress_addrs.len(), 2);
        assert_eq!(
            c.wg_public_endpoint,
            Some("192.0.2.1:51820".parse().unwrap())
        );
        assert_eq!(c.dns_nameservers[0].0, "ns1.x.example");
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let c = Config::load(
            None,
            &env(&[
                ("PROXPANEL_SECRET_KEY", "c2VjcmV0c2VjcmV0"),
                ("PROXPANEL_DATABASE_URL", "postgres://app:hunter2@db/pp"),
                ("PROXPANEL_REDIS_URL", "redis://:redispw@r:6379"),
            ]),
            &FlagOverrides::new(),
        )
        .unwrap();
        let d = format!("{c:?}");
        assert!(
            !d.contains("c2VjcmV0c2VjcmV0") && !d.contains("hunter2") && !d.contains("redispw"),
            "{d}"
        );
        assert!(c.uses_postgres());
    }

    #[test]
    fn reference_lists_every_setting() {
        let doc = include_str!("../../docs/configuration.md");
        for s in SETTINGS {
            assert!(doc.contains(s.env), "docs/configuration.md lacks {}", s.env);
            if !s.key.is_empty() {
                assert!(
                    doc.contains(&format!("`{}`", s.key)),
                    "docs/configuration.md lacks key {}",
                    s.key
                );
            }
        }
    }
}
