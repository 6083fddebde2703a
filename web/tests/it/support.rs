//! Test environment: store, platform, the API app with the panel; a tiny cookie-keeping client.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use saas_core::bus::Bus;
use saas_core::cache::MemoryCache;
use saas_core::crypto::HashCost;
use saas_core::ids::{Email, Slug};
use saas_core::model::Role;
use saas_core::platform::{Actor, Platform, ProvisionRequest};
use saas_core::testing::TestStore;
use tenant_api::{ApiConfig, AppState};
use tower::ServiceExt as _;

pub const BASE: &str = "saas.test";
pub const PASSWORD: &str = "correct horse";

pub struct Env {
    pub ts: TestStore,
    pub platform: Platform,
    pub app: Router,
}

pub async fn app_over(ts: &TestStore) -> (Platform, Router) {
    app_with(ts, web::WebConfig::default()).await
}

pub async fn app_with(ts: &TestStore, wc: web::WebConfig) -> (Platform, Router) {
    let bus = Bus::start(ts.store.clone(), None).await.expect("bus");
    let platform = Platform::new(ts.store.clone(), bus, HashCost::cheap(), "10.200.0.0/24");
    let mut cfg = ApiConfig::new(BASE, ts.dir.path());
    cfg.leeway_s = 0;
    let state = AppState::new(platform.clone(), Arc::new(MemoryCache::default()), cfg)
        .await
        .expect("api state");
    let app = tenant_api::app_with_panels(state.clone(), web::panels(&state, wc));
    (platform, app)
}

pub async fn env() -> Env {
    env_on(saas_core::testing::sqlite().await).await
}

/// The app over a given store (tests that run on every backend).
pub async fn env_on(ts: TestStore) -> Env {
    let (platform, app) = app_over(&ts).await;
    Env { ts, platform, app }
}

/// One environment per backend: SQLite, and PostgreSQL (under RLS) when the test services run.
pub async fn each_env() -> Vec<Env> {
    let mut out = Vec::new();
    for ts in saas_core::testing::each_backend().await {
        out.push(env_on(ts).await);
    }
    out
}

pub async fn provision(p: &Platform, slug: &str) {
    let req = ProvisionRequest {
        slug: Slug::parse(slug).unwrap(),
        name: format!("{slug} ISP"),
        owner_email: Email::parse(&format!("owner@{slug}.example")).unwrap(),
        owner_password: PASSWORD.into(),
        timezone: "UTC".into(),
        limits: None,
    };
    p.provision_tenant(&req, &Actor::cli()).await.unwrap();
    let ops = p.tenant_ops(slug, Actor::cli()).await.unwrap();
    ops.add_user(
        &Email::parse(&format!("viewer@{slug}.example")).unwrap(),
        PASSWORD,
        Role::Viewer,
    )
    .await
    .unwrap();
}

pub fn host(slug: &str) -> String {
    format!("{slug}.{BASE}")
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        let marker = "name=\"_csrf\" value=\"";
        let i = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        self.body[i..].split('"').next().unwrap().to_owned()
    }
}

/// A browser: keeps the cookies it is given (per host, as host-only cookies are).
#[derive(Default)]
pub struct Browser {
    pub cookies: Vec<(String, String, String)>,
}

impl Browser {
    pub fn cookie_header(&self, host: &str) -> String {
        self.cookies
            .iter()
            .filter(|(h, _, _)| h == host)
            .map(|(_, k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, host: &str, r: &Resp) {
        for c in r.set_cookies() {
            let first = c.split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            self.cookies.retain(|(h, n, _)| !(h == host && n == k));
            if !v.is_empty() && !c.contains("Max-Age=0") {
                self.cookies.push((host.into(), k.into(), v.into()));
            }
        }
    }

    pub async fn get(&mut self, app: &Router, host: &str, path: &str) -> Resp {
        self.send(app, "GET", host, path, None).await
    }

    pub async fn post(
        &mut self,
        app: &Router,
        host: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Resp {
        let body = serde_urlencoded::to_string(form).unwrap();
        self.send(app, "POST", host, path, Some(body)).await
    }

    pub async fn send(
        &mut self,
        app: &Router,
        method: &str,
        host: &str,
        path: &str,
        body: Option<String>,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        let cookies = self.cookie_header(host);
        if !cookies.is_empty() {
            b = b.header(header::COOKIE, cookies);
        }
        let body = match body {
            Some(s) => {
                b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(s)
            }
            None => Body::empty(),
        };
        let mut req = b.body(body).unwrap();
        let addr: SocketAddr = "192.0.2.10:40000".parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        let r = Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        self.keep(host, &r);
        r
    }

    /// Signs in on a tenant host; asserts the redirect.
    pub async fn login(&mut self, app: &Router, slug: &str, email: &str) -> Resp {
        let h = host(slug);
        let page = self.get(app, &h, "/login").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.csrf();
        let r = self
            .post(
                app,
                &h,
                "/login",
                &[("_csrf", &csrf), ("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "login {email}: {}", r.body);
        r
    }
}
