//! Tokens: expiry, refresh rotation, family revocation on reuse, logout surviving a restart,
//! the lockout ladder.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    for ts in saas_core::testing::each_backend().await {
        let e = env(ts).await;
        provision(&e.platform, "alpha").await;
        let h = host("alpha");
        let (access, r1) = login(&e.app, "alpha", "owner@alpha.example").await;
        let me = call(&e.app, "GET", &h, "/api/v1/me", Some(&access), None).await;
        assert_eq!(me.status, StatusCode::OK);
        assert_eq!(me.body["user"]["role"], "owner");
        // Rotation.
        let r = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": r1})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r2 = r.body["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(r1, r2);
        let a2 = r.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(
            call(&e.app, "GET", &h, "/api/v1/me", Some(&a2), None)
                .await
                .status,
            StatusCode::OK
        );
        // Reuse of r1: 401, and the family is gone — r2 no longer works either.
        let r = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": r1})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body["detail"].as_str().unwrap().contains("already used"));
        let r = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": r2})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", e.ts.backend);
        // A refresh token of alpha is unknown on beta.
        provision(&e.platform, "beta").await;
        let (_, rb) = login(&e.app, "alpha", "owner@alpha.example").await;
        let r = call(
            &e.app,
            "POST",
            &host("beta"),
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": rb})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn logout_revokes_and_survives_a_restart() {
    for ts in saas_core::testing::each_backend().await {
        let e = env(ts).await;
        provision(&e.platform, "alpha").await;
        let h = host("alpha");
        let (keep, _) = login(&e.app, "alpha", "admin@alpha.example").await;
        let (access, refresh) = login(&e.app, "alpha", "owner@alpha.example").await;
        let r = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/auth/logout",
            Some(&access),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(
            call(&e.app, "GET", &h, "/api/v1/me", Some(&access), None)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        let app2 = restart(&e).await;
        // Revocations are in the store: a new process refuses the token and the refresh too.
        let r = call(&app2, "GET", &h, "/api/v1/me", Some(&access), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body["detail"].as_str().unwrap().contains("revoked"));
        let r = call(
            &app2,
            "POST",
            &h,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // Keys are in the store too: another login's token still works after the restart.
        assert_eq!(
            call(&app2, "GET", &h, "/api/v1/me", Some(&keep), None)
                .await
                .status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn access_tokens_expire() {
    let ts = saas_core::testing::sqlite().await;
    let mut cfg = config(&ts);
    cfg.access_ttl = std::time::Duration::from_secs(1);
    let e = env_with(ts, cfg).await;
    provision(&e.platform, "alpha").await;
    let (access, refresh) = login(&e.app, "alpha", "owner@alpha.example").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = call(
        &e.app,
        "GET",
        &host("alpha"),
        "/api/v1/me",
        Some(&access),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.body["detail"].as_str().unwrap().contains("expired"),
        "{}",
        r.body
    );
    let r = call(
        &e.app,
        "POST",
        &host("alpha"),
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn failed_logins_climb_the_lockout_ladder_per_address_and_per_account() {
    let e = env(saas_core::testing::sqlite().await).await;
    provision(&e.platform, "alpha").await;
    let h = host("alpha");
    let body = |pw: &str| Some(json!({"email": "owner@alpha.example", "password": pw}));
    for _ in 0..5 {
        let r = call_from(
            &e.app,
            "192.0.2.66",
            "POST",
            &h,
            "/api/v1/auth/login",
            None,
            body("wrong"),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is refused, with Retry-After.
    let r = call_from(
        &e.app,
        "192.0.2.66",
        "POST",
        &h,
        "/api/v1/auth/login",
        None,
        body(PASSWORD),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((50..=60).contains(&retry), "{retry}");
    // Another address is not affected for other accounts...
    let r = call_from(
        &e.app,
        "192.0.2.67",
        "POST",
        &h,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "admin@alpha.example", "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // ...but the attacked account is locked from every address (per-account lockout).
    let r = call_from(
        &e.app,
        "192.0.2.67",
        "POST",
        &h,
        "/api/v1/auth/login",
        None,
        body(PASSWORD),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("this account"));
    // The same e-mail on another tenant is another account.
    provision(&e.platform, "beta").await;
    let r = call_from(
        &e.app,
        "192.0.2.67",
        "POST",
        &host("beta"),
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "owner@beta.example", "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // The per-address rate limit.
    let mut limited = false;
    for _ in 0..40 {
        let r = call_from(
            &e.app,
            "192.0.2.68",
            "POST",
            &h,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "x@y.z"})),
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
    }
    assert!(limited);
}

#[tokio::test]
async fn api_tokens_are_shown_once_scoped_and_revocable() {
    let e = env(saas_core::testing::sqlite().await).await;
    provision(&e.platform, "alpha").await;
    provision(&e.platform, "beta").await;
    let h = host("alpha");
    let owner = owner(&e.app, "alpha").await;
    let r = call(
        &e.app,
        "POST",
        &h,
        "/api/v1/api-tokens",
        Some(&owner),
        Some(json!({"name": "ci", "scope": "read"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let tok = r.body["token"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(tok.starts_with("pp_"));
    assert_eq!(
        call(&e.app, "GET", &h, "/api/v1/subscribers", Some(&tok), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = call(
        &e.app,
        "POST",
        &h,
        "/api/v1/subscribers",
        Some(&tok),
        Some(json!({"username": "u", "password": "p"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        call(
            &e.app,
            "GET",
            &host("beta"),
            "/api/v1/subscribers",
            Some(&tok),
            None
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let list = call(&e.app, "GET", &h, "/api/v1/api-tokens", Some(&owner), None).await;
    assert!(
        !list.body.to_string().contains(&tok),
        "token text never listed"
    );
    let r = call(
        &e.app,
        "DELETE",
        &h,
        &format!("/api/v1/api-tokens/{id}"),
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&e.app, "GET", &h, "/api/v1/subscribers", Some(&tok), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_role_change_disable_or_delete_refuses_tokens_already_issued() {
    for ts in saas_core::testing::each_backend().await {
        let e = env(ts).await;
        provision(&e.platform, "alpha").await;
        let h = host("alpha");
        let owner_tok = owner(&e.app, "alpha").await;
        let (admin_tok, admin_refresh) = login(&e.app, "alpha", "admin@alpha.example").await;
        let (staff_tok, _) = login(&e.app, "alpha", "staff@alpha.example").await;
        // A second node has loaded its revocation set and accepts the token.
        let node2 = other_node(&e).await;
        let me = |app, tok| async move {
            call(app, "GET", &host("alpha"), "/api/v1/me", Some(tok), None)
                .await
                .status
        };
        assert_eq!(me(&node2, &admin_tok).await, StatusCode::OK);
        let users = call(&e.app, "GET", &h, "/api/v1/users", Some(&owner_tok), None).await;
        let id_of = |email: &str| {
            users.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["email"] == email)
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (admin, staff) = (id_of("admin@alpha.example"), id_of("staff@alpha.example"));
        // Demoted to viewer: the admin token is refused here at once, on the other node
        // within its reload interval; a refresh carries the new role.
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/users/{admin}"),
            Some(&owner_tok),
            Some(json!({"role": "viewer"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = call(&e.app, "GET", &h, "/api/v1/me", Some(&admin_tok), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains("role"));
        let mut refused = false;
        for _ in 0..40 {
            if me(&node2, &admin_tok).await == StatusCode::UNAUTHORIZED {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            refused,
            "the other node still accepts the demoted token ({})",
            e.ts.backend
        );
        let r = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": admin_refresh})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let viewer_tok = r.body["access_token"].as_str().unwrap().to_owned();
        let r = call(&e.app, "GET", &h, "/api/v1/me", Some(&viewer_tok), None).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "the refreshed token is not cut off: {}",
            r.body
        );
        assert_eq!(r.body["user"]["role"], "viewer");
        let r = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/plans",
            Some(&viewer_tok),
            Some(json!({"name": "x", "download_kbps": 1, "upload_kbps": 1, "price_cents": 0})),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // Disabled: even the fresh token goes.
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/users/{admin}"),
            Some(&owner_tok),
            Some(json!({"disabled": true})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(me(&e.app, &viewer_tok).await, StatusCode::UNAUTHORIZED);
        // Deleted: the staff token goes; a restart (the store) still refuses it.
        assert_eq!(me(&e.app, &staff_tok).await, StatusCode::OK);
        let r = call(
            &e.app,
            "DELETE",
            &h,
            &format!("/api/v1/users/{staff}"),
            Some(&owner_tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        assert_eq!(me(&e.app, &staff_tok).await, StatusCode::UNAUTHORIZED);
        let node3 = other_node(&e).await;
        assert_eq!(me(&node3, &staff_tok).await, StatusCode::UNAUTHORIZED);
        // The owner was never touched.
        assert_eq!(me(&e.app, &owner_tok).await, StatusCode::OK);
    }
}
