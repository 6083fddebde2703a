//! The operator console: TOTP enrolment at the first sign-in, then suspend a tenant.

use axum::http::StatusCode;
use saas_core::crypto::totp;
use saas_core::ids::Email;

use crate::support::*;

#[tokio::test]
async fn operator_enrols_then_suspends_a_tenant() {
    let e = env().await;
    provision(&e.platform, "acme").await;
    let secret = totp::generate_secret();
    let hash = e.platform.hash_password(PASSWORD).unwrap();
    e.ts.store
        .platform()
        .create_operator(&Email::parse("ops@example.com").unwrap(), &hash, &secret)
        .await
        .unwrap();
    let op = format!("operator.{BASE}");
    let mut b = Browser::default();
    let r = b.get(&e.app, &op, "/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let csrf = b.get(&e.app, &op, "/login").await.csrf();
    // Password right, no code, not enrolled: the enrolment page with a QR code.
    let r = b
        .post(
            &e.app,
            &op,
            "/login",
            &[
                ("_csrf", &csrf),
                ("email", "ops@example.com"),
                ("password", PASSWORD),
                ("totp", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("<svg") && r.body.contains("Enrol your authenticator"));
    let marker = "name=\"ticket\" value=\"";
    let i = r.body.find(marker).unwrap() + marker.len();
    let ticket = r.body[i..].split('"').next().unwrap().to_owned();
    let r = b
        .post(
            &e.app,
            &op,
            "/login",
            &[("_csrf", &csrf), ("ticket", &ticket), ("totp", "000000")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    let code = totp::code(&secret, now);
    let r = b
        .post(
            &e.app,
            &op,
            "/login",
            &[("_csrf", &csrf), ("ticket", &ticket), ("totp", &code)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let list = b.get(&e.app, &op, "/").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(">acme</a>"), "{}", list.body);
    let plat = b.get(&e.app, &op, "/platform").await;
    assert_eq!(plat.status, StatusCode::OK, "{}", plat.body);
    assert!(plat.body.contains("tenants active") && plat.body.contains("DNS records"));
    // Act as acme: an audited one-time link to acme's own host, used once.
    let page = b
        .post(
            &e.app,
            &op,
            "/tenants/acme/act-as",
            &[("_csrf", &list.csrf())],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let marker = "id=\"act-as-link\" href=\"http://acme.saas.test/";
    let i = page.body.find(marker).unwrap() + marker.len() - 1;
    let link = page.body[i..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let mut acting = Browser::default();
    let r = acting.get(&e.app, &host("acme"), &link).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let subs = acting.get(&e.app, &host("acme"), "/subscribers").await;
    assert_eq!(subs.status, StatusCode::OK);
    assert!(
        subs.body.contains("ops@example.com (operator)"),
        "{}",
        subs.body
    );
    let audit = acting.get(&e.app, &host("acme"), "/audit").await;
    assert!(audit.body.contains("operator.act_as"), "{}", audit.body);
    let again = Browser::default().get(&e.app, &host("acme"), &link).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    // A fresh link opens nothing on another tenant's host.
    let r = b
        .post(
            &e.app,
            &op,
            "/tenants/acme/act-as",
            &[("_csrf", &list.csrf())],
        )
        .await;
    let i = r.body.find(marker).unwrap() + marker.len() - 1;
    let link = r.body[i..].split('"').next().unwrap().replace("&amp;", "&");
    provision(&e.platform, "gamma").await;
    let other = Browser::default().get(&e.app, &host("gamma"), &link).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    let r = b
        .post(
            &e.app,
            &op,
            "/tenants/acme/status",
            &[("_csrf", &list.csrf()), ("status", "suspended")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let panel = Browser::default()
        .get(&e.app, &host("acme"), "/login")
        .await;
    assert_eq!(panel.status, StatusCode::FORBIDDEN);
    assert!(panel.body.contains("This account is suspended"));
    // An operator's cookie means nothing on a tenant host.
    let cookie = b.cookie_header(&op);
    let mut x = Browser::default();
    for kv in cookie.split("; ") {
        let (k, v) = kv.split_once('=').unwrap();
        x.cookies.push((host("beta"), k.into(), v.into()));
    }
    provision(&e.platform, "beta").await;
    let r = x.get(&e.app, &host("beta"), "/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}
