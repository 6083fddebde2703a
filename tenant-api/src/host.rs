//! Host routing: `SLUG.<base>` → a tenant (cached, invalidated by `tenant.changed` events),
//! `<base>` → the public apex, `operator.<base>` → the operator console. The client address
//! and `X-Forwarded-*` headers are believed only from trusted proxies.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use saas_core::Slug;
use saas_core::bus::{Bus, kinds};
use saas_core::model::{Tenant, TenantStatus};
use saas_core::store::Store;

use crate::problem::Problem;

/// How long a tenant looked up by slug is trusted without an event.
const TENANT_TTL: Duration = Duration::from_secs(60);
/// How long "no such tenant" is remembered (signup makes new ones).
const MISSING_TTL: Duration = Duration::from_secs(2);

/// What the Host header names.
#[derive(Clone, Debug)]
pub enum HostKind {
    /// `<base>`: public site and signup.
    Apex,
    /// `operator.<base>`.
    Operator,
    /// `SLUG.<base>` of an active tenant.
    Tenant(Arc<Tenant>),
}

/// The client address of a request (the peer, or the forwarded one from a trusted proxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .ok_or_else(|| Problem::internal(&"client address missing (host layer not installed)"))
    }
}

/// Extractor: the tenant of a tenant host (only tenant routers use it).
#[derive(Clone, Debug)]
pub struct TenantHost(pub Arc<Tenant>);

impl<S: Send + Sync> FromRequestParts<S> for TenantHost {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<HostKind>() {
            Some(HostKind::Tenant(t)) => Ok(TenantHost(t.clone())),
            _ => Err(Problem::not_found(
                "this endpoint exists only on a tenant host",
            )),
        }
    }
}

/// Which proxies' forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Vec<ipnet::IpNet>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the peer, or (from a trusted peer) the rightmost address of
    /// `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut chain: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        while let Some(ip) = chain.pop() {
            if !self.trusts(ip) {
                return ip;
            }
        }
        peer
    }

    /// The host name asked for, lowercased, without port: `X-Forwarded-Host` from a trusted
    /// peer, else `Host`.
    pub fn host(&self, peer: IpAddr, headers: &HeaderMap) -> Option<String> {
        let raw = if self.trusts(peer) {
            headers
                .get("x-forwarded-host")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .or_else(|| headers.get("host").and_then(|v| v.to_str().ok()))
        } else {
            headers.get("host").and_then(|v| v.to_str().ok())
        }?;
        let raw = raw.trim();
        let name = if raw.starts_with('[') {
            raw.split(']').next().map(|s| format!("{s}]"))?
        } else {
            raw.rsplit_once(':')
                .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
                .map(|(h, _)| h.to_owned())
                .unwrap_or_else(|| raw.to_owned())
        };
        Some(name.trim_end_matches('.').to_ascii_lowercase())
    }
}

/// Peer address of a request (ConnectInfo; loopback when served without it, e.g. in tests).
pub fn peer_addr(parts_ext: &axum::http::Extensions) -> IpAddr {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Cached lookups: slug → (tenant or known absence, expiry).
type DirectoryMap = HashMap<String, (Option<Arc<Tenant>>, Instant)>;

/// Slug → tenant, cached in-process; bus events drop entries.
#[derive(Clone, Debug)]
pub struct TenantDirectory {
    store: Store,
    map: Arc<Mutex<DirectoryMap>>,
}

impl TenantDirectory {
    /// An empty directory over the store.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            map: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DirectoryMap> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets one slug (or everything).
    pub fn invalidate(&self, slug: Option<&str>) {
        match slug {
            Some(s) => {
                self.lock().remove(s);
            }
            None => self.lock().clear(),
        }
    }

    /// The tenant of a slug (any status), from cache or store.
    pub async fn lookup(&self, slug: &str) -> Result<Option<Arc<Tenant>>, Problem> {
        let now = Instant::now();
        if let Some((t, exp)) = self.lock().get(slug)
            && *exp > now
        {
            return Ok(t.clone());
        }
        let Ok(parsed) = Slug::parse(slug) else {
            return Ok(None);
        };
        let t = self
            .store
            .system()
            .tenant_by_slug(&parsed)
            .await?
            .map(Arc::new);
        let ttl = if t.is_some() { TENANT_TTL } else { MISSING_TTL };
        let mut map = self.lock();
        if map.len() > 100_000 {
            map.retain(|_, (_, e)| *e > now);
        }
        map.insert(slug.to_owned(), (t.clone(), now + ttl));
        Ok(t)
    }

    /// Drops cached tenants as `tenant.changed` events arrive (every process sees them).
    pub fn follow(&self, bus: &Bus) -> tokio::task::JoinHandle<()> {
        let mut rx = bus.subscribe();
        let dir = self.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) if ev.kind == kinds::TENANT_CHANGED => {
                        let slug = serde_json::from_str::<serde_json::Value>(&ev.payload)
                            .ok()
                            .and_then(|v| v["slug"].as_str().map(str::to_owned));
                        dir.invalidate(slug.as_deref());
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        dir.invalidate(None)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }
}

/// Resolves a host name against the base domain.
pub async fn resolve(
    dir: &TenantDirectory,
    base: &str,
    host: Option<&str>,
) -> Result<HostKind, Problem> {
    let Some(host) = host else {
        return Err(Problem::bad_request(
            "the request has no Host header; send Host: SLUG.<base domain>",
        ));
    };
    if host == base {
        return Ok(HostKind::Apex);
    }
    let unknown = || {
        Problem::new(StatusCode::NOT_FOUND, "unknown-host", "Unknown host")
            .detail(format!("{host} is not served here"))
    };
    let Some(label) = host.strip_suffix(base).and_then(|l| l.strip_suffix('.')) else {
        return Err(unknown());
    };
    if label == "operator" {
        return Ok(HostKind::Operator);
    }
    if label.contains('.') {
        return Err(unknown());
    }
    match dir.lookup(label).await? {
        Some(t) if t.status == TenantStatus::Active => Ok(HostKind::Tenant(t)),
        Some(t) if t.status == TenantStatus::Suspended => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "tenant-suspended",
            "Account suspended",
        )
        .detail(format!(
            "the account {label} is suspended; contact the platform operator to resume it"
        ))),
        _ => Err(
            Problem::new(StatusCode::NOT_FOUND, "unknown-tenant", "Unknown tenant").detail(
                format!("there is no ISP account at {host}; check the address"),
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let tp = TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]);
        let mut h = HeaderMap::new();
        h.insert("host", "a.saas.localhost:8080".parse().unwrap());
        h.insert("x-forwarded-host", "b.saas.localhost".parse().unwrap());
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.7".parse().unwrap());
        let outside: IpAddr = "198.51.100.1".parse().unwrap();
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(tp.host(outside, &h).as_deref(), Some("a.saas.localhost"));
        assert_eq!(tp.client_ip(outside, &h), outside);
        assert_eq!(tp.host(proxy, &h).as_deref(), Some("b.saas.localhost"));
        assert_eq!(
            tp.client_ip(proxy, &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }
}
