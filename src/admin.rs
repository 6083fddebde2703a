//! The admin listener: `/healthz` (alive), `/readyz` (store reachable, listeners bound, demo seeded)
//! and `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use saas_core::metrics::Metrics;
use saas_core::store::Store;

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    pub store: Store,
    pub metrics: Metrics,
    /// Set once every configured listener is bound and `--demo` seeding finished.
    pub started: Arc<AtomicBool>,
}

/// The admin router.
pub fn router(state: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(s): State<Readiness>) -> impl IntoResponse {
    if !s.started.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: listeners or demo seeding not finished\n".to_owned(),
        );
    }
    match tokio::time::timeout(std::time::Duration::from_secs(2), s.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store did not answer within 2 s\n".to_owned(),
        ),
    }
}

async fn metrics(State(s): State<Readiness>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}
