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
    assert!(plat.body.contains("tenants active") && plat.body.contains("DNS zone"));
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

/// An enrolled operator signed in on the operator host.
async fn operator(e: &Env) -> (Browser, String) {
    let secret = totp::generate_secret();
    let hash = e.platform.hash_password(PASSWORD).unwrap();
    let email = Email::parse("ops@example.com").unwrap();
    let store = e.ts.store.platform();
    let op = store.create_operator(&email, &hash, &secret).await.unwrap();
    store.set_operator_enrolled(op.id).await.unwrap();
    let h = format!("operator.{BASE}");
    let mut b = Browser::default();
    let csrf = b.get(&e.app, &h, "/login").await.csrf();
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    let code = totp::code(&secret, now);
    let r = b
        .post(
            &e.app,
            &h,
            "/login",
            &[
                ("_csrf", &csrf),
                ("email", "ops@example.com"),
                ("password", PASSWORD),
                ("totp", &code),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    (b, h)
}

fn assert_has(body: &str, wants: &[&str]) {
    for w in wants {
        assert!(body.contains(w), "{w}: {body}");
    }
}

/// A tenant owner's session, carried to the operator host, gets the sign-in page for `path`.
async fn tenant_is_sent_to_sign_in(e: &Env, slug: &str, path: &str) {
    let op = format!("operator.{BASE}");
    let mut x = tenant_cookie_on_operator_host(e, slug, &op).await;
    let r = x.get(&e.app, &op, path).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with("/login"), "{}", r.location());
}

/// A tenant owner's panel cookie carried to the operator host.
async fn tenant_cookie_on_operator_host(e: &Env, slug: &str, op: &str) -> Browser {
    let mut t = Browser::default();
    t.login(&e.app, slug, &format!("owner@{slug}.example"))
        .await;
    let mut x = Browser::default();
    for kv in t.cookie_header(&host(slug)).split("; ") {
        let (k, v) = kv.split_once('=').unwrap();
        x.cookies.push((op.to_owned(), k.into(), v.into()));
    }
    x
}

/// Posts acme's limits form: subscribers, routers, QuotaSync interval.
async fn limits(b: &mut Browser, e: &Env, csrf: &str, v: [&str; 3]) -> Resp {
    let op = format!("operator.{BASE}");
    let form = [
        ("_csrf", csrf),
        ("max_subscribers", v[0]),
        ("max_nas", v[1]),
        ("quota_sync_s", v[2]),
    ];
    b.post(&e.app, &op, "/tenants/acme/limits", &form).await
}

#[tokio::test]
async fn operator_edits_limits_through_the_audited_path() {
    for e in each_env().await {
        provision(&e.platform, "acme").await;
        provision(&e.platform, "beta").await;
        let (mut b, op) = operator(&e).await;
        let before = e.platform.tenant_by_slug("beta").await.unwrap();
        let form = b.get(&e.app, &op, "/tenants/acme/limits").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        assert!(form.body.contains("QuotaSync interval"), "{}", form.body);
        let csrf = form.csrf();
        // Out of range: the field says why and nothing changes.
        let r = limits(&mut b, &e, &csrf, ["7", "2", "5"]).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body.contains("10 to 3600 seconds"), "{}", r.body);
        let t = e.platform.tenant_by_slug("acme").await.unwrap();
        assert_ne!(t.limits.max_subscribers, 7);
        let events_from = e.ts.store.platform().last_event_id().await.unwrap();
        let r = limits(&mut b, &e, &csrf, ["7", "2", "60"]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(r.location(), "/tenants/acme?done=limits");
        let t = e.platform.tenant_by_slug("acme").await.unwrap();
        assert_eq!(
            (t.limits.max_subscribers, t.limits.max_nas, t.quota_sync_s),
            (7, 2, Some(60))
        );
        // Audited in the tenant's log and announced on the bus, as the CLI's change is.
        let audit = e.ts.store.tenant(t.id).audit_log(10).await.unwrap();
        assert!(
            audit
                .iter()
                .any(|a| a.action == "tenant.update" && a.actor == "operator:ops@example.com"),
            "{audit:?}"
        );
        let events =
            e.ts.store
                .platform()
                .events_after(events_from, 50)
                .await
                .unwrap();
        assert!(
            events
                .iter()
                .any(|ev| ev.kind == "tenant.changed" && ev.tenant_id == Some(t.id)),
            "{events:?}"
        );
        // Empty interval: back to the platform default.
        let r = limits(&mut b, &e, &csrf, ["7", "2", ""]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let t = e.platform.tenant_by_slug("acme").await.unwrap();
        assert_eq!(t.quota_sync_s, None);
        // Another tenant is untouched.
        let after = e.platform.tenant_by_slug("beta").await.unwrap();
        assert_eq!(
            (after.limits.max_subscribers, after.quota_sync_s),
            (before.limits.max_subscribers, before.quota_sync_s)
        );
        // No CSRF token: refused.
        let r = b
            .post(
                &e.app,
                &op,
                "/tenants/acme/limits",
                &[("max_subscribers", "1"), ("max_nas", "1")],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        // A tenant owner's session does not reach it.
        tenant_is_sent_to_sign_in(&e, "acme", "/tenants/acme/limits").await;
        let mut x = tenant_cookie_on_operator_host(&e, "acme", &op).await;
        let r = x
            .post(
                &e.app,
                &op,
                "/tenants/acme/limits",
                &[("_csrf", &csrf), ("max_subscribers", "1"), ("max_nas", "1")],
            )
            .await;
        assert!(r.status.is_client_error() || r.location().starts_with("/login"));
        let t = e.platform.tenant_by_slug("acme").await.unwrap();
        assert_eq!(t.limits.max_subscribers, 7);
    }
}

#[tokio::test]
async fn tenant_detail_shows_state_audit_and_actions() {
    for e in each_env().await {
        provision(&e.platform, "acme").await;
        provision(&e.platform, "beta").await;
        let peer = tunnel_peer(
            &e,
            "acme",
            "core-1",
            "bXlrZXlteWtleW15a2V5bXlrZXlteWtleW15a2V5MDA=",
            "relay-1",
        )
        .await;
        let (mut b, op) = operator(&e).await;
        let list = b.get(&e.app, &op, "/").await;
        assert!(
            list.body.contains("href=\"/tenants/acme\""),
            "{}",
            list.body
        );
        let page = b.get(&e.app, &op, "/tenants/acme").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_has(
            &page.body,
            &[
                "owner@acme.example",
                "Subscriber limit",
                "QuotaSync interval",
                "platform default",
                "Online sessions",
                "core-1",
                peer.tunnel_address.as_str(),
                "relay-1",
                "tenant.create",
                "/tenants/acme/limits",
                "/tenants/acme/act-as",
                "/tenants/acme/delete",
            ],
        );
        assert!(!page.body.contains("owner@beta.example"));
        // Suspend from the page: back to the page, which offers resume.
        let r = b
            .post(
                &e.app,
                &op,
                "/tenants/acme/status",
                &[
                    ("_csrf", &page.csrf()),
                    ("status", "suspended"),
                    ("back", "detail"),
                ],
            )
            .await;
        assert_eq!(r.location(), "/tenants/acme?done=suspended");
        let page = b.get(&e.app, &op, "/tenants/acme").await;
        assert!(page.body.contains("value=\"active\""), "{}", page.body);
        assert!(page.body.contains("tenant.suspend"), "{}", page.body);
        // Unknown tenant: 404; a tenant's session: the sign-in page.
        let r = b.get(&e.app, &op, "/tenants/nope").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        tenant_is_sent_to_sign_in(&e, "beta", "/tenants/acme").await;
    }
}

/// A tunnel router with a WireGuard peer on `node` for `slug`.
async fn tunnel_peer(
    e: &Env,
    slug: &str,
    nas: &str,
    key: &str,
    node: &str,
) -> saas_core::model::WgPeer {
    let ops = e
        .platform
        .tenant_ops(slug, saas_core::platform::Actor::cli())
        .await
        .unwrap();
    ops.add_nas(&saas_core::model::NewNas {
        name: nas.into(),
        vendor: saas_core::model::NasVendor::Mikrotik,
        ip: None,
        secret: "s3cret".into(),
        message_auth: saas_core::model::MessageAuthPolicy::Auto,
        coa_port: 3799,
        api_user: None,
        api_password: None,
        use_ssl: false,
    })
    .await
    .unwrap();
    ops.add_peer(nas, key, node).await.unwrap()
}

#[tokio::test]
async fn relay_page_shows_peers_handshakes_and_drops_by_stage() {
    for e in each_env().await {
        provision(&e.platform, "acme").await;
        provision(&e.platform, "beta").await;
        let pa = tunnel_peer(
            &e,
            "acme",
            "core-1",
            "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=",
            "relay-1",
        )
        .await;
        tunnel_peer(
            &e,
            "beta",
            "edge-9",
            "YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=",
            "relay-1",
        )
        .await;
        e.ts.store
            .tenant(pa.tenant_id)
            .record_peer_status(
                pa.id,
                &saas_core::model::PeerStatusUpdate {
                    last_handshake: Some(chrono::Utc::now()),
                    endpoint: Some("203.0.113.9:13231".into()),
                    rx_bytes: 0,
                    tx_bytes: 0,
                    handshake_tai64: None,
                    state: saas_core::model::TunnelState::Up,
                },
            )
            .await
            .unwrap();
        // What the relay role reports with its heartbeat (relay::metrics::RelayMetrics::stats).
        let p = e.ts.store.platform();
        p.upsert_relay_node("relay-1", "cHVi", "cHJpdg==", Some("198.51.100.7:51820"))
            .await
            .unwrap();
        let mut stats = saas_core::model::RelayStats {
            peers_configured: 2,
            peers_connected: 1,
            handshakes_ok: 17,
            ..Default::default()
        };
        stats.drops.insert("source_budget".into(), 3);
        stats.drops.insert("unknown_key".into(), 41);
        assert!(p.report_relay_stats("relay-1", &stats).await.unwrap());
        let (mut b, op) = operator(&e).await;
        let page = b.get(&e.app, &op, "/relays").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_has(
            &page.body,
            &[
                "relay-1",
                "198.51.100.7:51820",
                "<th scope=\"col\">unknown_key</th>",
                "<td>41</td>",
                "<td>17</td>",
                "203.0.113.9:13231",
                "recent (",
                "never (never)",
                "core-1",
                "edge-9",
            ],
        );
        // Operator-only.
        tenant_is_sent_to_sign_in(&e, "acme", "/relays").await;
    }
}

#[tokio::test]
async fn dns_records_are_listed_added_and_removed() {
    for e in each_env().await {
        provision(&e.platform, "acme").await;
        let (mut b, op) = operator(&e).await;
        let page = b.get(&e.app, &op, "/dns").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("No managed records"));
        let csrf = page.csrf();
        // A bad value: refused with the reason, nothing stored.
        let r = b
            .post(
                &e.app,
                &op,
                "/dns",
                &[
                    ("_csrf", &csrf),
                    ("name", "www.saas.test"),
                    ("rtype", "A"),
                    ("value", "not-an-ip"),
                    ("ttl", ""),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body.contains("is not a valid A value"), "{}", r.body);
        assert!(e.platform.dns_records().await.unwrap().is_empty());
        let from = e.ts.store.platform().last_event_id().await.unwrap();
        let r = b
            .post(
                &e.app,
                &op,
                "/dns",
                &[
                    ("_csrf", &csrf),
                    ("name", "www.saas.test"),
                    ("rtype", "A"),
                    ("value", "192.0.2.44"),
                    ("ttl", "300"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let recs = e.platform.dns_records().await.unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!((recs[0].value.as_str(), recs[0].ttl), ("192.0.2.44", 300));
        let events = e.ts.store.platform().events_after(from, 50).await.unwrap();
        assert!(
            events.iter().any(|ev| ev.kind == "dns.changed"),
            "{events:?}"
        );
        let page = b.get(&e.app, &op, "/dns?done=added").await;
        assert!(page.body.contains("192.0.2.44") && page.body.contains("Record added"));
        let del = format!("/dns/{}/delete", recs[0].id.0);
        assert!(page.body.contains(&del), "{}", page.body);
        let confirm = b.get(&e.app, &op, &del).await;
        assert_eq!(confirm.status, StatusCode::OK);
        assert!(confirm.body.contains("Remove www.saas.test A?"));
        // A tenant's session cannot remove it.
        let mut x = tenant_cookie_on_operator_host(&e, "acme", &op).await;
        let r = x.post(&e.app, &op, &del, &[("_csrf", &csrf)]).await;
        assert!(r.status != StatusCode::SEE_OTHER || r.location().starts_with("/login"));
        assert_eq!(e.platform.dns_records().await.unwrap().len(), 1);
        let r = b
            .post(&e.app, &op, &del, &[("_csrf", &confirm.csrf())])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert!(e.platform.dns_records().await.unwrap().is_empty());
        let r = b.get(&e.app, &op, &del).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn health_page_checks_store_cache_bus_relays_dns_certificate_and_routeros() {
    for e in each_env().await {
        provision(&e.platform, "acme").await;
        e.ts.store
            .platform()
            .upsert_relay_node("relay-1", "cHVi", "cHJpdg==", None)
            .await
            .unwrap();
        let (mut b, op) = operator(&e).await;
        let page = b.get(&e.app, &op, "/platform").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_has(
            &page.body,
            &[
                "tenants active",
                &format!("{} reachable", e.ts.store.backend_name()),
                "memory reachable",
                "latest event",
                "relay-1: last seen",
                "1 tenant names, 0 managed records",
                "none for saas.test",
                "routers of 0 tenants checked",
            ],
        );
        tenant_is_sent_to_sign_in(&e, "acme", "/platform").await;
    }
}
