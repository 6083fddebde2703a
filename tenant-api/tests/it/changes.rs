//! Endpoints added with the API gaps: plan/NAS/user changes (audited, tenant-scoped, last owner
//! kept), usage per day and month, subscriber sorts with stable cursors, operator DNS records,
//! e-mail verification on signup (outbox and SMTP).

use std::collections::HashSet;

use axum::http::StatusCode;
use saas_core::model::*;
use saas_core::platform::Actor;
use serde_json::json;

use crate::operator::{op_host, operator_token};
use crate::support::*;

async fn audit_has(e: &Env, slug: &str, action: &str) -> bool {
    let t = e.platform.tenant_by_slug(slug).await.unwrap();
    e.ts.store
        .tenant(t.id)
        .audit_log(100)
        .await
        .unwrap()
        .iter()
        .any(|a| a.action == action && a.client_ip.as_deref() == Some(CLIENT))
}

async fn user_id(e: &Env, slug: &str, email: &str) -> String {
    let t = e.platform.tenant_by_slug(slug).await.unwrap();
    let u =
        e.ts.store
            .tenant(t.id)
            .users()
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.email.as_str() == email)
            .unwrap();
    u.id.to_string()
}

#[tokio::test]
async fn plans_nas_and_users_change_audited_and_tenant_scoped() {
    for ts in saas_core::testing::each_backend().await {
        let e = env(ts).await;
        provision(&e.platform, "alpha").await;
        provision(&e.platform, "beta").await;
        let h = host("alpha");
        let tok = owner(&e.app, "alpha").await;
        let b_tok = owner(&e.app, "beta").await;
        // Plans: change, refuse deleting a used one, delete once free.
        let plan = call(&e.app, "POST", &h, "/api/v1/plans", Some(&tok),
            Some(json!({"name": "10M", "download_kbps": 10240, "upload_kbps": 2048, "price_cents": 900}))).await;
        assert_eq!(plan.status, StatusCode::CREATED, "{}", plan.body);
        let pid = plan.body["id"].as_str().unwrap().to_owned();
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/plans/{pid}"),
            Some(&tok),
            Some(json!({"name": "12M", "download_kbps": 12288, "quota_bytes": 1000000})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            (
                r.body["name"].as_str(),
                r.body["download_kbps"].as_i64(),
                r.body["upload_kbps"].as_i64()
            ),
            (Some("12M"), Some(12288), Some(2048))
        );
        assert_eq!(r.body["quota_action"], "reject");
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/plans/{pid}"),
            Some(&tok),
            Some(json!({"quota_bytes": null})),
        )
        .await;
        assert!(r.body["quota_bytes"].is_null(), "{}", r.body);
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/plans/{pid}"),
            Some(&tok),
            Some(json!({"download_kbps": 0})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(audit_has(&e, "alpha", "plan.update").await);
        let sub = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/subscribers",
            Some(&tok),
            Some(json!({"username": "u1", "password": "pw", "plan_id": pid})),
        )
        .await;
        assert_eq!(sub.status, StatusCode::CREATED, "{}", sub.body);
        let r = call(
            &e.app,
            "DELETE",
            &h,
            &format!("/api/v1/plans/{pid}"),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains("used by 1 subscriber"),
            "{}",
            r.body
        );
        let sid = sub.body["id"].as_str().unwrap();
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/subscribers/{sid}"),
            Some(&tok),
            Some(json!({"plan_id": null})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        // Beta cannot touch alpha's plan.
        for m in ["GET", "PATCH", "DELETE"] {
            let body = (m == "PATCH").then(|| json!({"name": "x"}));
            let r = call(
                &e.app,
                m,
                &host("beta"),
                &format!("/api/v1/plans/{pid}"),
                Some(&b_tok),
                body,
            )
            .await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{m} plan ({})",
                e.ts.backend
            );
        }
        let r = call(
            &e.app,
            "DELETE",
            &h,
            &format!("/api/v1/plans/{pid}"),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        assert!(audit_has(&e, "alpha", "plan.delete").await);

        // NAS: rename, new secret; a tunnel NAS has no address to change.
        let nas = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/nas",
            Some(&tok),
            Some(json!({"name": "core"})),
        )
        .await;
        let nid = nas.body["id"].as_str().unwrap().to_owned();
        let r = call(&e.app, "PATCH", &h, &format!("/api/v1/nas/{nid}"), Some(&tok),
            Some(json!({"name": "core-1", "secret": "n3w-secret", "coa_port": 1700, "api_user": "api"}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            (
                r.body["name"].as_str(),
                r.body["coa_port"].as_i64(),
                r.body["api_user"].as_str()
            ),
            (Some("core-1"), Some(1700), Some("api"))
        );
        assert!(!r.body.to_string().contains("n3w-secret"));
        let t = e.platform.tenant_by_slug("alpha").await.unwrap();
        let nas_id = saas_core::ids::NasId(nid.parse().unwrap());
        assert_eq!(
            e.ts.store.tenant(t.id).nas_secret(nas_id).await.unwrap(),
            "n3w-secret"
        );
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/nas/{nid}"),
            Some(&tok),
            Some(json!({"ip": "198.51.100.7"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/nas/{nid}"),
            Some(&tok),
            Some(json!({"api_user": null})),
        )
        .await;
        assert!(r.body["api_user"].is_null());
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/nas/{nid}"),
            Some(&b_tok),
            Some(json!({"name": "x"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = call(
            &e.app,
            "PATCH",
            &host("beta"),
            &format!("/api/v1/nas/{nid}"),
            Some(&b_tok),
            Some(json!({"name": "x"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(audit_has(&e, "alpha", "nas.update").await);

        // Users: the last owner stays; admins cannot touch owners; disabling signs out.
        let owner_id = user_id(&e, "alpha", "owner@alpha.example").await;
        let staff_id = user_id(&e, "alpha", "staff@alpha.example").await;
        let r = call(
            &e.app,
            "DELETE",
            &h,
            &format!("/api/v1/users/{owner_id}"),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains("last owner"));
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/users/{owner_id}"),
            Some(&tok),
            Some(json!({"role": "admin"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        let (admin_tok, _) = login(&e.app, "alpha", "admin@alpha.example").await;
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/users/{owner_id}"),
            Some(&admin_tok),
            Some(json!({"disabled": true})),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/users/{staff_id}"),
            Some(&admin_tok),
            Some(json!({"role": "owner"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        let (_, staff_refresh) = login(&e.app, "alpha", "staff@alpha.example").await;
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/users/{staff_id}"),
            Some(&admin_tok),
            Some(json!({"disabled": true})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["disabled"], true);
        let r = call(
            &e.app,
            "POST",
            &h,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": staff_refresh})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // A second owner makes the first one removable.
        let r = call(
            &e.app,
            "PATCH",
            &h,
            &format!("/api/v1/users/{staff_id}"),
            Some(&tok),
            Some(json!({"role": "owner", "disabled": false})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = call(
            &e.app,
            "DELETE",
            &h,
            &format!("/api/v1/users/{owner_id}"),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        assert!(audit_has(&e, "alpha", "user.delete").await);
        assert!(audit_has(&e, "alpha", "user.update").await);
        // Beta's users are not alpha's.
        let beta_owner = user_id(&e, "beta", "owner@beta.example").await;
        for m in ["GET", "PATCH", "DELETE"] {
            let body = (m == "PATCH").then(|| json!({"disabled": true}));
            let r = call(
                &e.app,
                m,
                &h,
                &format!("/api/v1/users/{beta_owner}"),
                Some(&admin_tok),
                body,
            )
            .await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} user of beta on alpha");
        }
    }
}

#[tokio::test]
async fn usage_by_day_and_month_comes_from_sessions() {
    for ts in saas_core::testing::each_backend().await {
        let e = env(ts).await;
        provision(&e.platform, "alpha").await;
        provision(&e.platform, "beta").await;
        let ops = e.platform.tenant_ops("alpha", Actor::cli()).await.unwrap();
        let sub = ops
            .add_subscriber(
                NewSubscriber {
                    username: "carol".into(),
                    password: "pw".into(),
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
        let nas = ops
            .add_nas(&NewNas {
                name: "n1".into(),
                vendor: NasVendor::Mikrotik,
                ip: None,
                secret: "s".into(),
                message_auth: MessageAuthPolicy::Auto,
                coa_port: 3799,
                api_user: None,
                api_password: None,
                use_ssl: false,
            })
            .await
            .unwrap();
        let now = saas_core::store::now();
        for (n, (back, bytes)) in [(0i64, 100i64), (1, 10), (1, 5), (40, 7)]
            .into_iter()
            .enumerate()
        {
            let at = now - chrono::Duration::days(back);
            let asid = format!("s{n}");
            ops.scope()
                .session_start(nas.id, Some(sub.id), "carol", &asid, None, None, at)
                .await
                .unwrap();
            ops.scope()
                .raise_session_counters(nas.id, &asid, bytes, bytes * 2)
                .await
                .unwrap();
        }
        let tok = owner(&e.app, "alpha").await;
        let h = host("alpha");
        let r = call(
            &e.app,
            "GET",
            &h,
            &format!("/api/v1/subscribers/{}/usage?period=daily&count=3", sub.id),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        let got: Vec<(i64, i64, i64)> = items
            .iter()
            .map(|b| {
                (
                    b["input_octets"].as_i64().unwrap(),
                    b["output_octets"].as_i64().unwrap(),
                    b["sessions"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [(0, 0, 0), (15, 30, 2), (100, 200, 1)],
            "{} {}",
            e.ts.backend,
            r.body
        );
        assert_eq!(items[2]["label"], now.format("%Y-%m-%d").to_string());
        let r = call(
            &e.app,
            "GET",
            &h,
            &format!("/api/v1/subscribers/{}/usage?period=monthly", sub.id),
            Some(&tok),
            None,
        )
        .await;
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 12);
        let total: i64 = items
            .iter()
            .map(|b| b["input_octets"].as_i64().unwrap())
            .sum();
        assert_eq!(total, 122);
        let r = call(
            &e.app,
            "GET",
            &h,
            &format!("/api/v1/subscribers/{}/usage?period=weekly", sub.id),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = call(
            &e.app,
            "GET",
            &h,
            &format!(
                "/api/v1/subscribers/{}/usage?period=daily&count=999",
                sub.id
            ),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        // Another tenant's host does not know the subscriber.
        let b_tok = owner(&e.app, "beta").await;
        let r = call(
            &e.app,
            "GET",
            &host("beta"),
            &format!("/api/v1/subscribers/{}/usage?period=daily", sub.id),
            Some(&b_tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn subscriber_sorts_page_stably() {
    for ts in saas_core::testing::each_backend().await {
        let e = env(ts).await;
        provision(&e.platform, "alpha").await;
        let ops = e.platform.tenant_ops("alpha", Actor::cli()).await.unwrap();
        let plan = ops
            .add_plan(&NewPlan {
                name: "A-plan".into(),
                download_kbps: 1,
                upload_kbps: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let now = saas_core::store::now();
        for i in 0..7i64 {
            ops.add_subscriber(
                NewSubscriber {
                    username: format!("s{i}"),
                    password: "pw".into(),
                    plan_id: None,
                    // Ties on purpose: pages must still neither repeat nor skip rows.
                    expires_at: (i % 3 != 0).then(|| now + chrono::Duration::days(i % 2)),
                    static_ip: None,
                    framed_ipv6_prefix: None,
                    delegated_ipv6_prefix: None,
                    mac_lock: None,
                    sim_use: None,
                },
                (i % 2 == 0).then_some(plan.name.as_str()),
            )
            .await
            .unwrap();
        }
        ops.update_subscriber(
            "s3",
            &SubscriberPatch {
                status: Some(SubscriberStatus::Disabled),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let tok = owner(&e.app, "alpha").await;
        let h = host("alpha");
        for sort in [
            "username",
            "-username",
            "created",
            "-created",
            "expiry",
            "-expiry",
            "status",
            "-status",
            "plan",
            "-plan",
        ] {
            let all = call(
                &e.app,
                "GET",
                &h,
                &format!("/api/v1/subscribers?sort={sort}&limit=500"),
                Some(&tok),
                None,
            )
            .await;
            assert_eq!(all.status, StatusCode::OK, "{sort}: {}", all.body);
            let all: Vec<String> = all.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["username"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(all.len(), 7);
            let mut paged = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/api/v1/subscribers?sort={sort}&limit=2&cursor={c}"),
                    None => format!("/api/v1/subscribers?sort={sort}&limit=2"),
                };
                let r = call(&e.app, "GET", &h, &path, Some(&tok), None).await;
                assert_eq!(r.status, StatusCode::OK, "{sort}: {}", r.body);
                paged.extend(
                    r.body["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["username"].as_str().unwrap().to_owned()),
                );
                match r.body["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            assert_eq!(paged, all, "{sort} ({})", e.ts.backend);
            assert_eq!(paged.iter().collect::<HashSet<_>>().len(), 7);
        }
        let first = |sort: &str| {
            let app = e.app.clone();
            let tok = tok.clone();
            let h = h.clone();
            let sort = sort.to_owned();
            async move {
                let r = call(
                    &app,
                    "GET",
                    &h,
                    &format!("/api/v1/subscribers?sort={sort}&limit=500"),
                    Some(&tok),
                    None,
                )
                .await;
                r.body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["username"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(first("-username").await[0], "s6");
        assert_eq!(first("status").await[6], "s3");
        assert_eq!(first("created").await[0], "s0");
        // No expiry sorts last; s0, s3, s6 have none.
        assert_eq!(
            first("expiry").await[4..].iter().collect::<HashSet<_>>(),
            ["s0", "s3", "s6"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .iter()
                .collect()
        );
        // A cursor of one order is refused by another.
        let r = call(
            &e.app,
            "GET",
            &h,
            "/api/v1/subscribers?sort=created&limit=2",
            Some(&tok),
            None,
        )
        .await;
        let c = r.body["next_cursor"].as_str().unwrap();
        let r = call(
            &e.app,
            "GET",
            &h,
            &format!("/api/v1/subscribers?sort=status&cursor={c}"),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.body["errors"][0]["field"], "cursor");
    }
}

#[tokio::test]
async fn operator_dns_records_are_added_announced_and_removed() {
    let e = env(saas_core::testing::sqlite().await).await;
    let tok = operator_token(&e).await;
    let mut rx = e.platform.bus().subscribe();
    let r = call(
        &e.app,
        "POST",
        &op_host(),
        "/api/v1/operator/dns_records",
        Some(&tok),
        Some(json!({"name": "www.saas.test.", "type": "a", "value": "192.0.2.80", "ttl": 300})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (r.body["name"].as_str(), r.body["rtype"].as_str()),
        (Some("www.saas.test"), Some("A"))
    );
    let id = r.body["id"].as_str().unwrap().to_owned();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let ev = rx.recv().await.unwrap();
            if ev.kind == saas_core::bus::kinds::DNS_CHANGED {
                return ev;
            }
        }
    })
    .await
    .expect("dns.changed published");
    assert!(ev.payload.contains("www.saas.test"));
    let r = call(
        &e.app,
        "POST",
        &op_host(),
        "/api/v1/operator/dns_records",
        Some(&tok),
        Some(json!({"name": "x.saas.test", "type": "NS", "value": "a"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = call(
        &e.app,
        "GET",
        &op_host(),
        "/api/v1/operator/dns_records",
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    // A tenant token means nothing here.
    provision(&e.platform, "alpha").await;
    let t_tok = owner(&e.app, "alpha").await;
    let r = call(
        &e.app,
        "DELETE",
        &op_host(),
        &format!("/api/v1/operator/dns_records/{id}"),
        Some(&t_tok),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(
        &e.app,
        "DELETE",
        &op_host(),
        &format!("/api/v1/operator/dns_records/{id}"),
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = call(
        &e.app,
        "DELETE",
        &op_host(),
        &format!("/api/v1/operator/dns_records/{id}"),
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

fn outbox_link(dir: &std::path::Path) -> String {
    let out = dir.join("outbox");
    let f = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(f).unwrap();
    text.split_whitespace()
        .find(|w| w.contains("/api/v1/signup/verify?token="))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn signup_mails_a_single_use_verification_link() {
    for ts in saas_core::testing::each_backend().await {
        let e = env(ts).await;
        let r = call(&e.app, "POST", BASE, "/api/v1/signup", None,
            Some(json!({"slug": "gamma", "name": "Gamma", "email": "boss@gamma.example", "password": PASSWORD}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let (tok, _) = login(&e.app, "gamma", "boss@gamma.example").await;
        let me = call(
            &e.app,
            "GET",
            &host("gamma"),
            "/api/v1/me",
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(me.body["user"]["email_verified"], false);
        // The user can ask for a new link, a few times an hour; each is a new mail.
        for _ in 0..5 {
            let r = call(
                &e.app,
                "POST",
                &host("gamma"),
                "/api/v1/me/verify-email",
                Some(&tok),
                None,
            )
            .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
            assert_eq!(r.body["to"], "boss@gamma.example");
        }
        let mails = std::fs::read_dir(e.ts.dir.path().join("outbox"))
            .unwrap()
            .count();
        assert_eq!(mails, 6, "the signup mail and five more");
        let r = call(
            &e.app,
            "POST",
            &host("gamma"),
            "/api/v1/me/verify-email",
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
        let link = outbox_link(e.ts.dir.path());
        assert!(
            link.starts_with(&format!("http://{BASE}/api/v1/signup/verify?token=ev_")),
            "{link}"
        );
        let path = link.trim_start_matches(&format!("http://{BASE}"));
        let r = call(&e.app, "GET", BASE, path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let me = call(
            &e.app,
            "GET",
            &host("gamma"),
            "/api/v1/me",
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(me.body["user"]["email_verified"], true);
        let r = call(&e.app, "GET", BASE, path, None, None).await;
        assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
        let r = call(
            &e.app,
            "POST",
            &host("gamma"),
            "/api/v1/me/verify-email",
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        let r = call(
            &e.app,
            "GET",
            BASE,
            "/api/v1/signup/verify?token=ev_nonsense",
            None,
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

/// A minimal SMTP sink (the one external peer we stand in for): records each DATA payload.
async fn smtp_sink() -> (u16, tokio::sync::mpsc::Receiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut line = String::new();
                let mut data: Option<String> = None;
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(d) = data.as_mut() {
                        if line == ".\r\n" {
                            let _ = tx.send(data.take().unwrap()).await;
                            w.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            d.push_str(&line);
                        }
                        continue;
                    }
                    let cmd = line.to_ascii_uppercase();
                    let reply: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if cmd.starts_with("DATA") {
                        data = Some(String::new());
                        b"354 go on\r\n"
                    } else if cmd.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn with_smtp_configured_the_link_goes_by_smtp_not_to_the_outbox() {
    let ts = saas_core::testing::sqlite().await;
    let (port, mut rx) = smtp_sink().await;
    let mut cfg = config(&ts);
    cfg.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    cfg.mail_from = Some("ProxPanel <noreply@saas.test>".into());
    let e = env_with(ts, cfg).await;
    let r = call(&e.app, "POST", BASE, "/api/v1/signup", None,
        Some(json!({"slug": "delta", "name": "Delta", "email": "boss@delta.example", "password": "delta-password"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let data = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(data.contains("To: boss@delta.example"), "{data}");
    // Quoted-printable: `=` travels as `=3D`.
    assert!(data.contains("/api/v1/signup/verify?token=3Dev_"), "{data}");
    assert!(!e.ts.dir.path().join("outbox").exists());
}
