use std::time::Duration;

use saas_core::bus::Bus;
use saas_core::crypto::HashCost;
use saas_core::model::*;
use saas_core::platform::*;
use saas_core::testing;
use saas_core::{Email, Slug};

async fn platforms() -> Vec<(testing::TestStore, Platform)> {
    let mut v = Vec::new();
    for ts in testing::each_backend().await {
        let bus = Bus::start(ts.store.clone(), None).await.unwrap();
        let p = Platform::new(ts.store.clone(), bus, HashCost::cheap(), "10.200.0.0/24");
        v.push((ts, p));
    }
    v
}

fn request(slug: &str) -> ProvisionRequest {
    ProvisionRequest {
        slug: Slug::parse(slug).unwrap(),
        name: "Acme ISP".into(),
        owner_email: Email::parse("owner@acme.example").unwrap(),
        owner_password: "correct horse".into(),
        timezone: "Europe/Berlin".into(),
        limits: None,
    }
}

#[tokio::test]
async fn provisioning_is_idempotent_after_a_failure_at_any_step() {
    for (ts, p) in platforms().await {
        for (i, step) in [
            ProvisionStep::TenantRow,
            ProvisionStep::OwnerUser,
            ProvisionStep::DefaultPlan,
        ]
        .into_iter()
        .enumerate()
        {
            let slug = format!("isp{i}");
            let req = request(&slug);
            let err = p
                .provision_tenant_failing_after(&req, &Actor::cli(), Some(step))
                .await
                .unwrap_err();
            assert!(
                matches!(err, PlatformError::Injected(s) if s == step),
                "{err}"
            );
            let half = ts
                .store
                .system()
                .tenant_by_slug(&req.slug)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(half.status, TenantStatus::Provisioning, "{}", ts.backend);
            // A provisioning tenant does not resolve yet.
            assert!(
                !ts.store
                    .system()
                    .live_tenants()
                    .await
                    .unwrap()
                    .iter()
                    .any(|(s, _)| s.as_str() == slug)
            );
            // Re-run completes it.
            let t = p.provision_tenant(&req, &Actor::cli()).await.unwrap();
            assert_eq!(t.id, half.id);
            assert_eq!(t.status, TenantStatus::Active);
            assert_eq!(t.timezone, "Europe/Berlin");
            let scope = ts.store.tenant(t.id);
            let users = scope.users().await.unwrap();
            assert_eq!(users.len(), 1, "{}: {step:?}", ts.backend);
            assert_eq!(users[0].role, Role::Owner);
            let plans = scope.plans().await.unwrap();
            assert_eq!(plans.len(), 1);
            assert!(plans[0].is_default);
            // Once active, the slug is taken.
            let again = p.provision_tenant(&req, &Actor::cli()).await.unwrap_err();
            assert!(
                matches!(again, PlatformError::Conflict(_)) && again.is_user_error(),
                "{again}"
            );
        }
        let all = ts.store.system().tenants().await.unwrap();
        assert_eq!(all.len(), 3);
        ts.store.close().await;
    }
}

#[tokio::test]
async fn provisioning_validates_input() {
    let (ts, p) = platforms().await.remove(0);
    let mut r = request("valid");
    r.timezone = "Mars/Base".into();
    assert!(
        p.provision_tenant(&r, &Actor::cli())
            .await
            .unwrap_err()
            .to_string()
            .contains("timezone")
    );
    let mut r = request("valid");
    r.owner_password = "short".into();
    assert!(
        p.provision_tenant(&r, &Actor::cli())
            .await
            .unwrap_err()
            .to_string()
            .contains("at least 8")
    );
    assert!(
        ts.store.system().tenants().await.unwrap().is_empty(),
        "a refused request left a row"
    );
}

#[tokio::test]
async fn lifecycle_suspend_resume_delete_purge() {
    for (ts, p) in platforms().await {
        let mut rx = p.bus().subscribe();
        let t = p
            .provision_tenant(&request("life"), &Actor::cli())
            .await
            .unwrap();
        let ops = p.tenant_ops("life", Actor::cli()).await.unwrap();
        ops.add_subscriber(
            NewSubscriber {
                username: "u".into(),
                password: "p".into(),
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
        assert_eq!(
            ops.subscriber("u").await.unwrap().plan.as_deref(),
            Some(DEFAULT_PLAN)
        );
        let s = p
            .set_tenant_status("life", TenantStatus::Suspended, &Actor::cli())
            .await
            .unwrap();
        assert_eq!(s.status, TenantStatus::Suspended);
        assert!(s.suspended_at.is_some());
        assert!(
            p.set_tenant_status("life", TenantStatus::Suspended, &Actor::cli())
                .await
                .is_err()
        );
        let r = p
            .set_tenant_status("life", TenantStatus::Active, &Actor::cli())
            .await
            .unwrap();
        assert!(r.suspended_at.is_none());
        p.set_tenant_status("life", TenantStatus::Deleted, &Actor::cli())
            .await
            .unwrap();
        assert!(matches!(
            p.tenant_ops("life", Actor::cli()).await,
            Err(PlatformError::NotFound(_))
        ));
        // Not purged within the grace period; purged after.
        assert_eq!(p.purge_deleted(Duration::from_secs(3600)).await.unwrap(), 0);
        assert_eq!(p.purge_deleted(Duration::ZERO).await.unwrap(), 1);
        assert!(
            ts.store
                .system()
                .tenant_by_id(t.id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            ts.store
                .tenant(t.id)
                .subscriber_by_username("u")
                .await
                .unwrap()
                .is_none()
        );
        // The slug is free again.
        p.provision_tenant(&request("life"), &Actor::cli())
            .await
            .unwrap();
        // Every change was announced.
        let mut kinds_seen = Vec::new();
        while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(800), rx.recv()).await {
            kinds_seen.push(ev.kind.clone());
        }
        assert!(
            kinds_seen.iter().filter(|k| *k == "tenant.changed").count() >= 5,
            "{kinds_seen:?}"
        );
        assert!(kinds_seen.contains(&"subscriber.changed".to_string()));
        ts.store.close().await;
    }
}

#[tokio::test]
async fn operators_get_a_totp_enrolment_uri() {
    let (ts, p) = platforms().await.remove(0);
    let email = Email::parse("admin@example.com").unwrap();
    let (op, uri) = p
        .create_operator(&email, "operator-pass", &Actor::cli())
        .await
        .unwrap();
    assert!(uri.starts_with("otpauth://totp/ProxPanel:admin%40example.com?secret="));
    assert_eq!(
        p.operator_enrolment_uri(&email).await.unwrap().as_deref(),
        Some(uri.as_str())
    );
    let (found, hash, _) = ts
        .store
        .platform()
        .operator_by_email(&email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, op.id);
    assert!(saas_core::crypto::verify_password("operator-pass", &hash));
    assert!(
        p.create_operator(&email, "operator-pass", &Actor::cli())
            .await
            .unwrap_err()
            .is_user_error()
    );
}

#[tokio::test]
async fn sweepers_close_stale_sessions_and_disconnect_the_expired() {
    for (ts, p) in platforms().await {
        p.provision_tenant(&request("sweep"), &Actor::cli())
            .await
            .unwrap();
        let ops = p.tenant_ops("sweep", Actor::cli()).await.unwrap();
        let past = saas_core::store::now() - chrono::Duration::days(1);
        let sub = |u: &str, exp| NewSubscriber {
            username: u.into(),
            password: "p".into(),
            plan_id: None,
            expires_at: exp,
            static_ip: None,
            framed_ipv6_prefix: None,
            delegated_ipv6_prefix: None,
            mac_lock: None,
            sim_use: None,
        };
        let gone = ops
            .add_subscriber(sub("gone", Some(past)), None)
            .await
            .unwrap();
        let live = ops.add_subscriber(sub("live", None), None).await.unwrap();
        let nas = ops
            .add_nas(&NewNas {
                name: "n".into(),
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
        let rec = |u: &str, id: &str, sub, age_s: i64| AcctRecord {
            id: saas_core::ids::SessionId::new(),
            kind: AcctKind::Start,
            nas: nas.id,
            subscriber: Some(sub),
            username: u.into(),
            acct_session_id: id.into(),
            framed_ip: None,
            calling_station_id: None,
            nas_port_id: None,
            session_time_s: 0,
            input_octets: 0,
            output_octets: 0,
            terminate_cause: None,
            at: saas_core::store::now() - chrono::Duration::seconds(age_s),
        };
        ops.scope()
            .record_accounting(&[
                rec("live", "old", live.id, 3600),
                rec("live", "new", live.id, 5),
                rec("gone", "x", gone.id, 5),
            ])
            .await
            .unwrap();
        let mut rx = p.bus().subscribe();
        assert_eq!(
            p.sweep_stale_sessions(Duration::from_secs(180))
                .await
                .unwrap(),
            1,
            "{}",
            ts.backend
        );
        let open: Vec<String> = ops
            .scope()
            .sessions(true, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.acct_session_id)
            .collect();
        assert_eq!(open.len(), 2);
        assert!(!open.contains(&"old".to_string()));
        let closed = ops
            .scope()
            .sessions(false, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.acct_session_id == "old")
            .unwrap();
        assert_eq!(closed.terminate_cause.as_deref(), Some("Stale-Session"));
        assert_eq!(p.sweep_expired().await.unwrap(), 1);
        let mut asked = false;
        while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(800), rx.recv()).await {
            if ev.kind == "coa.request" {
                assert!(ev.payload.contains("\"gone\""), "{}", ev.payload);
                asked = true;
            }
        }
        assert!(
            asked,
            "{}: no coa.request for the expired subscriber",
            ts.backend
        );
        ts.store.close().await;
    }
}
