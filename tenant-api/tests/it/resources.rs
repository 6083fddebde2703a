//! Resources: cross-tenant isolation on every resource, the role matrix, limits, audit lines.

use axum::http::StatusCode;
use saas_core::model::*;
use saas_core::platform::Actor;
use serde_json::{Value, json};
use tenant_api::roles::{ApiRole, Perm, allows};

use crate::support::*;

/// A random 32-byte key in base64 (public keys are unique platform-wide).
fn random_key() -> String {
    use base64::Engine as _;
    let mut k = [0u8; 32];
    saas_core::crypto::fill_random(&mut k);
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// Gives a tenant one of everything; returns the ids by resource.
async fn populate(e: &Env, slug: &str) -> Value {
    let ops = e.platform.tenant_ops(slug, Actor::cli()).await.unwrap();
    let sub = ops
        .add_subscriber(
            NewSubscriber {
                username: format!("{slug}-user"),
                password: "secret".into(),
                plan_id: None,
                expires_at: None,
                static_ip: None,
                framed_ipv6_prefix: None,
                delegated_ipv6_prefix: None,
                mac_lock: None,
                sim_use: None,
            },
            None,
        )
        .await
        .unwrap();
    let plan = ops.scope().plans().await.unwrap().remove(0);
    let nas = ops
        .add_nas(&NewNas {
            name: format!("{slug}-nas"),
            vendor: NasVendor::Mikrotik,
            ip: None,
            secret: "s3cret".into(),
            message_auth: MessageAuthPolicy::Auto,
            coa_port: 3799,
            api_user: None,
            api_password: None,
            use_ssl: false,
        })
        .await
        .unwrap();
    let peer = ops
        .add_peer(&nas.name, &random_key(), "node1")
        .await
        .unwrap();
    let sid = ops
        .scope()
        .session_start(
            nas.id,
            Some(sub.id),
            &sub.username,
            "acct-1",
            None,
            None,
            saas_core::store::now(),
        )
        .await
        .unwrap();
    json!({"subscribers": sub.id, "plans": plan.id, "nas": nas.id, "peers": peer.id, "sessions": sid})
}

#[tokio::test]
async fn another_tenants_ids_are_not_found_and_its_tokens_unauthorized() {
    for ts in saas_core::testing::each_backend().await {
        let e = env(ts).await;
        provision(&e.platform, "alpha").await;
        provision(&e.platform, "beta").await;
        populate(&e, "alpha").await;
        let b = populate(&e, "beta").await;
        let a_tok = owner(&e.app, "alpha").await;
        let b_tok = owner(&e.app, "beta").await;
        let ha = host("alpha");
        for res in ["subscribers", "plans", "nas", "peers", "sessions"] {
            let id = b[res].as_str().unwrap();
            let r = call(
                &e.app,
                "GET",
                &ha,
                &format!("/api/v1/{res}/{id}"),
                Some(&a_tok),
                None,
            )
            .await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "GET {res} of beta on alpha ({}): {}",
                e.ts.backend,
                r.body
            );
            // And beta's own host finds it.
            let r = call(
                &e.app,
                "GET",
                &host("beta"),
                &format!("/api/v1/{res}/{id}"),
                Some(&b_tok),
                None,
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{res}");
            // The listing of alpha never shows it.
            let r = call(
                &e.app,
                "GET",
                &ha,
                &format!("/api/v1/{res}"),
                Some(&a_tok),
                None,
            )
            .await;
            assert!(!r.body.to_string().contains(id), "{res} listing leaks beta");
        }
        let sub = b["subscribers"].as_str().unwrap();
        let mutations = [
            (
                "PATCH",
                format!("/api/v1/subscribers/{sub}"),
                Some(json!({"status": "disabled"})),
            ),
            ("DELETE", format!("/api/v1/subscribers/{sub}"), None),
            (
                "POST",
                format!("/api/v1/subscribers/{sub}/renew"),
                Some(json!({"days": 3})),
            ),
            ("GET", format!("/api/v1/subscribers/{sub}/usage"), None),
            (
                "DELETE",
                format!("/api/v1/nas/{}", b["nas"].as_str().unwrap()),
                None,
            ),
            (
                "DELETE",
                format!("/api/v1/peers/{}", b["peers"].as_str().unwrap()),
                None,
            ),
            (
                "POST",
                format!(
                    "/api/v1/sessions/{}/disconnect",
                    b["sessions"].as_str().unwrap()
                ),
                None,
            ),
        ];
        for (m, path, body) in &mutations {
            let r = call(&e.app, m, &ha, path, Some(&a_tok), body.clone()).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {path}: {}", r.body);
        }
        // Beta's data is untouched.
        let r = call(
            &e.app,
            "GET",
            &host("beta"),
            &format!("/api/v1/subscribers/{sub}"),
            Some(&b_tok),
            None,
        )
        .await;
        assert_eq!(r.body["status"], "active");
        // A token of alpha on beta's host.
        for path in [
            "/api/v1/me",
            "/api/v1/subscribers",
            "/api/v1/nas",
            "/api/v1/plans",
            "/api/v1/peers",
            "/api/v1/sessions",
            "/api/v1/audit-log",
        ] {
            let r = call(&e.app, "GET", &host("beta"), path, Some(&a_tok), None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        }
    }
}

fn body_for(method: &str, path: &str) -> Option<Value> {
    // Unique names, so every role can create its own.
    let n = uuid::Uuid::new_v4().simple().to_string();
    match (method, path) {
        ("POST", "/api/v1/users") => Some(
            json!({"email": format!("u{n}@x.example"), "password": "longenough", "role": "viewer"}),
        ),
        ("POST", "/api/v1/api-tokens") => Some(json!({"name": "t", "scope": "read"})),
        ("POST", "/api/v1/plans") => Some(
            json!({"name": format!("p{n}"), "download_kbps": 1, "upload_kbps": 1, "price_cents": 0}),
        ),
        ("POST", "/api/v1/subscribers") => {
            Some(json!({"username": format!("s{n}"), "password": "pw"}))
        }
        ("POST", "/api/v1/nas") => Some(json!({"name": format!("n{n}")})),
        ("PATCH", "/api/v1/settings") => Some(json!({"name": "Renamed"})),
        ("PATCH", _) => Some(json!({})),
        ("POST", _) => Some(json!({})),
        _ => None,
    }
}

#[tokio::test]
async fn role_matrix_over_every_endpoint() {
    let e = env(saas_core::testing::sqlite().await).await;
    provision(&e.platform, "alpha").await;
    let ids = populate(&e, "alpha").await;
    let sub = ids["subscribers"].as_str().unwrap();
    let sess = ids["sessions"].as_str().unwrap();
    let nas = ids["nas"].as_str().unwrap();
    let missing = uuid::Uuid::new_v4();
    let t = e.platform.tenant_by_slug("alpha").await.unwrap();
    let viewer =
        e.ts.store
            .tenant(t.id)
            .users()
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.role == Role::Viewer)
            .unwrap()
            .id;
    let mut endpoints: Vec<(String, String, Perm)> = tenant_api::tenant::ENDPOINTS
        .iter()
        .map(|(m, p, perm)| (m.to_string(), p.to_string(), *perm))
        .collect();
    endpoints.extend([
        (
            "GET".into(),
            format!("/api/v1/subscribers/{sub}"),
            Perm::Read,
        ),
        (
            "PATCH".into(),
            format!("/api/v1/subscribers/{sub}"),
            Perm::Subscribers,
        ),
        (
            "POST".into(),
            format!("/api/v1/subscribers/{sub}/renew"),
            Perm::Subscribers,
        ),
        (
            "GET".into(),
            format!("/api/v1/subscribers/{sub}/usage"),
            Perm::Read,
        ),
        ("GET".into(), format!("/api/v1/nas/{nas}"), Perm::Read),
        ("GET".into(), format!("/api/v1/sessions/{sess}"), Perm::Read),
        (
            "POST".into(),
            format!("/api/v1/sessions/{sess}/disconnect"),
            Perm::Subscribers,
        ),
        (
            "GET".into(),
            format!("/api/v1/plans/{}", ids["plans"].as_str().unwrap()),
            Perm::Read,
        ),
        (
            "GET".into(),
            format!("/api/v1/peers/{}", ids["peers"].as_str().unwrap()),
            Perm::Read,
        ),
        (
            "GET".into(),
            format!("/api/v1/subscribers/{sub}/usage?period=daily&count=7"),
            Perm::Read,
        ),
        (
            "GET".into(),
            "/api/v1/subscribers?sort=-expiry".into(),
            Perm::Read,
        ),
        (
            "PATCH".into(),
            format!("/api/v1/plans/{}", ids["plans"].as_str().unwrap()),
            Perm::Settings,
        ),
        ("PATCH".into(), format!("/api/v1/nas/{nas}"), Perm::Settings),
        ("GET".into(), format!("/api/v1/users/{viewer}"), Perm::Users),
        (
            "PATCH".into(),
            format!("/api/v1/users/{viewer}"),
            Perm::Users,
        ),
        // Deletes of ids that do not exist: allowed roles get 404, the others 403.
        (
            "DELETE".into(),
            format!("/api/v1/plans/{missing}"),
            Perm::Settings,
        ),
        (
            "DELETE".into(),
            format!("/api/v1/nas/{missing}"),
            Perm::Settings,
        ),
        (
            "DELETE".into(),
            format!("/api/v1/users/{missing}"),
            Perm::Users,
        ),
    ]);
    let h = host("alpha");
    let roles = [
        (ApiRole::Owner, "owner@alpha.example"),
        (ApiRole::Admin, "admin@alpha.example"),
        (ApiRole::Staff, "staff@alpha.example"),
        (ApiRole::Viewer, "viewer@alpha.example"),
    ];
    for (role, email) in roles {
        let (tok, _) = login(&e.app, "alpha", email).await;
        for (m, path, perm) in &endpoints {
            let body = if m == "POST" && path == "/api/v1/peers" {
                Some(json!({"nas_id": nas}))
            } else {
                body_for(m, path)
            };
            let r = call(&e.app, m, &h, path, Some(&tok), body).await;
            if m == "DELETE" && path.ends_with(&missing.to_string()) && allows(role, *perm) {
                assert_eq!(
                    r.status,
                    StatusCode::NOT_FOUND,
                    "{role:?} {m} {path}: {}",
                    r.body
                );
            } else if m == "POST" && path == "/api/v1/peers" && allows(role, *perm) {
                // No relay in this process: the binary's serve test creates real peers.
                assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{}", r.body);
            } else if allows(role, *perm) {
                assert!(
                    r.status.is_success(),
                    "{role:?} {m} {path} should be allowed: {} {}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{role:?} {m} {path}: {}",
                    r.body
                );
            }
        }
    }
    // No token at all: 401 everywhere.
    for (m, path, _) in &endpoints {
        let r = call(&e.app, m, &h, path, None, body_for(m, path)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {path}");
    }
}

#[tokio::test]
async fn limits_and_audit_lines_with_client_address() {
    let e = env(saas_core::testing::sqlite().await).await;
    provision(&e.platform, "alpha").await;
    let t = e.platform.tenant_by_slug("alpha").await.unwrap();
    e.ts.store
        .tenant(t.id)
        .update_tenant(
            None,
            None,
            Some(TenantLimits {
                max_subscribers: 1,
                max_nas: 0,
            }),
        )
        .await
        .unwrap();
    let h = host("alpha");
    let tok = owner(&e.app, "alpha").await;
    let r = call(
        &e.app,
        "POST",
        &h,
        "/api/v1/subscribers",
        Some(&tok),
        Some(json!({"username": "one", "password": "pw"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let r = call(
        &e.app,
        "POST",
        &h,
        "/api/v1/subscribers",
        Some(&tok),
        Some(json!({"username": "two", "password": "pw"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.kind().ends_with("limit-reached"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("limit of 1 subscribers"),
        "{}",
        r.body
    );
    let r = call(
        &e.app,
        "POST",
        &h,
        "/api/v1/nas",
        Some(&tok),
        Some(json!({"name": "n"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    // Duplicate username: 409.
    let r = call(
        &e.app,
        "POST",
        &h,
        "/api/v1/subscribers",
        Some(&tok),
        Some(json!({"username": "one", "password": "pw"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Disable, change plan, renew, delete — each audited with the client address.
    let plan = call(&e.app, "POST", &h, "/api/v1/plans", Some(&tok), Some(json!({"name": "20M", "download_kbps": 20480, "upload_kbps": 4096, "price_cents": 0, "validity_days": 30}))).await;
    assert_eq!(plan.status, StatusCode::CREATED, "{}", plan.body);
    let r = call(
        &e.app,
        "PATCH",
        &h,
        &format!("/api/v1/subscribers/{id}"),
        Some(&tok),
        Some(json!({"status": "disabled", "plan_id": plan.body["id"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "disabled");
    assert_eq!(r.body["plan"], "20M");
    let r = call(
        &e.app,
        "POST",
        &h,
        &format!("/api/v1/subscribers/{id}/renew"),
        Some(&tok),
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["expires_at"].is_string());
    let r = call(&e.app, "GET", &h, "/api/v1/audit-log", Some(&tok), None).await;
    let items = r.body["items"].as_array().unwrap();
    let update = items
        .iter()
        .find(|i| i["action"] == "subscriber.update")
        .expect("audited");
    assert_eq!(update["client_ip"], CLIENT);
    assert_eq!(update["actor"], "user:owner@alpha.example");
    // Search, filter and cursor pagination.
    e.ts.store
        .tenant(t.id)
        .update_tenant(
            None,
            None,
            Some(TenantLimits {
                max_subscribers: 100,
                max_nas: 1,
            }),
        )
        .await
        .unwrap();
    for i in 0..5 {
        let r = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/subscribers",
            Some(&tok),
            Some(json!({"username": format!("page{i}"), "password": "pw"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = call(
        &e.app,
        "GET",
        &h,
        "/api/v1/subscribers?search=page&limit=2&sort=username",
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let cur = r.body["next_cursor"].as_str().unwrap().to_owned();
    let r = call(
        &e.app,
        "GET",
        &h,
        &format!("/api/v1/subscribers?search=page&limit=2&cursor={cur}"),
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(r.body["items"][0]["username"], "page2");
    let r = call(
        &e.app,
        "GET",
        &h,
        "/api/v1/subscribers?status=disabled",
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let r = call(
        &e.app,
        "GET",
        &h,
        "/api/v1/subscribers?sort=balance",
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["field"], "sort");
    let r = call(
        &e.app,
        "DELETE",
        &h,
        &format!("/api/v1/subscribers/{id}"),
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_default_plan_is_a_setting_and_new_subscribers_get_it() {
    for ts in saas_core::testing::each_backend().await {
        let e = env(ts).await;
        provision(&e.platform, "alpha").await;
        provision(&e.platform, "beta").await;
        let b = populate(&e, "beta").await;
        let h = host("alpha");
        let tok = owner(&e.app, "alpha").await;
        let before = call(&e.app, "GET", &h, "/api/v1/settings", Some(&tok), None).await;
        assert_eq!(before.status, StatusCode::OK, "{}", before.body);
        assert!(
            before.body["default_plan_id"].is_string(),
            "{}",
            before.body
        );
        let plan = call(&e.app, "POST", &h, "/api/v1/plans", Some(&tok), Some(json!({"name": "50M", "download_kbps": 51200, "upload_kbps": 10240, "price_cents": 0}))).await;
        assert_eq!(plan.status, StatusCode::CREATED, "{}", plan.body);
        // Another tenant's plan: a field error, and the setting stays.
        let r = call(
            &e.app,
            "PATCH",
            &h,
            "/api/v1/settings",
            Some(&tok),
            Some(json!({"default_plan_id": b["plans"]})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(r.body.to_string().contains("default_plan_id"), "{}", r.body);
        let r = call(
            &e.app,
            "PATCH",
            &h,
            "/api/v1/settings",
            Some(&tok),
            Some(json!({"default_plan_id": plan.body["id"]})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["default_plan_id"], plan.body["id"]);
        assert_eq!(r.body["name"], before.body["name"], "the rest stays");
        // Exactly one default, and a subscriber added without a plan gets it.
        let plans = call(&e.app, "GET", &h, "/api/v1/plans", Some(&tok), None).await;
        let defaults: Vec<_> = plans.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["is_default"] == true)
            .collect();
        assert_eq!(defaults.len(), 1, "{}", plans.body);
        let s = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/subscribers",
            Some(&tok),
            Some(json!({"username": "newbie", "password": "pw"})),
        )
        .await;
        assert_eq!(s.status, StatusCode::CREATED, "{}", s.body);
        assert_eq!(s.body["plan"], "50M");
        // Beta's default did not move.
        let bt = owner(&e.app, "beta").await;
        let r = call(
            &e.app,
            "GET",
            &host("beta"),
            "/api/v1/settings",
            Some(&bt),
            None,
        )
        .await;
        assert_eq!(r.body["default_plan_id"], b["plans"], "{}", r.body);
        let audit = call(&e.app, "GET", &h, "/api/v1/audit-log", Some(&tok), None).await;
        assert!(
            audit.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["action"] == "plan.default" && i["target"] == "50M"),
            "{}",
            audit.body
        );
    }
}
