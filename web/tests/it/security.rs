//! Cookies, CSRF, hosts: what keeps one tenant's panel away from another's and from other sites.

use axum::http::{StatusCode, header};

use crate::support::*;

#[tokio::test]
async fn posts_without_or_with_a_wrong_csrf_token_are_refused() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    let h = host("acme");
    let mut b = Browser::default();
    let page = b.get(&e.app, &h, "/login").await;
    let good = page.csrf();
    let form = |t: &'static str| {
        vec![
            ("email", "owner@acme.example"),
            ("password", PASSWORD),
            ("_csrf", t),
        ]
    };
    let r = b
        .post(
            &e.app,
            &h,
            "/login",
            &[("email", "owner@acme.example"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("reload the page"), "{}", r.body);
    let r = b
        .post(
            &e.app,
            &h,
            "/login",
            &form("0123456789abcdef0123456789abcdef"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(b.cookie_header(&h).find("__Host-pp_session").is_none());
    // The right token signs in; the session's token then differs from the pre-session one.
    let r = b
        .post(
            &e.app,
            &h,
            "/login",
            &[
                ("email", "owner@acme.example"),
                ("password", PASSWORD),
                ("_csrf", &good),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let subs = b.get(&e.app, &h, "/subscribers/new").await;
    assert_eq!(subs.status, StatusCode::OK);
    let session_token = subs.csrf();
    assert_ne!(session_token, good);
    // A signed-in POST with the old (pre-session) token is refused too.
    let r = b
        .post(
            &e.app,
            &h,
            "/subscribers",
            &[("_csrf", &good), ("username", "alice"), ("password", "pw")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post(
            &e.app,
            &h,
            "/subscribers",
            &[
                ("_csrf", &session_token),
                ("username", "alice"),
                ("password", "pw"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

#[tokio::test]
async fn the_session_cookie_is_host_only_secure_httponly_lax() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    let mut b = Browser::default();
    let r = b.login(&e.app, "acme", "owner@acme.example").await;
    let c = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-pp_session="))
        .expect("session cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(c.split("; ").any(|a| a == attr), "{c} lacks {attr}");
    }
    assert!(!c.to_ascii_lowercase().contains("domain"), "{c}");
    assert!(c.contains("Max-Age="), "{c}");
    // Pages carry the strict CSP and load only our own script, by file.
    let page = b.get(&e.app, &host("acme"), "/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        !page.body.contains("<script>"),
        "inline script in {}",
        page.body
    );
    assert!(page.body.contains("name=\"viewport\""));
    // The hashed asset answers with a long cache lifetime.
    let css = web::assets::ASSETS.css.path.clone();
    let a = b.get(&e.app, &host("acme"), &css).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
}

#[tokio::test]
async fn a_cookie_of_tenant_a_opens_nothing_on_tenant_b() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let mut a = Browser::default();
    a.login(&e.app, "acme", "owner@acme.example").await;
    let cookie = a.cookie_header(&host("acme"));
    // Replay acme's cookies on beta's host, as a hostile page on acme could not, but a user
    // copying cookies could.
    let mut b = Browser::default();
    for kv in cookie.split("; ") {
        let (k, v) = kv.split_once('=').unwrap();
        b.cookies.push((host("beta"), k.into(), v.into()));
    }
    for path in [
        "/",
        "/subscribers",
        "/plans",
        "/routers",
        "/sessions",
        "/audit",
    ] {
        let r = b.get(&e.app, &host("beta"), path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}: {}", r.body);
        assert!(
            r.location().starts_with("/login"),
            "{path}: {}",
            r.location()
        );
    }
    // And acme's own pages still work with it.
    let r = a.get(&e.app, &host("acme"), "/subscribers").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn logout_ends_the_session_even_after_a_restart() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    let h = host("acme");
    let mut b = Browser::default();
    b.login(&e.app, "acme", "owner@acme.example").await;
    let stolen = b.cookie_header(&h);
    let page = b.get(&e.app, &h, "/").await;
    let r = b
        .post(&e.app, &h, "/logout", &[("_csrf", &page.csrf())])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("__Host-pp_session=;") && c.contains("Max-Age=0"))
    );
    // The old cookie is dead, on this process and on a fresh one over the same store.
    let (_, fresh) = app_over(&e.ts).await;
    for app in [&e.app, &fresh] {
        let mut x = Browser::default();
        for kv in stolen.split("; ") {
            let (k, v) = kv.split_once('=').unwrap();
            x.cookies.push((h.clone(), k.into(), v.into()));
        }
        let r = x.get(app, &h, "/").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    }
}

#[tokio::test]
async fn a_suspended_tenant_shows_the_suspension_and_an_unknown_one_a_page() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    e.platform
        .set_tenant_status(
            "acme",
            saas_core::model::TenantStatus::Suspended,
            &saas_core::platform::Actor::cli(),
        )
        .await
        .unwrap();
    let mut b = Browser::default();
    let r = b.get(&e.app, &host("acme"), "/").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("This account is suspended"), "{}", r.body);
    assert!(r.headers.contains_key(header::CONTENT_SECURITY_POLICY));
    // The API on the same host still answers problem+json.
    let r = b.get(&e.app, &host("acme"), "/api/v1/me").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("problem+json")
    );
    let r = b.get(&e.app, &host("nosuch"), "/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("<html"), "{}", r.body);
}

#[tokio::test]
async fn ids_of_another_tenant_are_not_found_on_this_tenants_panel() {
    for e in each_env().await {
        foreign_ids_on(e).await;
    }
}

async fn foreign_ids_on(e: Env) {
    provision(&e.platform, "acme").await;
    provision(&e.platform, "beta").await;
    let acme = e
        .platform
        .tenant_ops("acme", saas_core::platform::Actor::cli())
        .await
        .unwrap();
    let plan = acme.scope().plans().await.unwrap();
    let plan_id = plan.first().map(|p| p.id.0.to_string());
    let sub = acme
        .add_subscriber(
            saas_core::model::NewSubscriber {
                username: "alice".into(),
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
    let mut b = Browser::default();
    b.login(&e.app, "beta", "owner@beta.example").await;
    let h = host("beta");
    let csrf = b.get(&e.app, &h, "/").await.csrf();
    let sid = sub.id.0.to_string();
    for path in [
        format!("/subscribers/{sid}"),
        format!("/subscribers/{sid}/edit"),
    ] {
        let r = b.get(&e.app, &h, &path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!r.body.contains("alice"));
    }
    for path in [
        format!("/subscribers/{sid}/delete"),
        format!("/subscribers/{sid}/renew"),
    ] {
        let r = b.post(&e.app, &h, &path, &[("_csrf", &csrf)]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    if let Some(pid) = plan_id {
        let r = b
            .post(
                &e.app,
                &h,
                &format!("/plans/{pid}"),
                &[
                    ("_csrf", &csrf),
                    ("name", "hijack"),
                    ("download_kbps", "1"),
                    ("upload_kbps", "1"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let still = acme
            .scope()
            .plan(saas_core::ids::PlanId(uuid::Uuid::parse_str(&pid).unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(still.name, "hijack");
    }
    assert!(
        acme.scope()
            .subscriber_by_username("alice")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_session_expires_after_its_lifetime() {
    let ts = saas_core::testing::sqlite().await;
    let wc = web::WebConfig {
        session_ttl: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let (platform, app) = app_with(&ts, wc).await;
    provision(&platform, "acme").await;
    let mut b = Browser::default();
    let r = b.login(&app, "acme", "owner@acme.example").await;
    assert!(r.set_cookies().iter().any(|c| c.contains("Max-Age=1;")));
    assert_eq!(b.get(&app, &host("acme"), "/").await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = b.get(&app, &host("acme"), "/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().starts_with("/login"));
}
