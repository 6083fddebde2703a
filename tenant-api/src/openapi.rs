//! `/api/v1/openapi.json` on every host.
//!
//! Hand-maintained summary of the paths (OpenAPI 3.1); generating it from the handlers with
//! utoipa is still to do.

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

fn op(summary: &str, secured: bool) -> Value {
    let mut o = json!({
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
            "default": {"description": "Problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        }
    });
    if secured {
        o["security"] = json!([{"bearer": []}]);
    }
    o
}

/// The OpenAPI document.
pub async fn document() -> impl IntoResponse {
    let mut paths = Map::new();
    let mut add = |path: &str, method: &str, summary: &str, secured: bool| {
        let e = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        e[method] = op(summary, secured);
    };
    add(
        "/api/v1/auth/login",
        "post",
        "Sign in (tenant or operator host)",
        false,
    );
    add(
        "/api/v1/auth/refresh",
        "post",
        "Rotate a refresh token",
        false,
    );
    add("/api/v1/auth/logout", "post", "Sign out", true);
    for (m, p, _) in crate::tenant::ENDPOINTS {
        add(p, &m.to_ascii_lowercase(), "Tenant endpoint", true);
    }
    add(
        "/api/v1/signup/check",
        "get",
        "Slug availability (apex)",
        false,
    );
    add(
        "/api/v1/signup",
        "post",
        "Create an ISP account (apex)",
        false,
    );
    add(
        "/api/v1/operator/tenants",
        "get",
        "Tenants with counts (operator)",
        true,
    );
    add(
        "/api/v1/operator/tenants",
        "post",
        "Create a tenant (operator)",
        true,
    );
    add(
        "/api/v1/operator/stats",
        "get",
        "Platform stats (operator)",
        true,
    );
    let doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "ProxPanel API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Problem": {"type": "object", "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}}}}}
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
}
