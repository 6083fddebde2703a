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
    let subs = cli(&e, "acme").await;
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
    let plan_id = cli(&e, "acme")
        .await
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
    let acme = cli(&e, "acme").await;
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
    let acme = cli(&e, "acme").await;
    let nas = direct_nas(&acme, "192.0.2.77").await;
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

/// The CLI's command surface for one tenant (what a test arranges its data with).
async fn cli(e: &Env, slug: &str) -> saas_core::platform::TenantOps {
    e.platform
        .tenant_ops(slug, saas_core::platform::Actor::cli())
        .await
        .unwrap()
}

/// A MikroTik router "core-1" that reaches us directly from `ip`.
async fn direct_nas(o: &saas_core::platform::TenantOps, ip: &str) -> saas_core::model::Nas {
    o.add_nas(&saas_core::model::NewNas {
        name: "core-1".into(),
        vendor: saas_core::model::NasVendor::Mikrotik,
        ip: Some(ip.parse().unwrap()),
        secret: "s3cret".into(),
        message_auth: saas_core::model::MessageAuthPolicy::Auto,
        coa_port: 3799,
        api_user: None,
        api_password: None,
        use_ssl: false,
    })
    .await
    .unwrap()
}

/// A plain plan: rates and validity, nothing else.
fn plan(name: &str, down: i64, up: i64, validity_days: Option<i64>) -> saas_core::model::NewPlan {
    saas_core::model::NewPlan {
        name: name.into(),
        download_kbps: down,
        upload_kbps: up,
        burst_download_kbps: None,
        burst_upload_kbps: None,
        burst_threshold_kbps: None,
        burst_time_s: None,
        quota_bytes: None,
        fup_download_kbps: None,
        fup_upload_kbps: None,
        validity_days,
        price_cents: 0,
        ip_pool: None,
        ipv6_pool: None,
        delegated_ipv6_pool: None,
        session_timeout_s: None,
        sim_use: None,
    }
}

async fn add_sub(e: &Env, slug: &str, name: &str) -> String {
    let s = cli(e, slug)
        .await
        .add_subscriber(
            saas_core::model::NewSubscriber {
                username: name.into(),
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
    s.id.0.to_string()
}

async fn sub_state(e: &Env, slug: &str, name: &str) -> Option<saas_core::model::Subscriber> {
    cli(e, slug)
        .await
        .scope()
        .subscriber_by_username(name)
        .await
        .unwrap()
}

async fn audit_count(e: &Env, slug: &str, action: &str, target: &str) -> usize {
    cli(e, slug)
        .await
        .scope()
        .audit_log(500)
        .await
        .unwrap()
        .iter()
        .filter(|x| x.action == action && x.target.as_deref() == Some(target))
        .count()
}

#[tokio::test]
async fn bulk_actions_change_each_selected_subscriber_with_an_audit_line() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let h = host("acme");
    let a = add_sub(&e, "acme", "alice").await;
    let b_id = add_sub(&e, "acme", "bob").await;
    let _c = add_sub(&e, "acme", "carol").await;
    let foreign = add_sub(&e, "beta", "mallory").await;
    let acme = cli(&e, "acme").await;
    let plan = acme
        .add_plan(&plan("50M", 51200, 10240, Some(7)))
        .await
        .unwrap();
    let mut o = Browser::default();
    o.login(&e.app, "acme", "owner@acme.example").await;
    let list = o.get(&e.app, &h, "/subscribers").await;
    assert!(
        list.body.contains(&format!("name=\"ids\" value=\"{a}\""))
            && list.body.contains("action=\"/subscribers/bulk\""),
        "{}",
        list.body
    );
    let csrf = list.csrf();
    let bulk = |action: &'static str| {
        vec![
            ("_csrf", csrf.clone()),
            ("ids", a.clone()),
            ("ids", b_id.clone()),
            ("action", action.to_owned()),
        ]
    };
    // Disable two of three: each gets its audited change, the third stays active.
    let r = o
        .send(
            &e.app,
            "POST",
            &h,
            "/subscribers/bulk",
            Some(serde_urlencoded::to_string(bulk("disabled")).unwrap()),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/subscribers?done=bulk");
    use saas_core::model::SubscriberStatus::*;
    assert_eq!(
        sub_state(&e, "acme", "alice").await.unwrap().status,
        Disabled
    );
    assert_eq!(sub_state(&e, "acme", "bob").await.unwrap().status, Disabled);
    assert_eq!(sub_state(&e, "acme", "carol").await.unwrap().status, Active);
    assert_eq!(
        audit_count(&e, "acme", "subscriber.update", "alice").await,
        1
    );
    assert_eq!(audit_count(&e, "acme", "subscriber.update", "bob").await, 1);
    // Enable, renew (the plan's validity), change plan.
    for action in ["active", "renew"] {
        let r = o
            .send(
                &e.app,
                "POST",
                &h,
                "/subscribers/bulk",
                Some(serde_urlencoded::to_string(bulk(action)).unwrap()),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{action}: {}", r.body);
    }
    let alice = sub_state(&e, "acme", "alice").await.unwrap();
    assert_eq!(alice.status, Active);
    assert!(alice.expires_at.unwrap() > chrono::Utc::now() + chrono::Duration::days(29));
    let mut f = bulk("plan");
    f.push(("plan", plan.id.0.to_string()));
    let r = o
        .send(
            &e.app,
            "POST",
            &h,
            "/subscribers/bulk",
            Some(serde_urlencoded::to_string(&f).unwrap()),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        sub_state(&e, "acme", "bob").await.unwrap().plan_id,
        Some(plan.id)
    );
    // Carol, not selected, keeps the plan she was given at creation.
    assert_ne!(
        sub_state(&e, "acme", "carol").await.unwrap().plan_id,
        Some(plan.id)
    );
    // A foreign id in the selection: 404 and nothing changes (not even this tenant's rows).
    let mut f = bulk("disabled");
    f.push(("ids", foreign.clone()));
    let r = o
        .send(
            &e.app,
            "POST",
            &h,
            "/subscribers/bulk",
            Some(serde_urlencoded::to_string(&f).unwrap()),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(sub_state(&e, "acme", "alice").await.unwrap().status, Active);
    assert_eq!(
        sub_state(&e, "beta", "mallory").await.unwrap().status,
        Active
    );
    // Delete asks first, listing the names; the confirmation deletes.
    let r = o
        .send(
            &e.app,
            "POST",
            &h,
            "/subscribers/bulk",
            Some(serde_urlencoded::to_string(bulk("delete")).unwrap()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("Delete 2 subscribers?")
            && r.body.contains("<li>alice</li>")
            && r.body.contains("name=\"confirm\" value=\"yes\""),
        "{}",
        r.body
    );
    assert!(sub_state(&e, "acme", "alice").await.is_some());
    // A viewer may do none of it.
    let mut v = Browser::default();
    v.login(&e.app, "acme", "viewer@acme.example").await;
    let vl = v.get(&e.app, &h, "/subscribers").await;
    assert!(!vl.body.contains("/subscribers/bulk"), "viewer sees bulk");
    let mut f = bulk("delete");
    f[0].1 = vl.csrf();
    f.push(("confirm", "yes".into()));
    let r = v
        .send(
            &e.app,
            "POST",
            &h,
            "/subscribers/bulk",
            Some(serde_urlencoded::to_string(&f).unwrap()),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(sub_state(&e, "acme", "alice").await.is_some());
    let mut f = bulk("delete");
    f.push(("confirm", "yes".into()));
    let r = o
        .send(
            &e.app,
            "POST",
            &h,
            "/subscribers/bulk",
            Some(serde_urlencoded::to_string(&f).unwrap()),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(sub_state(&e, "acme", "alice").await.is_none());
    assert!(sub_state(&e, "acme", "bob").await.is_none());
    assert!(sub_state(&e, "acme", "carol").await.is_some());
    assert_eq!(audit_count(&e, "acme", "subscriber.delete", "bob").await, 1);
    // Nothing ticked: a clear message.
    let r = o
        .post(
            &e.app,
            &h,
            "/subscribers/bulk",
            &[("_csrf", &csrf), ("action", "renew")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("no subscriber is selected"), "{}", r.body);
}

#[tokio::test]
async fn the_subscriber_page_charts_daily_usage_and_shows_the_disconnect_answer() {
    let ts = saas_core::testing::sqlite().await;
    let wc = web::WebConfig {
        coa_wait: std::time::Duration::from_millis(500),
        ..Default::default()
    };
    let (platform, app) = app_with(&ts, wc).await;
    let e = Env { ts, platform, app };
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let h = host("acme");
    let id = add_sub(&e, "acme", "alice").await;
    let acme = cli(&e, "acme").await;
    let nas = direct_nas(&acme, "192.0.2.77").await;
    let sub = sub_state(&e, "acme", "alice").await.unwrap();
    acme.scope()
        .session_start(
            nas.id,
            Some(sub.id),
            "alice",
            "acct-1",
            None,
            None,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    acme.scope()
        .raise_session_counters(nas.id, "acct-1", 1_000_000_000, 3_000_000_000)
        .await
        .unwrap();
    let mut o = Browser::default();
    o.login(&e.app, "acme", "owner@acme.example").await;
    let page = o.get(&e.app, &h, &format!("/subscribers/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Traffic per day")
            && page.body.contains("<title>3 GB down</title>")
            && page
                .body
                .contains(&format!("action=\"/subscribers/{id}/disconnect\"")),
        "{}",
        page.body
    );
    // A RADIUS role on the bus answers the request: the page shows its Disconnect-ACK.
    let bus = e.platform.bus().clone();
    let mut rx = bus.subscribe();
    let responder = tokio::spawn(async move {
        loop {
            let ev = rx.recv().await.unwrap();
            if ev.kind == saas_core::bus::kinds::COA_REQUEST && ev.correlation_id.is_some() {
                let p = serde_json::json!({"username": "alice", "results": [
                    {"acct_session_id": "acct-1", "result": {"outcome": "ack", "error_cause": null, "detail": "Disconnect-ACK"}}]});
                bus.respond(&ev, saas_core::bus::kinds::COA_RESULT, &p)
                    .await
                    .unwrap();
                return;
            }
        }
    });
    let csrf = page.csrf();
    let r = o
        .post(
            &e.app,
            &h,
            &format!("/subscribers/{id}/disconnect"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body
            .contains("Disconnect-ACK: the router ended the session")
            && r.body.contains("acct-1"),
        "{}",
        r.body
    );
    responder.await.unwrap();
    assert_eq!(
        audit_count(&e, "acme", "session.disconnect", "alice").await,
        1
    );
    // Nobody answers: the page says so instead of waiting forever.
    let r = o
        .post(
            &e.app,
            &h,
            &format!("/subscribers/{id}/disconnect"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("no RADIUS process answered"), "{}", r.body);
    // A viewer may not; another tenant's host does not know the subscriber.
    let mut v = Browser::default();
    v.login(&e.app, "acme", "viewer@acme.example").await;
    let vp = v.get(&e.app, &h, &format!("/subscribers/{id}")).await;
    assert!(!vp.body.contains("/disconnect\""), "viewer sees Disconnect");
    let r = v
        .post(
            &e.app,
            &h,
            &format!("/subscribers/{id}/disconnect"),
            &[("_csrf", &vp.csrf())],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut b = Browser::default();
    b.login(&e.app, "beta", "owner@beta.example").await;
    let bp = b.get(&e.app, &host("beta"), "/").await;
    let r = b
        .post(
            &e.app,
            &host("beta"),
            &format!("/subscribers/{id}/disconnect"),
            &[("_csrf", &bp.csrf())],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = b
        .get(&e.app, &host("beta"), &format!("/subscribers/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn top_users_count_only_the_last_24_hours_of_traffic() {
    for e in each_env().await {
        top_users_on(e).await;
    }
}

async fn top_users_on(e: Env) {
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let acme = cli(&e, "acme").await;
    let nas = direct_nas(&acme, "192.0.2.78").await;
    let now = chrono::Utc::now();
    let rec = |user: &str,
               kind,
               at: chrono::DateTime<chrono::Utc>,
               started: chrono::DateTime<chrono::Utc>,
               i: i64,
               o: i64| {
        saas_core::model::AcctRecord {
            id: saas_core::ids::SessionId(uuid::Uuid::new_v4()),
            kind,
            nas: nas.id,
            subscriber: None,
            username: user.into(),
            acct_session_id: format!("s-{user}"),
            framed_ip: None,
            calling_station_id: None,
            nas_port_id: None,
            session_time_s: (at - started).num_seconds(),
            input_octets: i,
            output_octets: o,
            terminate_cause: None,
            at,
        }
    };
    use saas_core::model::AcctKind::*;
    let long_ago = now - chrono::Duration::hours(48);
    // "heavy" moved 50 GB two days ago and 1 MB since; "light" moved 10 MB in the last hour.
    acme.scope()
        .record_accounting(&[
            rec("heavy", Start, long_ago, long_ago, 0, 0),
            rec(
                "light",
                Start,
                now - chrono::Duration::minutes(30),
                now - chrono::Duration::minutes(30),
                0,
                0,
            ),
        ])
        .await
        .unwrap();
    acme.scope()
        .record_accounting(&[rec(
            "heavy",
            Interim,
            now - chrono::Duration::hours(30),
            long_ago,
            10_000_000_000,
            40_000_000_000,
        )])
        .await
        .unwrap();
    acme.scope()
        .record_accounting(&[
            rec(
                "heavy",
                Interim,
                now - chrono::Duration::minutes(5),
                long_ago,
                10_000_500_000,
                40_000_500_000,
            ),
            rec(
                "light",
                Interim,
                now - chrono::Duration::minutes(1),
                now - chrono::Duration::minutes(30),
                2_000_000,
                8_000_000,
            ),
        ])
        .await
        .unwrap();
    let mut a = Browser::default();
    a.login(&e.app, "acme", "owner@acme.example").await;
    let d = a.get(&e.app, &host("acme"), "/").await;
    let top = &d.body[d.body.find("Top users by traffic").unwrap()..];
    let light = top.find(">light</a></td><td>10.0 MB<").expect(&d.body[..]);
    let heavy = top.find(">heavy</a></td><td>1.0 MB<").expect(&d.body[..]);
    assert!(light < heavy, "the 24-h delta orders them");
    assert!(d.body.contains("Traffic per hour, 24 h") && d.body.contains("MB down</title>"));
    // Another tenant sees none of it.
    let mut b = Browser::default();
    b.login(&e.app, "beta", "owner@beta.example").await;
    let d = b.get(&e.app, &host("beta"), "/").await;
    assert!(!d.body.contains("heavy") && !d.body.contains("light"));
}

#[tokio::test]
async fn plans_take_bursts_ipv6_pools_and_are_deleted_only_when_unused() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let h = host("acme");
    let mut o = Browser::default();
    o.login(&e.app, "acme", "owner@acme.example").await;
    let form = o.get(&e.app, &h, "/plans/new").await;
    for f in [
        "burst_download_kbps",
        "ipv6_pool",
        "delegated_ipv6_pool",
        "session_timeout_s",
        "sim_use",
    ] {
        assert!(form.body.contains(&format!("name=\"{f}\"")), "{f}");
    }
    let csrf = form.csrf();
    let r = o
        .post(
            &e.app,
            &h,
            "/plans",
            &[
                ("_csrf", &csrf),
                ("name", "burst"),
                ("download_kbps", "10240"),
                ("upload_kbps", "2048"),
                ("burst_download_kbps", "20480"),
                ("burst_upload_kbps", "4096"),
                ("burst_threshold_kbps", "8192"),
                ("burst_time_s", "16"),
                ("ipv6_pool", "v6pool"),
                ("delegated_ipv6_pool", "pdpool"),
                ("session_timeout_s", "86400"),
                ("sim_use", "2"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let acme = cli(&e, "acme").await;
    let p = acme.plan_named("burst").await.unwrap();
    assert_eq!(
        (
            p.burst_download_kbps,
            p.burst_time_s,
            p.ipv6_pool.as_deref(),
            p.delegated_ipv6_pool.as_deref(),
            p.session_timeout_s,
            p.sim_use
        ),
        (
            Some(20480),
            Some(16),
            Some("v6pool"),
            Some("pdpool"),
            Some(86400),
            2
        )
    );
    let edit = o.get(&e.app, &h, &format!("/plans/{}/edit", p.id.0)).await;
    assert!(edit.body.contains("value=\"pdpool\"") && edit.body.contains("value=\"20480\""));
    // In use: refused with the way out; unused: deleted behind a confirmation.
    add_sub(&e, "acme", "alice").await;
    let alice = sub_state(&e, "acme", "alice").await.unwrap();
    acme.update_subscriber(
        "alice",
        &saas_core::model::SubscriberPatch {
            plan_id: Some(Some(p.id)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let confirm = o
        .get(&e.app, &h, &format!("/plans/{}/delete", p.id.0))
        .await;
    assert!(
        confirm.body.contains("Delete the plan burst?"),
        "{}",
        confirm.body
    );
    let r = o
        .post(
            &e.app,
            &h,
            &format!("/plans/{}/delete", p.id.0),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(
        r.body.contains("used by 1 subscriber") && r.body.contains("Change plan to"),
        "{}",
        r.body
    );
    acme.update_subscriber(
        &alice.username,
        &saas_core::model::SubscriberPatch {
            plan_id: Some(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Viewers may not; another tenant's host does not know the plan.
    let mut v = Browser::default();
    v.login(&e.app, "acme", "viewer@acme.example").await;
    let vc = v.get(&e.app, &h, "/").await.csrf();
    let r = v
        .post(
            &e.app,
            &h,
            &format!("/plans/{}/delete", p.id.0),
            &[("_csrf", &vc)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut b = Browser::default();
    b.login(&e.app, "beta", "owner@beta.example").await;
    let bc = b.get(&e.app, &host("beta"), "/").await.csrf();
    let r = b
        .post(
            &e.app,
            &host("beta"),
            &format!("/plans/{}/delete", p.id.0),
            &[("_csrf", &bc)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = o
        .post(
            &e.app,
            &h,
            &format!("/plans/{}/delete", p.id.0),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(acme.plan_named("burst").await.is_err());
    assert_eq!(audit_count(&e, "acme", "plan.delete", "burst").await, 1);
}

#[tokio::test]
async fn routers_are_added_direct_with_api_login_and_deleted_behind_a_confirmation() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let h = host("acme");
    let mut o = Browser::default();
    o.login(&e.app, "acme", "owner@acme.example").await;
    let csrf = o.get(&e.app, &h, "/routers/new").await.csrf();
    let r = o
        .post(
            &e.app,
            &h,
            "/routers",
            &[
                ("_csrf", &csrf),
                ("name", "edge"),
                ("reach", "direct"),
                ("ip", "not-ip"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("id=\"f-ip-msg\">enter the router"),
        "{}",
        r.body
    );
    let r = o
        .post(
            &e.app,
            &h,
            "/routers",
            &[
                ("_csrf", &csrf),
                ("name", "edge"),
                ("reach", "direct"),
                ("ip", "198.51.100.7"),
                ("secret", "radius-secret"),
                ("api_user", "proxpanel"),
                ("api_password", "api-pass"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let acme = cli(&e, "acme").await;
    let nas = acme.nas_named("edge").await.unwrap();
    assert_eq!(nas.ip, Some("198.51.100.7".parse().unwrap()));
    assert_eq!(nas.api_user.as_deref(), Some("proxpanel"));
    assert_eq!(
        acme.scope().nas_secret(nas.id).await.unwrap(),
        "radius-secret"
    );
    assert_eq!(
        acme.scope()
            .nas_api_password(nas.id)
            .await
            .unwrap()
            .as_deref(),
        Some("api-pass")
    );
    let id = nas.id.0;
    let page = o.get(&e.app, &h, &format!("/routers/{id}")).await;
    assert!(
        page.body.contains("198.51.100.7") && page.body.contains(&format!("/routers/{id}/delete"))
    );
    assert!(
        !page.body.contains("/script\""),
        "a direct router has no script"
    );
    // Viewer: no delete; another tenant: 404.
    let mut v = Browser::default();
    v.login(&e.app, "acme", "viewer@acme.example").await;
    let vc = v.get(&e.app, &h, "/").await.csrf();
    for path in [
        format!("/routers/{id}/delete"),
        format!("/routers/{id}/script"),
    ] {
        let r = v.post(&e.app, &h, &path, &[("_csrf", &vc)]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        let r = v.get(&e.app, &h, &path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    let mut b = Browser::default();
    b.login(&e.app, "beta", "owner@beta.example").await;
    let bc = b.get(&e.app, &host("beta"), "/").await.csrf();
    for path in [
        format!("/routers/{id}/delete"),
        format!("/routers/{id}/script"),
    ] {
        let r = b
            .post(&e.app, &host("beta"), &path, &[("_csrf", &bc)])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let confirm = o.get(&e.app, &h, &format!("/routers/{id}/delete")).await;
    assert!(confirm.body.contains("Delete the router edge?"));
    let r = o
        .post(
            &e.app,
            &h,
            &format!("/routers/{id}/delete"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(acme.nas_named("edge").await.is_err());
    assert_eq!(audit_count(&e, "acme", "nas.delete", "edge").await, 1);
}

#[tokio::test]
async fn users_change_role_and_state_and_api_tokens_are_shown_once_then_revoked() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let h = host("acme");
    let acme = cli(&e, "acme").await;
    let viewer = acme
        .scope()
        .users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.email.as_str() == "viewer@acme.example")
        .unwrap();
    let owner_id = acme
        .scope()
        .users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.email.as_str() == "owner@acme.example")
        .unwrap()
        .id
        .0;
    let vid = viewer.id.0;
    let mut o = Browser::default();
    o.login(&e.app, "acme", "owner@acme.example").await;
    let users = o.get(&e.app, &h, "/users").await;
    assert!(
        users.body.contains(&format!("action=\"/users/{vid}\"")),
        "{}",
        users.body
    );
    let csrf = users.csrf();
    let r = o
        .post(
            &e.app,
            &h,
            &format!("/users/{vid}"),
            &[("_csrf", &csrf), ("role", "staff")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = o
        .post(
            &e.app,
            &h,
            &format!("/users/{vid}"),
            &[("_csrf", &csrf), ("disabled", "true")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let u = acme.scope().user(viewer.id).await.unwrap().unwrap();
    assert_eq!((u.role, u.disabled), (saas_core::model::Role::Staff, true));
    assert_eq!(
        audit_count(&e, "acme", "user.update", "viewer@acme.example").await,
        2
    );
    // An admin cannot touch the owner (the API's rule).
    acme.add_user(
        &saas_core::ids::Email::parse("admin@acme.example").unwrap(),
        PASSWORD,
        saas_core::model::Role::Admin,
    )
    .await
    .unwrap();
    let mut ad = Browser::default();
    ad.login(&e.app, "acme", "admin@acme.example").await;
    let ac = ad.get(&e.app, &h, "/users").await.csrf();
    let r = ad
        .post(
            &e.app,
            &h,
            &format!("/users/{owner_id}"),
            &[("_csrf", &ac), ("disabled", "true")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // A token: its text on the answer only, never cached, not on the list after.
    let r = o
        .post(
            &e.app,
            &h,
            "/api-tokens",
            &[
                ("_csrf", &csrf),
                ("token_name", "billing"),
                ("scope", "read"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    let i = r.body.find("id=\"new-token\">").unwrap() + "id=\"new-token\">".len();
    let token = r.body[i..].split('<').next().unwrap().to_owned();
    assert!(token.starts_with("pp_"), "{token}");
    let list = o.get(&e.app, &h, "/users").await;
    assert!(list.body.contains("billing") && !list.body.contains(&token));
    let api = |tok: &str| {
        axum::http::Request::builder()
            .uri("/api/v1/me")
            .header("host", &h)
            .header("authorization", format!("Bearer {tok}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    use tower::ServiceExt as _;
    let mut req = api(&token);
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        "192.0.2.10:40000".parse::<std::net::SocketAddr>().unwrap(),
    ));
    assert_eq!(
        e.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );
    let r = o
        .post(
            &e.app,
            &h,
            "/api-tokens",
            &[("_csrf", &csrf), ("token_name", " "), ("scope", "read")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("id=\"f-token_name-msg\">must not be empty"),
        "{}",
        r.body
    );
    let tid = acme.scope().api_tokens().await.unwrap()[0].id;
    // Another tenant cannot revoke it; a staff user may not see the page.
    let mut b = Browser::default();
    b.login(&e.app, "beta", "owner@beta.example").await;
    let bc = b.get(&e.app, &host("beta"), "/").await.csrf();
    let r = b
        .post(
            &e.app,
            &host("beta"),
            &format!("/api-tokens/{tid}/revoke"),
            &[("_csrf", &bc)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = b
        .post(
            &e.app,
            &host("beta"),
            &format!("/users/{vid}"),
            &[("_csrf", &bc), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = o
        .post(
            &e.app,
            &h,
            &format!("/api-tokens/{tid}/revoke"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let mut req = api(&token);
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        "192.0.2.10:40000".parse::<std::net::SocketAddr>().unwrap(),
    ));
    assert_eq!(
        e.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        audit_count(&e, "acme", "api_token.revoke", &tid.to_string()).await,
        1
    );
}

#[tokio::test]
async fn settings_choose_the_default_plan_of_new_subscribers() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let h = host("acme");
    let acme = cli(&e, "acme").await;
    let fast = acme
        .add_plan(&plan("100M", 102400, 20480, None))
        .await
        .unwrap();
    let beta_plan = cli(&e, "beta").await.scope().plans().await.unwrap()[0].id;
    let mut o = Browser::default();
    o.login(&e.app, "acme", "owner@acme.example").await;
    let page = o.get(&e.app, &h, "/settings").await;
    assert!(
        page.body.contains("Default plan for new subscribers")
            && page.body.contains(&format!("value=\"{}\"", fast.id.0)),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let form = |plan: String| {
        vec![
            ("_csrf", csrf.clone()),
            ("name", "Acme".to_owned()),
            ("timezone", "UTC".to_owned()),
            ("default_plan", plan),
        ]
    };
    // Beta's plan id is no plan of acme: an error next to the field, nothing saved.
    let r = o
        .send(
            &e.app,
            "POST",
            &h,
            "/settings",
            Some(serde_urlencoded::to_string(form(beta_plan.0.to_string())).unwrap()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("choose one of the plans in the list"));
    let r = o
        .send(
            &e.app,
            "POST",
            &h,
            "/settings",
            Some(serde_urlencoded::to_string(form(fast.id.0.to_string())).unwrap()),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    add_sub(&e, "acme", "newbie").await;
    assert_eq!(
        sub_state(&e, "acme", "newbie").await.unwrap().plan_id,
        Some(fast.id)
    );
    assert_eq!(audit_count(&e, "acme", "plan.default", "100M").await, 1);
    // Beta's default is untouched.
    let beta = cli(&e, "beta").await.scope().plans().await.unwrap();
    assert!(beta.iter().any(|p| p.id == beta_plan && p.is_default));
}
