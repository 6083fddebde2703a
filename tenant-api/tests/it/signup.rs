//! Signup on the apex: availability, creation, idempotent retry, the same-slug race.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn signup_creates_a_reachable_tenant_and_a_retry_answers_the_same() {
    let e = env(saas_core::testing::sqlite().await).await;
    let r = call(
        &e.app,
        "GET",
        BASE,
        "/api/v1/signup/check?slug=admin",
        None,
        None,
    )
    .await;
    assert_eq!(r.body["available"], false);
    assert!(
        r.body["reason"].as_str().unwrap().contains("reserved"),
        "{}",
        r.body
    );
    let body = json!({"slug": "newisp", "name": "New ISP", "email": "me@newisp.example", "password": PASSWORD});
    let r = call(
        &e.app,
        "POST",
        BASE,
        "/api/v1/signup",
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["panel_url"], "http://newisp.saas.test/");
    assert_eq!(r.body["tenant"]["status"], "active");
    // Idempotent retry.
    let r2 = call(&e.app, "POST", BASE, "/api/v1/signup", None, Some(body)).await;
    assert_eq!(r2.status, StatusCode::OK);
    assert_eq!(r2.body["tenant"]["id"], r.body["tenant"]["id"]);
    // Someone else: 409.
    let r = call(&e.app, "POST", BASE, "/api/v1/signup", None, Some(json!({"slug": "newisp", "name": "X", "email": "other@x.example", "password": PASSWORD}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = call(
        &e.app,
        "GET",
        BASE,
        "/api/v1/signup/check?slug=newisp",
        None,
        None,
    )
    .await;
    assert_eq!(r.body["available"], false);
    // Reachable on its subdomain.
    login(&e.app, "newisp", "me@newisp.example").await;
    // The welcome mail went to the outbox, not the log.
    let outbox: Vec<_> = std::fs::read_dir(e.ts.dir.path().join("outbox"))
        .unwrap()
        .collect();
    assert_eq!(outbox.len(), 1);
    // Field errors.
    let r = call(
        &e.app,
        "POST",
        BASE,
        "/api/v1/signup",
        None,
        Some(
            json!({"slug": "Bad_Slug!", "name": "X", "email": "x@y.example", "password": PASSWORD}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "slug");
    let r = call(
        &e.app,
        "POST",
        BASE,
        "/api/v1/signup",
        None,
        Some(json!({"slug": "okslug", "name": "X", "email": "x@y.example", "password": "short"})),
    )
    .await;
    assert_eq!(r.body["errors"][0]["field"], "password");
}

#[tokio::test]
async fn two_signups_of_one_slug_at_once_make_one_tenant() {
    for ts in saas_core::testing::each_backend().await {
        let e = env(ts).await;
        for round in 0..3 {
            let slug = format!("race{round}");
            let a = call_from(
                &e.app,
                "192.0.2.1",
                "POST",
                BASE,
                "/api/v1/signup",
                None,
                Some(
                    json!({"slug": slug, "name": "A", "email": "a@a.example", "password": PASSWORD}),
                ),
            );
            let b = call_from(
                &e.app,
                "192.0.2.2",
                "POST",
                BASE,
                "/api/v1/signup",
                None,
                Some(
                    json!({"slug": slug, "name": "B", "email": "b@b.example", "password": PASSWORD}),
                ),
            );
            let (a, b) = tokio::join!(a, b);
            let mut statuses = [a.status.as_u16(), b.status.as_u16()];
            statuses.sort();
            assert_eq!(
                statuses,
                [201, 409],
                "{} {} / {}",
                e.ts.backend,
                a.body,
                b.body
            );
            let loser = if a.status == StatusCode::CONFLICT {
                &a
            } else {
                &b
            };
            assert!(loser.body["detail"].as_str().unwrap().contains(&slug));
            let t = e.platform.tenant_by_slug(&slug).await.unwrap();
            let users = e.ts.store.tenant(t.id).users().await.unwrap();
            assert_eq!(users.len(), 1, "exactly one owner");
        }
    }
}
