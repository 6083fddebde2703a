//! Tenant REST API on wildcard subdomains, signup and operator endpoints (axum).
//!
//! One app serves every host: [`host`] resolves `SLUG.<base>`, `<base>` and `operator.<base>`
//! and hands the request to that host's router. Errors are RFC 7807 problems ([`problem`]);
//! authentication and roles live in [`auth`] and [`roles`] and are meant for reuse by the web
//! panel (its cookie layer inserts an [`auth::Principal`]).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod host;
pub mod limit;
pub mod mail;
pub mod openapi;
pub mod operator;
pub mod problem;
pub mod roles;
pub mod signup;
pub mod tenant;
pub mod usage;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use saas_core::cache::Cache;
use saas_core::platform::Platform;
use saas_core::store::{Store, StoreError};
use tower::ServiceExt as _;

use crate::auth::{KeyRing, Keys};
use crate::host::{ClientIp, HostKind, TenantDirectory, TrustedProxies};
use crate::problem::Problem;

/// Settings of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The SaaS zone (`saas.localhost` in development).
    pub base_domain: String,
    /// Proxies whose X-Forwarded-* headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Login/signup limits.
    pub limits: limit::Limits,
    /// Data dir (mail outbox).
    pub data_dir: PathBuf,
    /// `http` or `https`, for panel URLs.
    pub public_scheme: String,
    /// Port to put in panel URLs (None for 80/443).
    pub public_port: Option<u16>,
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// JWT clock leeway in seconds.
    pub leeway_s: u64,
    /// Peer creation with the router script (the binary provides it; None = 501).
    pub peers: Option<Arc<dyn saas_core::platform::PeerProvisioner>>,
    /// SMTP server URL (None = `.eml` files in the data dir's outbox).
    pub smtp_url: Option<String>,
    /// Sender address (default `noreply@<base domain>`).
    pub mail_from: Option<String>,
    /// Lifetime of an e-mail verification link.
    pub verify_ttl: Duration,
}

impl ApiConfig {
    /// Defaults for a base domain and data dir.
    pub fn new(base_domain: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            base_domain: base_domain.into(),
            trusted_proxies: Vec::new(),
            body_limit: 64 * 1024,
            limits: limit::Limits::default(),
            data_dir: data_dir.into(),
            public_scheme: "http".into(),
            public_port: None,
            access_ttl: auth::ACCESS_TTL,
            leeway_s: 5,
            peers: None,
            smtp_url: None,
            mail_from: None,
            verify_ttl: Duration::from_secs(48 * 3600),
        }
    }

    /// The public site's URL (signup, verification links), with a trailing slash.
    pub fn apex_url(&self) -> String {
        let port = self
            .public_port
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!("{}://{}{port}/", self.public_scheme, self.base_domain)
    }

    /// The panel URL of a tenant.
    pub fn panel_url(&self, slug: &str) -> String {
        let port = self
            .public_port
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!(
            "{}://{slug}.{}{port}/",
            self.public_scheme, self.base_domain
        )
    }
}

struct Inner {
    platform: Platform,
    cache: Arc<dyn Cache>,
    config: ApiConfig,
    tenants: TenantDirectory,
    tenant_keys: Keys,
    operator_keys: Keys,
    proxies: TrustedProxies,
    /// A hash to verify against when the account does not exist (same time either way).
    dummy_hash: String,
    mailer: mail::Mailer,
}

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("base_domain", &self.0.config.base_domain)
            .finish()
    }
}

impl AppState {
    /// Loads the signing keys (creating them on first start) and starts following tenant
    /// changes on the bus.
    pub async fn new(
        platform: Platform,
        cache: Arc<dyn Cache>,
        config: ApiConfig,
    ) -> Result<Self, StoreError> {
        let store = platform.store().clone();
        let mut tk = KeyRing::load(store.clone(), "tenant").await?;
        let mut ok = KeyRing::load(store.clone(), "operator").await?;
        tk.set_leeway(config.leeway_s);
        ok.set_leeway(config.leeway_s);
        let tenants = TenantDirectory::new(store);
        tenants.follow(platform.bus());
        let dummy_hash = platform
            .hash_password(&saas_core::crypto::random_token(16))
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let from = config
            .mail_from
            .clone()
            .unwrap_or_else(|| format!("noreply@{}", config.base_domain));
        let mailer = mail::Mailer::new(config.smtp_url.as_deref(), &from, &config.data_dir)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Self(Arc::new(Inner {
            proxies: TrustedProxies(config.trusted_proxies.clone()),
            platform,
            cache,
            config,
            tenants,
            tenant_keys: Arc::new(tk),
            operator_keys: Arc::new(ok),
            dummy_hash,
            mailer,
        })))
    }

    /// Domain services.
    pub fn platform(&self) -> &Platform {
        &self.0.platform
    }
    /// The store.
    pub fn store(&self) -> &Store {
        self.0.platform.store()
    }
    /// The cache.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.0.cache
    }
    /// Settings.
    pub fn config(&self) -> &ApiConfig {
        &self.0.config
    }
    /// Tenant token keys.
    pub fn tenant_keys(&self) -> &Keys {
        &self.0.tenant_keys
    }
    /// Operator token keys.
    pub fn operator_keys(&self) -> &Keys {
        &self.0.operator_keys
    }
    /// Slug → tenant directory.
    pub fn tenants(&self) -> &TenantDirectory {
        &self.0.tenants
    }
    pub(crate) fn dummy_hash(&self) -> &str {
        &self.0.dummy_hash
    }
    /// Outgoing mail.
    pub fn mailer(&self) -> &mail::Mailer {
        &self.0.mailer
    }
}

/// Verifies a password off the async threads (argon2 is CPU-bound).
pub(crate) async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || saas_core::crypto::verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

/// The routers of each host kind.
#[derive(Clone)]
struct Hosts {
    state: AppState,
    apex: Router,
    operator: Router,
    tenant: Router,
    host_problem: Option<HostProblem>,
}

/// Renders a host-level problem (unknown host, suspended tenant) for a browser.
pub type HostProblem = Arc<dyn Fn(&Problem, &Request) -> Option<Response> + Send + Sync>;

/// Extra routers served beside the API on the same hosts (the web panel): every path outside
/// `/api/` goes to the router of the request's host kind. Only the crate that builds them
/// depends on this one, never the other way round.
#[derive(Clone)]
pub struct Panels {
    /// `<base>`.
    pub apex: Router,
    /// `operator.<base>`.
    pub operator: Router,
    /// `SLUG.<base>`.
    pub tenant: Router,
    /// Asked first when the host cannot be served (None = the problem+json answer).
    pub host_problem: HostProblem,
}

/// The whole API: host dispatch, problem+json fallbacks, body limit. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so client addresses are known.
pub fn app(state: AppState) -> Router {
    build(state, None)
}

/// The API plus the web panel's routers on the same hosts and listener.
pub fn app_with_panels(state: AppState, panels: Panels) -> Router {
    build(state, Some(panels))
}

fn build(state: AppState, panels: Option<Panels>) -> Router {
    let method = || async {
        Problem::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
        )
        .detail("this endpoint does not accept that method; see /api/v1/openapi.json")
        .into_response()
    };
    let finish = |r: Router<AppState>, panel: Option<Router>| {
        r.route(
            "/api/v1/openapi.json",
            axum::routing::get(openapi::document),
        )
        .fallback(move |req: Request| {
            let panel = panel.clone();
            async move {
                match panel {
                    Some(p) if !req.uri().path().starts_with("/api/") => {
                        match p.oneshot(req).await {
                            Ok(r) => r,
                            Err(e) => match e {},
                        }
                    }
                    _ => Problem::not_found("no such endpoint; see /api/v1/openapi.json")
                        .into_response(),
                }
            }
        })
        .method_not_allowed_fallback(method)
        .with_state(state.clone())
    };
    let p = panels.as_ref();
    let hosts = Hosts {
        apex: finish(signup::router(&state), p.map(|p| p.apex.clone())),
        operator: finish(operator::router(&state), p.map(|p| p.operator.clone())),
        tenant: finish(tenant::router(&state), p.map(|p| p.tenant.clone())),
        host_problem: p.map(|p| p.host_problem.clone()),
        state: state.clone(),
    };
    let limit = state.config().body_limit;
    Router::new()
        .fallback(move |req: Request| dispatch(hosts.clone(), req))
        .layer(DefaultBodyLimit::max(limit))
}

async fn dispatch(h: Hosts, mut req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let s = &h.state;
    let peer = host::peer_addr(req.extensions());
    let ip = s.0.proxies.client_ip(peer, req.headers());
    req.extensions_mut().insert(ClientIp(ip));
    let name = s.0.proxies.host(peer, req.headers());
    let resp = match host::resolve(s.tenants(), &s.config().base_domain, name.as_deref()).await {
        Err(p) => match &h.host_problem {
            Some(render) if !req.uri().path().starts_with("/api/") => {
                render(&p, &req).unwrap_or_else(|| p.into_response())
            }
            _ => p.into_response(),
        },
        Ok(kind) => {
            let router = match &kind {
                HostKind::Apex => h.apex.clone(),
                HostKind::Operator => h.operator.clone(),
                HostKind::Tenant(_) => h.tenant.clone(),
            };
            req.extensions_mut().insert(kind);
            guarded(router, req).await
        }
    };
    tracing::debug!(%method, path, host = name.as_deref().unwrap_or("-"), status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "api request");
    resp
}

/// Runs a request through a router; a panic in a handler becomes a generic 500 problem whose
/// cause is logged here, once (the body never carries it).
async fn guarded(router: Router, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match AssertUnwindSafe(router.oneshot(req)).catch_unwind().await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => match e {},
        Err(panic) => {
            let cause = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-text panic".into());
            Problem::internal(&format_args!(
                "handler panicked on {method} {path}: {cause}"
            ))
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_generic_500_problem() {
        let r: Router = Router::new().route(
            "/boom",
            axum::routing::get(|| async {
                if true {
                    panic!("secret detail");
                }
                "never"
            }),
        );
        let req = Request::builder()
            .uri("/boom")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = guarded(r, req).await;
        assert_eq!(resp.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            resp.headers()[axum::http::header::CONTENT_TYPE],
            problem::PROBLEM_JSON
        );
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("logged"), "{text}");
    }
}
