//! The tenant panel: roles, subscribers, plans, signup on the apex.

use axum::http::StatusCode;

use crate::support::*;

#[tokio::test]
async fn a_viewer_reads_but_cannot_change() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    let h = host("acme");
    let mut b = Browser::default();
    b.login(&e.app, "acme", "viewer@acme.example").await;
    let list = b.get(&e.app, &h, "/subscribers").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        !list.body.contains("New subscriber"),
        "viewer sees the create button"
    );
    for path in [
        "/subscribers/new",
        "/plans/new",
        "/routers/new",
        "/users",
        "/settings",
        "/audit",
    ] {
        let r = b.get(&e.app, &h, path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(r.body.contains("viewer"), "{path}: {}", r.body);
    }
    let csrf = list.csrf();
    let r = b
        .post(
            &e.app,
            &h,
            "/subscribers",
            &[("_csrf", &csrf), ("username", "alice"), ("password", "pw")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post(
            &e.app,
            &h,
            "/plans",
            &[
                ("_csrf", &csrf),
                ("name", "x"),
                ("download_kbps", "1"),
                ("upload_kbps", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let subs = e
        .platform
        .tenant_ops("acme", saas_core::platform::Actor::cli())
        .await
        .unwrap();
    assert!(
        subs.scope()
            .subscriber_by_username("alice")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn owner_manages_plans_and_subscribers_with_errors_next_to_fields() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    let h = host("acme");
    let mut b = Browser::default();
    b.login(&e.app, "acme", "owner@acme.example").await;
    let csrf = b.get(&e.app, &h, "/plans/new").await.csrf();
    // A plan with a bad rate is refused with the message next to the field.
    let r = b
        .post(
            &e.app,
            &h,
            "/plans",
            &[
                ("_csrf", &csrf),
                ("name", "20M"),
                ("download_kbps", "fast"),
                ("upload_kbps", "4096"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body
            .contains("id=\"f-download_kbps-msg\">enter a whole number"),
        "{}",
        r.body
    );
    let r = b
        .post(
            &e.app,
            &h,
            "/plans",
            &[
                ("_csrf", &csrf),
                ("name", "20M"),
                ("download_kbps", "20480"),
                ("upload_kbps", "4096"),
                ("price", "19.99"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let plans = b.get(&e.app, &h, "/plans").await;
    assert!(
        plans.body.contains("20480 / 4096") && plans.body.contains("19.99"),
        "{}",
        plans.body
    );
    // Edit it: the form comes back filled in; the change shows in the list.
    let end = plans.body.find("/edit\"").unwrap() + "/edit".len();
    let start = plans.body[..end].rfind("href=\"").unwrap() + "href=\"".len();
    let edit = plans.body[start..end].to_owned();
    let form = b.get(&e.app, &h, &edit).await;
    assert!(form.body.contains("value=\"20480\""), "{}", form.body);
    let action = edit.trim_end_matches("/edit").to_owned();
    let r = b
        .post(
            &e.app,
            &h,
            &action,
            &[
                ("_csrf", &csrf),
                ("name", "20M"),
                ("download_kbps", "25600"),
                ("upload_kbps", "5120"),
                ("price", "21"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let plans = b.get(&e.app, &h, "/plans").await;
    assert!(
        plans.body.contains("25600 / 5120") && plans.body.contains("21.00"),
        "{}",
        plans.body
    );
    let plan_id = e
        .platform
        .tenant_ops("acme", saas_core::platform::Actor::cli())
        .await
        .unwrap()
        .plan_named("20M")
        .await
        .unwrap()
        .id
        .0
        .to_string();
    let r = b
        .post(
            &e.app,
            &h,
            "/subscribers",
            &[
                ("_csrf", &csrf),
                ("username", "alice"),
                ("password", "pw1"),
                ("plan", &plan_id),
                ("static_ip", "not-an-ip"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("f-static_ip-msg\">"), "{}", r.body);
    let r = b
        .post(
            &e.app,
            &h,
            "/subscribers",
            &[
                ("_csrf", &csrf),
                ("username", "alice"),
                ("password", "pw1"),
                ("plan", &plan_id),
                ("expires", "2031-01-31"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let detail = r.location().to_owned();
    let page = b.get(&e.app, &h, &detail).await;
    assert!(
        page.body.contains("alice")
            && page.body.contains("20M")
            && page.body.contains("2031-01-31"),
        "{}",
        page.body
    );
    // Renew adds 30 days (the plan has no validity) to the later expiry.
    let id0 = detail
        .trim_start_matches("/subscribers/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let r = b
        .post(
            &e.app,
            &h,
            &format!("/subscribers/{id0}/renew"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = b.get(&e.app, &h, &format!("/subscribers/{id0}")).await;
    assert!(page.body.contains("2031-03-02"), "{}", page.body);
    // Search and filters.
    let list = b.get(&e.app, &h, "/subscribers?q=ali&status=active").await;
    assert!(list.body.contains(">alice</a>"));
    let list = b.get(&e.app, &h, "/subscribers?q=zzz").await;
    assert!(list.body.contains("No subscribers match"));
    // Disable, then delete behind a confirmation page.
    let id = detail
        .trim_start_matches("/subscribers/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let r = b
        .post(
            &e.app,
            &h,
            &format!("/subscribers/{id}/status"),
            &[("_csrf", &csrf), ("status", "disabled")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let list = b.get(&e.app, &h, "/subscribers?status=disabled").await;
    assert!(list.body.contains(">alice</a>"));
    let confirm = b
        .get(&e.app, &h, &format!("/subscribers/{id}/delete"))
        .await;
    assert!(confirm.body.contains("Delete alice?"));
    let r = b
        .post(
            &e.app,
            &h,
            &format!("/subscribers/{id}/delete"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let list = b.get(&e.app, &h, "/subscribers").await;
    assert!(!list.body.contains(">alice</a>"));
    // The dashboard renders its charts.
    let d = b.get(&e.app, &h, "/").await;
    assert_eq!(d.status, StatusCode::OK);
    assert!(d.body.contains("<svg") && d.body.contains("online sessions now"));
}

#[tokio::test]
async fn signup_on_the_apex_shows_field_errors_then_links_the_new_panel() {
    let e = env().await;
    provision(&e.platform, "taken").await;
    let mut b = Browser::default();
    let form = b.get(&e.app, BASE, "/signup").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body
            .contains("data-check-url=\"/api/v1/signup/check\"")
    );
    let csrf = form.csrf();
    let r = b
        .post(
            &e.app,
            BASE,
            "/signup",
            &[
                ("_csrf", &csrf),
                ("slug", "A!"),
                ("name", ""),
                ("email", "nope"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    for f in ["slug", "name", "email", "password"] {
        assert!(
            r.body
                .contains(&format!("<p class=\"error\" id=\"f-{f}-msg\"")),
            "{f}: {}",
            r.body
        );
    }
    let r = b
        .post(
            &e.app,
            BASE,
            "/signup",
            &[
                ("_csrf", &csrf),
                ("slug", "taken"),
                ("name", "X"),
                ("email", "x@x.example"),
                ("password", "long enough"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("already taken"), "{}", r.body);
    let r = b
        .post(
            &e.app,
            BASE,
            "/signup",
            &[
                ("_csrf", &csrf),
                ("slug", "newisp"),
                ("name", "New ISP"),
                ("email", "boss@newisp.example"),
                ("password", "long enough"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("http://newisp.saas.test/"), "{}", r.body);
    // The new panel answers at once.
    let mut n = Browser::default();
    let login = n.get(&e.app, &host("newisp"), "/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("New ISP"));
}

#[tokio::test]
async fn each_dashboard_counts_only_its_own_tenant() {
    for e in each_env().await {
        dashboard_counts_on(e).await;
    }
}

async fn dashboard_counts_on(e: Env) {
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let acme = e
        .platform
        .tenant_ops("acme", saas_core::platform::Actor::cli())
        .await
        .unwrap();
    let entry = |outcome: &str| saas_core::model::AuthLogEntry {
        at: chrono::Utc::now(),
        nas_id: None,
        username: "alice".into(),
        method: Some("pap".into()),
        outcome: outcome.into(),
        reason: None,
        calling_station_id: None,
    };
    acme.scope()
        .log_auth(&[entry("accept"), entry("accept"), entry("reject")])
        .await
        .unwrap();
    let stat = |body: &str, label: &str| -> String {
        let i = body.find(&format!("<small>{label}")).unwrap();
        let start = body[..i].rfind('>').unwrap() + 1;
        body[start..i].trim().to_owned()
    };
    let mut a = Browser::default();
    a.login(&e.app, "acme", "owner@acme.example").await;
    let d = a.get(&e.app, &host("acme"), "/").await;
    assert_eq!(stat(&d.body, "accepts, last hour"), "2", "{}", d.body);
    assert_eq!(stat(&d.body, "rejects, last hour"), "1");
    let mut b = Browser::default();
    b.login(&e.app, "beta", "owner@beta.example").await;
    let d = b.get(&e.app, &host("beta"), "/").await;
    assert_eq!(stat(&d.body, "accepts, last hour"), "0");
    assert_eq!(stat(&d.body, "rejects, last hour"), "0");
    let log = b.get(&e.app, &host("beta"), "/auth-log").await;
    assert!(
        !log.body.contains("alice"),
        "acme's auth log on beta's panel"
    );
}

#[tokio::test]
async fn a_routers_checklist_follows_its_first_radius_and_accept() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let acme = e
        .platform
        .tenant_ops("acme", saas_core::platform::Actor::cli())
        .await
        .unwrap();
    let nas = acme
        .add_nas(&saas_core::model::NewNas {
            name: "core-1".into(),
            vendor: saas_core::model::NasVendor::Mikrotik,
            ip: Some("192.0.2.77".parse().unwrap()),
            secret: "s3cret".into(),
            message_auth: saas_core::model::MessageAuthPolicy::Auto,
            coa_port: 3799,
            api_user: None,
            api_password: None,
            use_ssl: false,
        })
        .await
        .unwrap();
    let id = nas.id.0.to_string();
    let mut b = Browser::default();
    b.login(&e.app, "acme", "owner@acme.example").await;
    let h = host("acme");
    let page = b.get(&e.app, &h, &format!("/routers/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("data-checklist-url=\"/routers/{id}/checklist\""))
    );
    let state = |r: &Resp| serde_json::from_str::<serde_json::Value>(&r.body).unwrap();
    let r = b.get(&e.app, &h, &format!("/routers/{id}/checklist")).await;
    assert_eq!(
        state(&r),
        serde_json::json!({"handshake": true, "radius": false, "accept": false})
    );
    acme.scope()
        .touch_nas(nas.id, chrono::Utc::now())
        .await
        .unwrap();
    acme.scope()
        .log_auth(&[saas_core::model::AuthLogEntry {
            at: chrono::Utc::now(),
            nas_id: Some(nas.id),
            username: "alice".into(),
            method: Some("pap".into()),
            outcome: "accept".into(),
            reason: None,
            calling_station_id: None,
        }])
        .await
        .unwrap();
    let r = b.get(&e.app, &h, &format!("/routers/{id}/checklist")).await;
    assert_eq!(
        state(&r),
        serde_json::json!({"handshake": true, "radius": true, "accept": true})
    );
    // Another tenant's panel does not know this router.
    let mut o = Browser::default();
    o.login(&e.app, "beta", "owner@beta.example").await;
    let r = o
        .get(&e.app, &host("beta"), &format!("/routers/{id}/checklist"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
