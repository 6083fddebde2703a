//! Host routing and problem+json errors.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use saas_core::model::TenantStatus;
use saas_core::platform::Actor;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn hosts_route_to_tenant_apex_operator_or_a_problem() {
    let e = env(saas_core::testing::sqlite().await).await;
    provision(&e.platform, "alpha").await;
    // Unknown tenant: 404 problem.
    let r = call(&e.app, "GET", &host("nosuch"), "/api/v1/me", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert!(r.kind().ends_with("unknown-tenant"), "{}", r.body);
    // A host outside the zone.
    let r = call(&e.app, "GET", "evil.example.com", "/api/v1/me", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.kind().ends_with("unknown-host"));
    // Apex: public endpoints; the port is ignored.
    let r = call(
        &e.app,
        "GET",
        &format!("{BASE}:8080"),
        "/api/v1/signup/check?slug=zeta",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"available": true, "reason": null}));
    // The tenant login does not exist on the apex.
    let r = call(&e.app, "GET", BASE, "/api/v1/me", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Operator host needs an operator token.
    let r = call(
        &e.app,
        "GET",
        &format!("operator.{BASE}"),
        "/api/v1/operator/tenants",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // OpenAPI on every host.
    for h in [BASE.to_owned(), host("alpha"), format!("operator.{BASE}")] {
        let r = call(&e.app, "GET", &h, "/api/v1/openapi.json", None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["openapi"], "3.1.0");
    }
    // Suspended: 403 saying so; the directory follows the bus event.
    let token = owner(&e.app, "alpha").await;
    e.platform
        .set_tenant_status("alpha", TenantStatus::Suspended, &Actor::cli())
        .await
        .unwrap();
    let mut suspended = None;
    for _ in 0..40 {
        let r = call(
            &e.app,
            "GET",
            &host("alpha"),
            "/api/v1/me",
            Some(&token),
            None,
        )
        .await;
        if r.status == StatusCode::FORBIDDEN {
            suspended = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = suspended.expect("suspension seen within 4 s");
    assert!(
        r.body["detail"].as_str().unwrap().contains("suspended"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn trusted_proxy_headers_are_believed_only_from_trusted_proxies() {
    let ts = saas_core::testing::sqlite().await;
    let mut cfg = config(&ts);
    cfg.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    let e = env_with(ts, cfg).await;
    provision(&e.platform, "alpha").await;
    let req = |peer: &str| {
        let mut r = Request::builder()
            .uri("/api/v1/signup/check?slug=abc")
            .header("host", "nosuch.saas.test")
            .header("x-forwarded-host", BASE)
            .body(Body::empty())
            .unwrap();
        r.extensions_mut().insert(axum::extract::ConnectInfo(
            format!("{peer}:1234")
                .parse::<std::net::SocketAddr>()
                .unwrap(),
        ));
        r
    };
    assert_eq!(raw(&e.app, req("10.1.2.3")).await.status, StatusCode::OK);
    assert_eq!(
        raw(&e.app, req("198.51.100.7")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn errors_are_problems_naming_what_is_wrong() {
    let e = env(saas_core::testing::sqlite().await).await;
    provision(&e.platform, "alpha").await;
    let h = host("alpha");
    // Malformed JSON.
    let mut req = Request::builder()
        .method("POST")
        .uri("/api/v1/auth/login")
        .header("host", &h)
        .header("content-type", "application/json")
        .body(Body::from("{\"email\": "))
        .unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        "192.0.2.1:1".parse::<std::net::SocketAddr>().unwrap(),
    ));
    let r = raw(&e.app, req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert!(r.kind().ends_with("malformed-json"), "{}", r.body);
    // Missing field → 422 naming it.
    let r = call(
        &e.app,
        "POST",
        &h,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "a@b.c"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "password");
    // Wrong type.
    let r = call(
        &e.app,
        "POST",
        &h,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "a@b.c", "password": 3})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "password", "{}", r.body);
    // Body too large.
    let big = "x".repeat(200 * 1024);
    let r = call(
        &e.app,
        "POST",
        &h,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": big, "password": "p"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    // Unknown path and method.
    let r = call(&e.app, "GET", &h, "/api/v1/nothing", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let r = call(&e.app, "PUT", &h, "/api/v1/me", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    // Validation with a field.
    let token = owner(&e.app, "alpha").await;
    let r = call(
        &e.app,
        "PATCH",
        &h,
        "/api/v1/settings",
        Some(&token),
        Some(json!({"timezone": "Mars/Olympus"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "timezone");
    // A non-UUID id is simply not found.
    let r = call(
        &e.app,
        "GET",
        &h,
        "/api/v1/subscribers/not-a-uuid",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
