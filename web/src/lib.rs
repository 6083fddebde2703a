//! Server-rendered web panel: the public apex (landing page, signup), each tenant's panel on
//! `SLUG.<base>` and the operator console on `operator.<base>`.
//!
//! It plugs into `tenant_api`'s app ([`tenant_api::app_with_panels`]): the API's host routing
//! picks the router, every path outside `/api/` comes here. Sign-in reuses the API's password
//! checks, signing keys, refresh families (a panel session *is* a refresh family, so logout and
//! revocation survive restarts), login limiter and role table. Templates are askama, assets are
//! embedded ([`assets`]); no page needs JavaScript.
//!
//! Must not be a dependency of `tenant-api`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod apex;
pub mod assets;
mod charts;
mod console;
mod panel;
pub mod session;
mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Request};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::Response;
use tenant_api::problem::Problem;
use tenant_api::{AppState, Panels};

/// Settings of the panel.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Lifetime of a tenant user's session (absolute; sign in again after it).
    pub session_ttl: Duration,
    /// Lifetime of an operator's session.
    pub operator_session_ttl: Duration,
    /// How long a Disconnect button waits for the router's answer before saying so.
    pub coa_wait: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(12 * 3600),
            operator_session_ttl: Duration::from_secs(4 * 3600),
            coa_wait: Duration::from_secs(5),
        }
    }
}

struct Inner {
    api: AppState,
    config: WebConfig,
}

/// State of the panel's handlers: the API's state plus the panel's settings.
#[derive(Clone)]
pub struct WebState(Arc<Inner>);

impl WebState {
    /// The API state (store, platform, keys, settings).
    pub fn api(&self) -> &AppState {
        &self.0.api
    }
    /// Panel settings.
    pub fn config(&self) -> &WebConfig {
        &self.0.config
    }
}

impl FromRef<WebState> for AppState {
    fn from_ref(s: &WebState) -> AppState {
        s.0.api.clone()
    }
}

/// The panel's routers for [`tenant_api::app_with_panels`].
pub fn panels(api: &AppState, config: WebConfig) -> Panels {
    let ws = WebState(Arc::new(Inner {
        api: api.clone(),
        config,
    }));
    let finish = |r: Router<WebState>| {
        r.route("/assets/{name}", axum::routing::get(assets::serve))
            .fallback(|| async {
                view::WebError::from(Problem::not_found("there is no such page"))
            })
            .layer(from_fn_with_state(ws.clone(), session::layer))
            .layer(from_fn(view::security_headers))
            .with_state(ws.clone())
    };
    Panels {
        apex: finish(apex::router(&ws)),
        operator: finish(console::router(&ws)),
        tenant: finish(panel::router(&ws)),
        host_problem: Arc::new(|p: &Problem, req: &Request| -> Option<Response> {
            Some(view::host_problem(p, req))
        }),
    }
}
