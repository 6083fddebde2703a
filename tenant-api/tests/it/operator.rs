//! Operator host: TOTP login, tenants, suspend/resume, limits, act-as (audited).

use axum::http::StatusCode;
use saas_core::ids::Email;
use saas_core::platform::Actor;
use serde_json::json;

use crate::support::*;

pub fn op_host() -> String {
    format!("operator.{BASE}")
}

pub async fn operator_token(e: &Env) -> String {
    let email = Email::parse("ops@platform.example").unwrap();
    let (_, uri) = e
        .platform
        .create_operator(&email, PASSWORD, &Actor::cli())
        .await
        .unwrap();
    assert!(uri.starts_with("otpauth://totp/"));
    let (_, _, secret) =
        e.ts.store
            .platform()
            .operator_by_email(&email)
            .await
            .unwrap()
            .unwrap();
    // Without a code: 401 telling how to enrol.
    let r = call(
        &e.app,
        "POST",
        &op_host(),
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email.as_str(), "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body["detail"].as_str().unwrap().contains("TOTP"));
    let r = call(
        &e.app,
        "POST",
        &op_host(),
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email.as_str(), "password": PASSWORD, "totp": "000000"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let now = chrono::Utc::now().timestamp() as u64;
    let code = saas_core::crypto::totp::code(&secret, now);
    let r = call(
        &e.app,
        "POST",
        &op_host(),
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email.as_str(), "password": PASSWORD, "totp": code})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (op, _, _) =
        e.ts.store
            .platform()
            .operator_by_email(&email)
            .await
            .unwrap()
            .unwrap();
    assert!(op.totp_enrolled);
    r.body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn operator_logs_in_with_totp_manages_tenants_and_acts_as_one() {
    let e = env(saas_core::testing::sqlite().await).await;
    provision(&e.platform, "alpha").await;
    provision(&e.platform, "beta").await;
    let op = operator_token(&e).await;
    let oh = op_host();
    // An operator token means nothing on a tenant host, a tenant token nothing here.
    assert_eq!(
        call(&e.app, "GET", &host("alpha"), "/api/v1/me", Some(&op), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let owner = owner(&e.app, "alpha").await;
    assert_eq!(
        call(
            &e.app,
            "GET",
            &oh,
            "/api/v1/operator/tenants",
            Some(&owner),
            None
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    // Create through the pipeline.
    let r = call(&e.app, "POST", &oh, "/api/v1/operator/tenants", Some(&op), Some(json!({"slug": "gamma", "name": "Gamma", "email": "o@gamma.example", "password": PASSWORD, "limits": {"max_subscribers": 10, "max_nas": 2}}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = call(
        &e.app,
        "GET",
        &oh,
        "/api/v1/operator/tenants",
        Some(&op),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3);
    assert!(r.body["items"][0]["subscribers"].is_number());
    // Limits.
    let r = call(
        &e.app,
        "PATCH",
        &oh,
        "/api/v1/operator/tenants/gamma",
        Some(&op),
        Some(json!({"limits": {"max_subscribers": 5, "max_nas": 1}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["limits"]["max_subscribers"], 5);
    // QuotaSync interval: set, refused out of range (nothing else changes), back to the default.
    let patch = |body: serde_json::Value| {
        call(
            &e.app,
            "PATCH",
            &oh,
            "/api/v1/operator/tenants/gamma",
            Some(&op),
            Some(body),
        )
    };
    let r = patch(json!({"quota_sync_s": 60})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["quota_sync_s"], 60);
    let r = patch(json!({"name": "Renamed", "quota_sync_s": 5})).await;
    assert_eq!(r.status.as_u16() / 100, 4, "{}", r.body);
    assert!(
        r.body["detail"].to_string().contains("10 to 3600"),
        "{}",
        r.body
    );
    let r = patch(json!({"quota_sync_s": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["quota_sync_s"].is_null(), "{}", r.body);
    assert_eq!(
        r.body["name"], "Gamma",
        "the refused change renamed nothing"
    );
    // Suspend → the tenant host says suspended; resume → back.
    let r = call(
        &e.app,
        "POST",
        &oh,
        "/api/v1/operator/tenants/gamma/suspend",
        Some(&op),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(
        &e.app,
        "GET",
        &host("gamma"),
        "/api/v1/openapi.json",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &e.app,
        "POST",
        &oh,
        "/api/v1/operator/tenants/gamma/resume",
        Some(&op),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        call(
            &e.app,
            "GET",
            &host("gamma"),
            "/api/v1/openapi.json",
            None,
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    // Act as alpha: works on alpha only, and is in both audit logs with the address.
    let r = call(
        &e.app,
        "POST",
        &oh,
        "/api/v1/operator/tenants/alpha/act-as",
        Some(&op),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let act = r.body["access_token"].as_str().unwrap().to_owned();
    let r = call(
        &e.app,
        "POST",
        &host("alpha"),
        "/api/v1/subscribers",
        Some(&act),
        Some(json!({"username": "byop", "password": "pw"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        call(
            &e.app,
            "GET",
            &host("beta"),
            "/api/v1/subscribers",
            Some(&act),
            None
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let r = call(
        &e.app,
        "GET",
        &host("alpha"),
        "/api/v1/audit-log",
        Some(&owner),
        None,
    )
    .await;
    let items = r.body["items"].as_array().unwrap();
    let act_line = items
        .iter()
        .find(|i| i["action"] == "operator.act_as")
        .expect("act-as audited");
    assert_eq!(act_line["client_ip"], CLIENT);
    let created = items
        .iter()
        .find(|i| i["action"] == "subscriber.create")
        .unwrap();
    assert!(
        created["actor"]
            .as_str()
            .unwrap()
            .contains("acting as tenant")
    );
    // Stats, relays, DNS records.
    for p in [
        "/api/v1/operator/stats",
        "/api/v1/operator/relays",
        "/api/v1/operator/dns_records",
    ] {
        let r = call(&e.app, "GET", &oh, p, Some(&op), None).await;
        assert_eq!(r.status, StatusCode::OK, "{p}: {}", r.body);
    }
    // Delete: gone from the host.
    let r = call(
        &e.app,
        "DELETE",
        &oh,
        "/api/v1/operator/tenants/gamma",
        Some(&op),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(
            &e.app,
            "GET",
            &host("gamma"),
            "/api/v1/openapi.json",
            None,
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // Logout of the operator.
    assert_eq!(
        call(&e.app, "POST", &oh, "/api/v1/auth/logout", Some(&op), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(
            &e.app,
            "GET",
            &oh,
            "/api/v1/operator/stats",
            Some(&op),
            None
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
}
