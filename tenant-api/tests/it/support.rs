//! Test environment: store, bus, platform and the API app; request helpers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use saas_core::bus::Bus;
use saas_core::cache::MemoryCache;
use saas_core::crypto::HashCost;
use saas_core::ids::{Email, Slug};
use saas_core::model::Role;
use saas_core::platform::{Actor, Platform, ProvisionRequest};
use saas_core::testing::TestStore;
use serde_json::{Value, json};
use tenant_api::{ApiConfig, AppState};
use tower::ServiceExt as _;

pub const BASE: &str = "saas.test";
pub const PASSWORD: &str = "correct horse";
pub const CLIENT: &str = "192.0.2.10";

pub struct Env {
    pub ts: TestStore,
    pub platform: Platform,
    pub app: Router,
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Resp {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

pub fn config(ts: &TestStore) -> ApiConfig {
    let mut c = ApiConfig::new(BASE, ts.dir.path());
    c.leeway_s = 0;
    c
}

pub async fn env_with(ts: TestStore, cfg: ApiConfig) -> Env {
    let bus = Bus::start(ts.store.clone(), None).await.expect("bus");
    let platform = Platform::new(ts.store.clone(), bus, HashCost::cheap(), "10.200.0.0/24");
    let state = AppState::new(platform.clone(), Arc::new(MemoryCache::default()), cfg)
        .await
        .expect("api state");
    let app = tenant_api::app(state);
    Env { ts, platform, app }
}

pub async fn env(ts: TestStore) -> Env {
    let cfg = config(&ts);
    env_with(ts, cfg).await
}

/// A fresh app over the same store (a process restart as far as the API is concerned).
pub async fn restart(e: &Env) -> Router {
    app_over(e, e.ts.store.clone()).await
}

/// Another node: a new app over its own connection to the same database (so its own
/// in-memory sets too).
pub async fn other_node(e: &Env) -> Router {
    let store = saas_core::Store::connect(
        &e.ts.options,
        saas_core::crypto::SecretBox::new(e.ts.key.clone(), vec![]),
    )
    .await
    .expect("second store handle");
    app_over(e, store).await
}

async fn app_over(e: &Env, store: saas_core::Store) -> Router {
    let bus = Bus::start(store.clone(), None).await.expect("bus");
    let platform = Platform::new(store, bus, HashCost::cheap(), "10.200.0.0/24");
    let state = AppState::new(platform, Arc::new(MemoryCache::default()), config(&e.ts))
        .await
        .expect("api state");
    tenant_api::app(state)
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
    for role in [Role::Admin, Role::Staff, Role::Viewer] {
        ops.add_user(
            &Email::parse(&format!("{role}@{slug}.example")).unwrap(),
            PASSWORD,
            role,
        )
        .await
        .unwrap();
    }
}

pub fn host(slug: &str) -> String {
    format!("{slug}.{BASE}")
}

pub async fn call_from(
    app: &Router,
    ip: &str,
    method: &str,
    host: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .header("host", host);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let mut req = b.body(body).unwrap();
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    raw(app, req).await
}

pub async fn raw(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    Resp {
        status,
        body,
        headers,
    }
}

pub async fn call(
    app: &Router,
    method: &str,
    host: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    call_from(app, CLIENT, method, host, path, token, body).await
}

/// Logs in on a tenant host; returns (access, refresh).
pub async fn login(app: &Router, slug: &str, email: &str) -> (String, String) {
    let r = call(
        app,
        "POST",
        &host(slug),
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "login {email}: {}", r.body);
    (
        r.body["access_token"].as_str().unwrap().to_owned(),
        r.body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

pub async fn owner(app: &Router, slug: &str) -> String {
    login(app, slug, &format!("owner@{slug}.example")).await.0
}
