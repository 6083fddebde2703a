use std::net::IpAddr;

use saas_core::model::*;
use saas_core::store::{StoreError, SubscriberQuery};
use saas_core::testing::{self, TestStore};
use saas_core::{Slug, TenantId, TenantScope};

async fn tenant(ts: &TestStore, slug: &str) -> TenantScope {
    let id = TenantId::new();
    let scope = ts.store.tenant(id);
    scope
        .insert_tenant(
            &Slug::parse(slug).unwrap(),
            &format!("{slug} ISP"),
            "UTC",
            TenantLimits::default(),
            "10.200.0.0/24",
        )
        .await
        .unwrap();
    scope.set_status(TenantStatus::Active).await.unwrap();
    scope
}

fn new_sub(username: &str, password: &str) -> NewSubscriber {
    NewSubscriber {
        username: username.into(),
        password: password.into(),
        plan_id: None,
        expires_at: None,
        static_ip: None,
        framed_ipv6_prefix: None,
        delegated_ipv6_prefix: None,
        mac_lock: None,
        sim_use: None,
    }
}

fn new_nas(name: &str, ip: Option<&str>, secret: &str) -> NewNas {
    NewNas {
        name: name.into(),
        vendor: NasVendor::Mikrotik,
        ip: ip.map(|s| s.parse::<IpAddr>().unwrap()),
        secret: secret.into(),
        message_auth: MessageAuthPolicy::Auto,
        coa_port: 3799,
        api_user: Some("api".into()),
        api_password: Some("ApiPassw0rd-Zeta".into()),
        use_ssl: false,
    }
}

#[tokio::test]
async fn crud_round_trip_on_every_backend() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "acme").await;
        let plan = a
            .create_plan(
                &NewPlan {
                    name: "10M".into(),
                    download_kbps: 10240,
                    upload_kbps: 2048,
                    quota_bytes: Some(1 << 33),
                    fup_download_kbps: Some(1024),
                    fup_upload_kbps: Some(512),
                    ipv6_pool: Some("v6pool".into()),
                    ..Default::default()
                },
                false,
            )
            .await
            .unwrap();
        assert_eq!(plan.quota_action, QuotaAction::Fup, "{}", ts.backend);
        assert_eq!(plan.sim_use, 1);
        let mut ns = new_sub("alice", "pw-alice");
        ns.plan_id = Some(plan.id);
        ns.mac_lock = Some("aa-bb-cc-dd-ee-ff".into());
        ns.framed_ipv6_prefix = Some("2001:db8:1::/64".into());
        ns.delegated_ipv6_prefix = Some("2001:db8:100::/56".into());
        ns.static_ip = Some("100.64.0.10".into());
        let expires = saas_core::store::now() + chrono::Duration::days(30);
        ns.expires_at = Some(expires);
        let s = a.create_subscriber(&ns).await.unwrap();
        assert_eq!(s.plan.as_deref(), Some("10M"));
        assert_eq!(s.mac_lock.as_deref(), Some("AA:BB:CC:DD:EE:FF"));
        assert_eq!(s.expires_at, Some(expires), "{}", ts.backend);
        assert_eq!(
            s.delegated_ipv6_prefix.as_deref(),
            Some("2001:db8:100::/56")
        );
        assert_eq!(a.subscriber_password(s.id).await.unwrap(), "pw-alice");
        // Duplicate username in the same tenant is a conflict.
        let dup = a
            .create_subscriber(&new_sub("alice", "x"))
            .await
            .unwrap_err();
        assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
        // Patch: set some, clear some.
        let patch = SubscriberPatch {
            status: Some(SubscriberStatus::Disabled),
            static_ip: Some(None),
            password: Some("pw2".into()),
            ..Default::default()
        };
        let s2 = a.update_subscriber(s.id, &patch).await.unwrap();
        assert_eq!(s2.status, SubscriberStatus::Disabled);
        assert_eq!(s2.static_ip, None);
        assert_eq!(s2.mac_lock.as_deref(), Some("AA:BB:CC:DD:EE:FF"));
        assert_eq!(a.subscriber_password(s.id).await.unwrap(), "pw2");
        // Bad input is refused with a reason.
        let mut bad = new_sub("bob", "pw");
        bad.static_ip = Some("300.1.1.1".into());
        assert!(
            a.create_subscriber(&bad)
                .await
                .unwrap_err()
                .to_string()
                .contains("IPv4")
        );
        // Listing: search, filter, cursor.
        for i in 0..5 {
            a.create_subscriber(&new_sub(&format!("user{i}"), "pw"))
                .await
                .unwrap();
        }
        let p1 = a
            .subscribers(&SubscriberQuery {
                search: Some("USER".into()),
                limit: Some(2),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            p1.items
                .iter()
                .map(|s| s.username.as_str())
                .collect::<Vec<_>>(),
            ["user0", "user1"]
        );
        let p2 = a
            .subscribers(&SubscriberQuery {
                search: Some("user".into()),
                limit: Some(2),
                after: p1.next_cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(p2.items[0].username, "user2");
        let disabled = a
            .subscribers(&SubscriberQuery {
                status: Some(SubscriberStatus::Disabled),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(disabled.items.len(), 1);
        let by_plan = a
            .subscribers(&SubscriberQuery {
                plan_id: Some(plan.id),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_plan.items.len(), 1);
        // A literal '%' in a search matches only itself.
        assert!(
            a.subscribers(&SubscriberQuery {
                search: Some("%".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .items
            .is_empty()
        );
        // NAS
        let nas = a
            .create_nas(&new_nas("core", Some("192.0.2.10"), "testing123"))
            .await
            .unwrap();
        assert_eq!(nas.reach, NasReach::Direct);
        assert_eq!(nas.tunnel_state, TunnelState::None);
        assert_eq!(nas.api_state, ApiState::Unknown);
        assert_eq!(a.nas_secret(nas.id).await.unwrap(), "testing123");
        let tn = a.create_nas(&new_nas("edge", None, "s3")).await.unwrap();
        assert_eq!(
            (tn.reach, tn.tunnel_state),
            (NasReach::Tunnel, TunnelState::Waiting)
        );
        assert_eq!(a.nas_list().await.unwrap().len(), 2);
        let found = ts
            .store
            .system()
            .nas_by_source("192.0.2.10".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((found.tenant_id, found.nas_id), (a.tenant_id(), nas.id));
        assert!(a.delete_subscriber(s.id).await.unwrap());
        assert!(!a.delete_subscriber(s.id).await.unwrap());
        ts.store.close().await;
    }
}

#[tokio::test]
async fn tenants_cannot_see_each_other() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "alpha").await;
        let b = tenant(&ts, "bravo").await;
        // Same names in both tenants are fine.
        let sa = a.create_subscriber(&new_sub("same", "pw-a")).await.unwrap();
        let sb = b.create_subscriber(&new_sub("same", "pw-b")).await.unwrap();
        let pa = a
            .create_plan(
                &NewPlan {
                    name: "p".into(),
                    download_kbps: 1,
                    upload_kbps: 1,
                    ..Default::default()
                },
                false,
            )
            .await
            .unwrap();
        b.create_plan(
            &NewPlan {
                name: "p".into(),
                download_kbps: 2,
                upload_kbps: 2,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
        let nb = b.create_nas(&new_nas("r1", None, "sec-b")).await.unwrap();
        a.audit("cli", "x", None, None).await.unwrap();

        assert_eq!(
            a.subscriber_by_username("same").await.unwrap().unwrap().id,
            sa.id
        );
        assert_eq!(
            b.subscriber_by_username("same").await.unwrap().unwrap().id,
            sb.id
        );
        // B's ids through A's scope: nothing, and nothing changes.
        assert!(a.subscriber(sb.id).await.unwrap().is_none());
        assert!(matches!(
            a.subscriber_password(sb.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            a.update_subscriber(
                sb.id,
                &SubscriberPatch {
                    status: Some(SubscriberStatus::Disabled),
                    ..Default::default()
                }
            )
            .await,
            Err(StoreError::NotFound(_))
        ));
        assert!(!a.delete_subscriber(sb.id).await.unwrap());
        assert_eq!(
            b.subscriber(sb.id).await.unwrap().unwrap().status,
            SubscriberStatus::Active
        );
        assert!(a.nas(nb.id).await.unwrap().is_none());
        assert!(matches!(
            a.nas_secret(nb.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(!a.delete_nas(nb.id).await.unwrap());
        assert!(a.nas_list().await.unwrap().is_empty());
        assert!(b.plan(pa.id).await.unwrap().is_none());
        assert_eq!(
            a.subscribers(&SubscriberQuery::default())
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(a.plans().await.unwrap().len(), 1);
        assert!(b.audit_log(10).await.unwrap().is_empty());
        assert_eq!(a.tenant().await.unwrap().slug.as_str(), "alpha");
        // Ids of another tenant cannot be attached: plan, NAS.
        let mut cross = new_sub("cross", "pw");
        cross.plan_id = Some(pa.id);
        assert!(
            matches!(
                b.create_subscriber(&cross).await,
                Err(StoreError::NotFound(_))
            ),
            "{}",
            ts.backend
        );
        let patch = SubscriberPatch {
            plan_id: Some(Some(pa.id)),
            ..Default::default()
        };
        assert!(matches!(
            b.update_subscriber(sb.id, &patch).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            a.create_peer(nb.id, "eC1rZXk=", None, "10.200.0.9/24", None)
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            a.session_start(
                nb.id,
                None,
                "same",
                "s1",
                None,
                None,
                saas_core::store::now()
            )
            .await,
            Err(StoreError::NotFound(_))
        ));
        assert!(a.sessions(false, 10).await.unwrap().is_empty());
        ts.store.close().await;
    }
}

#[tokio::test]
async fn direct_nas_address_is_unique_platform_wide_and_conflict_names_no_tenant() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "secretco").await;
        let b = tenant(&ts, "otherisp").await;
        a.create_nas(&new_nas("gw", Some("198.51.100.7"), "s1"))
            .await
            .unwrap();
        let err = b
            .create_nas(&new_nas("gw", Some("198.51.100.7"), "s2"))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, StoreError::Conflict(_)),
            "{}: {msg}",
            ts.backend
        );
        assert!(
            msg.contains("198.51.100.7") && msg.contains("already registered"),
            "{msg}"
        );
        assert!(
            !msg.contains("secretco") && !msg.contains(&a.tenant_id().to_string()),
            "{msg}"
        );
        // Same tenant, same name → a name conflict, not an address conflict.
        let err = a
            .create_nas(&new_nas("gw", Some("198.51.100.8"), "s3"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("named"), "{err}");
        // Tunnel NAS have no address and never conflict.
        a.create_nas(&new_nas("t1", None, "s")).await.unwrap();
        b.create_nas(&new_nas("t1", None, "s")).await.unwrap();
        ts.store.close().await;
    }
}

#[tokio::test]
async fn limits_are_enforced() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "small").await;
        a.update_tenant(
            None,
            None,
            Some(TenantLimits {
                max_subscribers: 1,
                max_nas: 1,
            }),
        )
        .await
        .unwrap();
        a.create_subscriber(&new_sub("one", "pw")).await.unwrap();
        let e = a
            .create_subscriber(&new_sub("two", "pw"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::LimitReached(_)) && e.to_string().contains("limit of 1"),
            "{e}"
        );
        a.create_nas(&new_nas("n1", None, "s")).await.unwrap();
        assert!(matches!(
            a.create_nas(&new_nas("n2", None, "s")).await,
            Err(StoreError::LimitReached(_))
        ));
        ts.store.close().await;
    }
}

#[tokio::test]
async fn secrets_are_never_stored_in_clear() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "crypt").await;
        a.create_subscriber(&new_sub("carol", "Sub-Password-Quokka-17"))
            .await
            .unwrap();
        let nas = a
            .create_nas(&new_nas("n", None, "Nas-Secret-Wombat-42"))
            .await
            .unwrap();
        a.create_peer(
            nas.id,
            "cHViLWtleQ==",
            Some("Peer-Private-Key-Numbat-3"),
            "10.200.0.2/24",
            None,
        )
        .await
        .unwrap();
        ts.store
            .platform()
            .upsert_relay_node(
                "relay-1",
                "cmVsYXktcHVi",
                "Relay-Private-Key-Dingo-9",
                Some("192.0.2.1:51820"),
            )
            .await
            .unwrap();
        ts.store
            .platform()
            .create_operator(
                &saas_core::Email::parse("op@example.com").unwrap(),
                "$argon2id$x",
                b"TOTP-Seed-Platypus-55",
            )
            .await
            .unwrap();
        // Values open again through the store.
        assert_eq!(
            ts.store
                .platform()
                .relay_node_keys("relay-1")
                .await
                .unwrap()
                .unwrap()
                .1,
            "Relay-Private-Key-Dingo-9"
        );
        let dump = ts.raw_dump().await;
        assert!(!dump.is_empty());
        let hay = String::from_utf8_lossy(&dump);
        for needle in [
            "Sub-Password-Quokka-17",
            "Nas-Secret-Wombat-42",
            "ApiPassw0rd-Zeta",
            "Peer-Private-Key-Numbat-3",
            "Relay-Private-Key-Dingo-9",
            "TOTP-Seed-Platypus-55",
        ] {
            assert!(
                !hay.contains(needle),
                "{}: {needle} found in clear",
                ts.backend
            );
        }
        // The sealed form carries the key id.
        assert!(
            hay.contains(&format!("v1.{}.", ts.key.id())),
            "{}",
            ts.backend
        );
        ts.store.close().await;
    }
}

#[tokio::test]
async fn system_scope_named_reads() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "sysa").await;
        let b = tenant(&ts, "sysb").await;
        b.set_status(TenantStatus::Suspended).await.unwrap();
        let c = ts.store.tenant(TenantId::new());
        c.insert_tenant(
            &Slug::parse("sysc").unwrap(),
            "c",
            "UTC",
            TenantLimits::default(),
            "10.200.0.0/24",
        )
        .await
        .unwrap(); // provisioning
        let live: Vec<String> = ts
            .store
            .system()
            .live_tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|(s, _)| s.to_string())
            .collect();
        assert_eq!(live, ["sysa", "sysb"], "{}", ts.backend);
        let all = ts.store.system().tenants().await.unwrap();
        assert_eq!(all.len(), 3);
        a.create_subscriber(&new_sub("x", "pw")).await.unwrap();
        let sa = ts
            .store
            .system()
            .tenants()
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.tenant.slug.as_str() == "sysa")
            .unwrap();
        assert_eq!((sa.subscribers, sa.nas, sa.online), (1, 0, 0));
        let nas = a.create_nas(&new_nas("n", None, "s")).await.unwrap();
        a.create_peer(nas.id, "a2V5LWE=", None, "10.200.0.2/24", Some("relay-1"))
            .await
            .unwrap();
        let who = ts
            .store
            .system()
            .peer_by_public_key("a2V5LWE=")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (who.tenant_id, who.nas_id, who.tenant_status),
            (a.tenant_id(), nas.id, TenantStatus::Active)
        );
        assert!(
            ts.store
                .system()
                .peer_by_public_key("bm9wZQ==")
                .await
                .unwrap()
                .is_none()
        );
        // Public keys are unique across tenants.
        let nb = b.create_nas(&new_nas("n", None, "s")).await.unwrap();
        assert!(matches!(
            b.create_peer(nb.id, "a2V5LWE=", None, "10.200.0.2/24", None)
                .await,
            Err(StoreError::Conflict(_))
        ));
        // Overlapping tunnel addresses across tenants are fine.
        b.create_peer(nb.id, "a2V5LWI=", None, "10.200.0.2/24", None)
            .await
            .unwrap();
        // DNS: each live tenant with the relay node holding its peers, and the nodes' endpoints.
        let live = ts.store.system().live_tenants().await.unwrap();
        let nodes: Vec<(String, Option<String>)> =
            live.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
        assert_eq!(
            nodes,
            [
                ("sysa".to_owned(), Some("relay-1".to_owned())),
                ("sysb".to_owned(), None)
            ],
            "{}",
            ts.backend
        );
        ts.store
            .platform()
            .upsert_relay_node("relay-1", "cHVi", "cHJpdg==", Some("198.51.100.7:51820"))
            .await
            .unwrap();
        assert_eq!(
            ts.store.system().relay_endpoints().await.unwrap(),
            [("relay-1".to_owned(), Some("198.51.100.7:51820".to_owned()))],
            "{}",
            ts.backend
        );
        ts.store.close().await;
    }
}

#[tokio::test]
async fn slug_is_unique() {
    for ts in testing::each_backend().await {
        tenant(&ts, "taken").await;
        let e = ts
            .store
            .tenant(TenantId::new())
            .insert_tenant(
                &Slug::parse("taken").unwrap(),
                "x",
                "UTC",
                TenantLimits::default(),
                "10.200.0.0/24",
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Conflict(_)) && e.to_string().contains("taken"),
            "{e}"
        );
        let e = ts
            .store
            .tenant(TenantId::new())
            .insert_tenant(
                &Slug::parse("newone").unwrap(),
                "x",
                "Nowhere/Zone",
                TenantLimits::default(),
                "10.200.0.0/24",
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("timezone"), "{e}");
        ts.store.close().await;
    }
}

#[tokio::test]
async fn events_are_ordered_and_pruned() {
    for ts in testing::each_backend().await {
        let p = ts.store.platform();
        assert_eq!(p.last_event_id().await.unwrap(), 0);
        let t = TenantId::new();
        let id1 = p
            .append_event(Some(t), "tenant.changed", None, "{}")
            .await
            .unwrap();
        let id2 = p
            .append_event(None, "dns.changed", Some(uuid::Uuid::new_v4()), "{\"a\":1}")
            .await
            .unwrap();
        assert!(id2 > id1);
        let evs = p.events_after(0, 10).await.unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].tenant_id, Some(t));
        assert_eq!(evs[1].kind, "dns.changed");
        assert_eq!(p.events_after(id1, 10).await.unwrap().len(), 1);
        assert_eq!(
            p.prune_events(saas_core::store::now() + chrono::Duration::seconds(1))
                .await
                .unwrap(),
            2
        );
        ts.store.close().await;
    }
}

/// Under RLS, a hand-written query that forgets the tenant filter, run as the application role,
/// sees only the tenant of the transaction — and nothing without one. The system role cannot read
/// sealed columns or tenant tables outside its grant.
#[tokio::test]
async fn postgres_rls_is_a_second_wall() {
    let Some(ts) = testing::postgres().await else {
        return;
    };
    let a = tenant(&ts, "rlsa").await;
    let b = tenant(&ts, "rlsb").await;
    a.create_subscriber(&new_sub("a-user", "pw")).await.unwrap();
    b.create_subscriber(&new_sub("b-user", "pw")).await.unwrap();
    b.create_nas(&new_nas("b-nas", Some("203.0.113.5"), "s"))
        .await
        .unwrap();

    let app = sqlx::PgPool::connect(&ts.options.url).await.unwrap();
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(who, "proxpanel_app");
    let (is_super, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&app)
            .await
            .unwrap();
    assert!(!is_super && !bypass);
    let owner: String = sqlx::query_scalar(
        "SELECT tableowner::text FROM pg_tables WHERE tablename = 'subscribers'",
    )
    .fetch_one(&app)
    .await
    .unwrap();
    assert_ne!(owner, "proxpanel_app");

    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(a.tenant_id().to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let names: Vec<String> = sqlx::query_scalar("SELECT username FROM subscribers")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(names, ["a-user"]);
    let nas: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nas_devices")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(nas, 0);
    let tenants: Vec<String> = sqlx::query_scalar("SELECT slug FROM tenants")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(tenants, ["rlsa"]);
    // Writing into another tenant is refused by the policy's WITH CHECK.
    let bad = sqlx::query("INSERT INTO subscribers (id, tenant_id, username, password, status, created_at, updated_at) VALUES ($1, $2, 'evil', 'x', 'active', now(), now())")
        .bind(uuid::Uuid::new_v4()).bind(b.tenant_id().0).execute(&mut *tx).await;
    assert!(bad.is_err(), "RLS let a cross-tenant insert through");
    tx.rollback().await.unwrap();
    // Updating or deleting another tenant's rows touches nothing.
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(a.tenant_id().to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let n = sqlx::query("DELETE FROM subscribers WHERE username = 'b-user'")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 0);
    tx.commit().await.unwrap();
    // No tenant set: nothing at all.
    let none: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscribers")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(none, 0);
    // The setting does not leak to the next transaction on the same connection.
    let mut conn = app.acquire().await.unwrap();
    let mut tx = sqlx::Acquire::begin(&mut *conn).await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(a.tenant_id().to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscribers")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(after, 0);
    drop(conn);
    app.close().await;

    let sys = sqlx::PgPool::connect(ts.options.system_url.as_deref().unwrap())
        .await
        .unwrap();
    let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
        .fetch_one(&sys)
        .await
        .unwrap();
    assert_eq!(all, 2);
    assert!(
        sqlx::query("SELECT password FROM subscribers")
            .fetch_all(&sys)
            .await
            .is_err(),
        "system role read sealed passwords"
    );
    assert!(
        sqlx::query("SELECT secret FROM nas_devices")
            .fetch_all(&sys)
            .await
            .is_err(),
        "system role read NAS secrets"
    );
    assert!(
        sqlx::query("SELECT * FROM tenant_users")
            .fetch_all(&sys)
            .await
            .is_err(),
        "system role read tenant users"
    );
    assert!(
        sqlx::query("DELETE FROM tenants")
            .execute(&sys)
            .await
            .is_err(),
        "system role could write"
    );
    sys.close().await;
    ts.store.close().await;
}

#[tokio::test]
async fn postgres_requires_roles_with_a_clear_message() {
    let Some(ts) = testing::postgres().await else {
        return;
    };
    // Connecting to a bogus host shows the URL without its password.
    let opts = saas_core::store::StoreOptions::from_url("postgres://app:hunter2@127.0.0.1:1/none");
    let err = saas_core::Store::connect(
        &opts,
        saas_core::crypto::SecretBox::new(ts.key.clone(), vec![]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("127.0.0.1:1") && !err.contains("hunter2"),
        "{err}"
    );
    ts.store.close().await;
}

fn acct(
    kind: AcctKind,
    nas: saas_core::NasId,
    id: &str,
    t: i64,
    input: i64,
    output: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> AcctRecord {
    AcctRecord {
        id: saas_core::ids::SessionId::new(),
        kind,
        nas,
        subscriber: None,
        username: "dave".into(),
        acct_session_id: id.into(),
        framed_ip: Some("100.64.0.5".into()),
        calling_station_id: None,
        nas_port_id: None,
        session_time_s: t,
        input_octets: input,
        output_octets: output,
        terminate_cause: if kind == AcctKind::Stop {
            Some("User-Request".into())
        } else {
            None
        },
        at,
    }
}

#[tokio::test]
async fn accounting_is_absolute_and_idempotent() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "acctco").await;
        let nas = a.create_nas(&new_nas("n", None, "s")).await.unwrap();
        let t0 = saas_core::store::now() - chrono::Duration::seconds(600);
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        a.record_accounting(&[acct(AcctKind::Start, nas.id, "A1", 0, 0, 0, at(0))])
            .await
            .unwrap();
        assert_eq!(a.open_session_count("dave").await.unwrap(), 1);
        let big = (5i64 << 32) + 7; // gigawords folded in by the engine
        a.record_accounting(&[acct(AcctKind::Interim, nas.id, "A1", 60, big, 1000, at(60))])
            .await
            .unwrap();
        // A retransmitted (or late) older interim never lowers the counters.
        a.record_accounting(&[acct(AcctKind::Interim, nas.id, "A1", 30, 10, 10, at(30))])
            .await
            .unwrap();
        a.record_accounting(&[acct(
            AcctKind::Stop,
            nas.id,
            "A1",
            120,
            big + 1,
            2000,
            at(120),
        )])
        .await
        .unwrap();
        // The Stop again: same row, no second session.
        a.record_accounting(&[acct(
            AcctKind::Stop,
            nas.id,
            "A1",
            120,
            big + 1,
            2000,
            at(121),
        )])
        .await
        .unwrap();
        let s = a.sessions(false, 10).await.unwrap();
        assert_eq!(s.len(), 1, "{}", ts.backend);
        assert_eq!((s[0].input_octets, s[0].output_octets), (big + 1, 2000));
        assert!(s[0].stopped_at.is_some());
        assert_eq!(s[0].terminate_cause.as_deref(), Some("User-Request"));
        assert_eq!(a.open_session_count("dave").await.unwrap(), 0);
        // The same record applied twice (spool replay) opens one session.
        let rec = acct(AcctKind::Start, nas.id, "R1", 0, 0, 0, at(200));
        a.record_accounting(&[rec.clone(), rec.clone()])
            .await
            .unwrap();
        a.record_accounting(std::slice::from_ref(&rec))
            .await
            .unwrap();
        // A retransmitted Start (new record id, same start time) also opens nothing new.
        a.record_accounting(&[acct(AcctKind::Start, nas.id, "R1", 0, 0, 0, at(201))])
            .await
            .unwrap();
        assert_eq!(a.open_session_count("dave").await.unwrap(), 1);
        a.record_accounting(&[acct(AcctKind::Stop, nas.id, "R1", 10, 0, 0, at(210))])
            .await
            .unwrap();
        assert_eq!(a.sessions(false, 10).await.unwrap().len(), 2);
        // Acct-Session-Id reused after a reboot: a Start opens a new row.
        a.record_accounting(&[acct(AcctKind::Start, nas.id, "A1", 0, 0, 0, at(300))])
            .await
            .unwrap();
        // An Interim without a Start opens its session.
        a.record_accounting(&[acct(AcctKind::Interim, nas.id, "B7", 100, 50, 60, at(400))])
            .await
            .unwrap();
        assert_eq!(a.sessions(false, 10).await.unwrap().len(), 4);
        assert_eq!(a.open_session_count("dave").await.unwrap(), 2);
        let (i, o) = a.usage_since("dave", None).await.unwrap();
        assert_eq!((i, o), (big + 1 + 50, 2060));
        // Accounting-On closes every open session of that NAS.
        assert_eq!(
            a.close_nas_sessions(nas.id, at(500), "NAS-Reboot")
                .await
                .unwrap(),
            2
        );
        assert_eq!(a.open_session_count("dave").await.unwrap(), 0);
        // Message-Authenticator memory.
        a.mark_message_auth_seen(nas.id, "pap").await.unwrap();
        a.touch_nas(nas.id, at(500)).await.unwrap();
        let n = a.nas(nas.id).await.unwrap().unwrap();
        assert_eq!(n.message_auth_seen, ["pap"]);
        assert!(n.radius_last_seen.is_some());
        ts.store.close().await;
    }
}

/// A batch (group commit) gives exactly the rows that the same records give one by one — on
/// PostgreSQL a batch goes through the bulk statements, so this pins them to the one-by-one rules.
#[tokio::test]
async fn accounting_batch_equals_one_by_one() {
    for ts in testing::each_backend().await {
        let t0 = saas_core::store::now() - chrono::Duration::seconds(7200);
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        // The first full hour after t0 + 1,500 s.
        let hour = {
            let s = (t0 + chrono::Duration::seconds(1500)).timestamp();
            chrono::DateTime::from_timestamp(s - s.rem_euclid(3600) + 3600, 0).unwrap()
        };
        let script = |nas| {
            let mut v = Vec::new();
            for n in 0..20i64 {
                let id = format!("S{n}");
                v.push(acct(AcctKind::Start, nas, &id, 0, 0, 0, at(n)));
                v.push(acct(
                    AcctKind::Interim,
                    nas,
                    &id,
                    60,
                    n * 100,
                    n,
                    at(n + 60),
                ));
                if n % 3 == 0 {
                    // retransmitted Start and a late, lower Interim
                    v.push(acct(AcctKind::Start, nas, &id, 0, 0, 0, at(n + 1)));
                    v.push(acct(AcctKind::Interim, nas, &id, 30, 1, 1, at(n + 30)));
                }
                // Stops for even n, and for every fourth n the Stop again, later.
                for (every, late) in [(2, 120), (4, 125)] {
                    if n % every == 0 {
                        let stop =
                            acct(AcctKind::Stop, nas, &id, 120, n * 200, n * 2, at(n + late));
                        v.push(stop);
                    }
                }
            }
            // lost Starts: an Interim and a Stop open their sessions
            v.push(acct(AcctKind::Interim, nas, "L1", 50, 5, 5, at(500)));
            v.push(acct(AcctKind::Stop, nas, "L2", 70, 7, 7, at(510)));
            // Acct-Session-Id reused after a reboot
            v.push(acct(AcctKind::Start, nas, "S1", 0, 0, 0, at(900)));
            v.push(acct(AcctKind::Interim, nas, "S1", 60, 9, 9, at(960)));
            // Reused while its older session is still open: the new Start's Interims update
            // both (so its records cannot be one insert).
            v.push(acct(AcctKind::Start, nas, "S2", 0, 0, 0, at(1000)));
            v.push(acct(AcctKind::Interim, nas, "S2", 40, 4, 4, at(1040)));
            v.push(acct(AcctKind::Start, nas, "S2", 0, 0, 0, at(1200)));
            v.push(acct(AcctKind::Interim, nas, "S2", 30, 3, 3, at(1230)));
            v.push(acct(AcctKind::Stop, nas, "S2", 50, 70, 5, at(1250)));
            // Sessions across an hour boundary (the hourly usage splits at it); one of them also
            // changes its Framed-IP on the way.
            for (k, id) in ["H1", "H2"].iter().enumerate() {
                let k = k as i64;
                v.push(acct(
                    AcctKind::Start,
                    nas,
                    id,
                    0,
                    0,
                    0,
                    hour - chrono::Duration::seconds(30 + k),
                ));
                let mut moved = acct(
                    AcctKind::Interim,
                    nas,
                    id,
                    20,
                    100,
                    10,
                    hour - chrono::Duration::seconds(10),
                );
                if k == 1 {
                    moved.framed_ip = Some("100.64.0.9".into());
                }
                v.push(moved);
                v.push(acct(
                    AcctKind::Interim,
                    nas,
                    id,
                    40,
                    300,
                    30,
                    hour + chrono::Duration::seconds(10),
                ));
                v.push(acct(
                    AcctKind::Interim,
                    nas,
                    id,
                    50,
                    400,
                    35,
                    hour + chrono::Duration::seconds(20),
                ));
                v.push(acct(
                    AcctKind::Stop,
                    nas,
                    id,
                    60,
                    450,
                    40,
                    hour + chrono::Duration::seconds(30),
                ));
            }
            // A lost Start, then more of the same session.
            v.push(acct(AcctKind::Interim, nas, "L3", 10, 1, 1, at(1300)));
            v.push(acct(AcctKind::Interim, nas, "L3", 20, 2, 2, at(1310)));
            v.push(acct(AcctKind::Stop, nas, "L3", 30, 3, 3, at(1320)));
            v
        };
        let mut tables = Vec::new();
        // The accounting writer's lane (its own connection on PostgreSQL, the tenant set once
        // per switch): shared by the lane-* tenants, so it switches tenant between them (RLS
        // would refuse a row written under the previous tenant).
        let mut lane = saas_core::store::AcctLane::default();
        // Each configuration applies the script `times` times (a replay applies records again).
        for (slug, chunk, through_lane, times) in [
            ("one-by-one", 1usize, false, 1),
            ("batch-all", 10_000, false, 1),
            ("batch-7", 7, false, 1),
            ("lane-all", 10_000, true, 1),
            ("lane-7", 7, true, 1),
            ("lane-1", 1, true, 1),
            ("one-by-one-twice", 1, false, 2),
            ("batch-all-twice", 10_000, false, 2),
            ("lane-3-twice", 3, true, 2),
        ] {
            let a = tenant(&ts, slug).await;
            let nas = a.create_nas(&new_nas("n", None, "s")).await.unwrap();
            let records = script(nas.id);
            let records = records
                .iter()
                .cycle()
                .take(records.len() * times)
                .cloned()
                .collect::<Vec<_>>();
            for c in records.chunks(chunk) {
                if through_lane {
                    ts.store
                        .record_accounting_in(&mut lane, a.tenant_id(), c)
                        .await
                        .unwrap();
                } else {
                    a.record_accounting(c).await.unwrap();
                }
            }
            let mut rows: Vec<_> = a
                .sessions(false, 1000)
                .await
                .unwrap()
                .into_iter()
                .map(|s| {
                    (
                        s.acct_session_id,
                        s.started_at,
                        s.stopped_at,
                        s.input_octets,
                        s.output_octets,
                        s.terminate_cause,
                        s.framed_ip,
                        s.updated_at,
                    )
                })
                .collect();
            rows.sort();
            let hourly: Vec<_> = a
                .usage_hourly(t0 - chrono::Duration::seconds(3600))
                .await
                .unwrap()
                .into_iter()
                .map(|h| (h.hour, h.username, h.input_octets, h.output_octets))
                .collect();
            tables.push((slug, times, rows, hourly));
        }
        let (_, _, once, hourly_once) = &tables[0];
        assert_eq!(once.len(), 28, "{}: {:?}", ts.backend, once);
        assert!(
            hourly_once.iter().any(|h| h.0 == hour) && hourly_once.iter().any(|h| h.0 < hour),
            "{}: usage on both sides of the hour: {hourly_once:?}",
            ts.backend
        );
        let (_, _, twice, hourly_twice) = &tables[6];
        for (slug, times, rows, hourly) in &tables[1..] {
            let (want, want_hourly) = if *times == 1 {
                (once, hourly_once)
            } else {
                (twice, hourly_twice)
            };
            assert_eq!(rows, want, "{}: {slug} differs from one-by-one", ts.backend);
            assert_eq!(
                hourly, want_hourly,
                "{}: {slug}'s hourly usage differs from one-by-one",
                ts.backend
            );
        }
    }
}

#[tokio::test]
async fn auth_log_batch_is_written_whole_and_per_tenant() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "alog-a").await;
        let b = tenant(&ts, "alog-b").await;
        let nas = a.create_nas(&new_nas("n", None, "s")).await.unwrap();
        let base = saas_core::store::now();
        let lines: Vec<AuthLogEntry> = (0..300)
            .map(|i| AuthLogEntry {
                at: base + chrono::Duration::milliseconds(i),
                nas_id: (i % 2 == 0).then_some(nas.id),
                username: format!("u{i}"),
                method: (i % 3 == 0).then(|| "pap".to_owned()),
                outcome: if i % 5 == 0 { "reject" } else { "accept" }.into(),
                reason: (i % 5 == 0).then(|| "wrong password".to_owned()),
                calling_station_id: None,
            })
            .collect();
        a.log_auth(&lines).await.unwrap();
        let got = a.auth_log(1000).await.unwrap();
        assert_eq!(got.len(), 300, "{}", ts.backend);
        let last = &got[0];
        assert_eq!(last.username, "u299", "{}: newest first", ts.backend);
        assert_eq!(last.nas_id, None);
        assert_eq!(last.method, None);
        let first = got.iter().find(|e| e.username == "u0").unwrap();
        assert_eq!(first.nas_id, Some(nas.id));
        assert_eq!(first.method.as_deref(), Some("pap"));
        assert_eq!(first.reason.as_deref(), Some("wrong password"));
        assert!(b.auth_log(1000).await.unwrap().is_empty(), "{}", ts.backend);
    }
}

/// The store keeps the links of the hot tables itself (PostgreSQL has no foreign keys on them,
/// migration 0005): deleting a subscriber keeps its session history, deleting a NAS
/// deletes its sessions, and neither touches another tenant's rows.
#[tokio::test]
async fn deletes_keep_session_links_consistent_on_every_backend() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "linksa").await;
        let b = tenant(&ts, "linksb").await;
        let mut ids = Vec::new();
        for scope in [&a, &b] {
            let nas = scope.create_nas(&new_nas("n", None, "s")).await.unwrap();
            let sub = scope
                .create_subscriber(&new_sub("dave", "x"))
                .await
                .unwrap();
            let at = saas_core::store::now() - chrono::Duration::seconds(60);
            let mut r = acct(AcctKind::Start, nas.id, "L1", 0, 0, 0, at);
            r.subscriber = Some(sub.id);
            scope.record_accounting(&[r]).await.unwrap();
            ids.push((nas.id, sub.id));
        }
        let (nas_a, sub_a) = ids[0];
        assert!(a.delete_subscriber(sub_a).await.unwrap());
        let s = a.sessions(false, 10).await.unwrap();
        assert_eq!(s.len(), 1, "{}: history stays", ts.backend);
        assert!(a.delete_nas(nas_a).await.unwrap());
        assert!(
            a.sessions(false, 10).await.unwrap().is_empty(),
            "{}",
            ts.backend
        );
        // Tenant B's NAS, subscriber and session are untouched.
        assert_eq!(
            b.sessions(false, 10).await.unwrap().len(),
            1,
            "{}",
            ts.backend
        );
        // The ids of B used in A's scope change nothing.
        assert!(!a.delete_nas(ids[1].0).await.unwrap());
        assert!(!a.delete_subscriber(ids[1].1).await.unwrap());
        assert_eq!(
            b.sessions(false, 10).await.unwrap().len(),
            1,
            "{}",
            ts.backend
        );
    }
}

#[tokio::test]
async fn first_peer_assigns_the_tenant_relay_node_and_endpoints_follow_the_setting() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "relayed").await;
        let b = tenant(&ts, "other").await;
        assert_eq!(a.tenant().await.unwrap().relay_node, None);
        let n1 = a.create_nas(&new_nas("n1", None, "s")).await.unwrap();
        let n2 = a.create_nas(&new_nas("n2", None, "s")).await.unwrap();
        a.create_peer(n1.id, "a2V5LTE=", None, "10.200.0.2/24", Some("relay-1"))
            .await
            .unwrap();
        assert_eq!(
            a.tenant().await.unwrap().relay_node.as_deref(),
            Some("relay-1")
        );
        // A later peer on another node does not move the tenant; other tenants are untouched.
        a.create_peer(n2.id, "a2V5LTI=", None, "10.200.0.3/24", Some("relay-2"))
            .await
            .unwrap();
        assert_eq!(
            a.tenant().await.unwrap().relay_node.as_deref(),
            Some("relay-1")
        );
        assert_eq!(b.tenant().await.unwrap().relay_node, None);
        let live = ts.store.system().live_tenants().await.unwrap();
        assert!(
            live.iter()
                .any(|(s, r)| s.as_str() == "relayed" && r.as_deref() == Some("relay-1"))
        );

        // The endpoint of a node follows PROXPANEL_WG_PUBLIC_ENDPOINT; the key stays.
        let p = ts.store.platform();
        p.upsert_relay_node("relay-1", "cHVi", "priv", Some("192.0.2.1:51820"))
            .await
            .unwrap();
        assert!(
            !p.set_relay_endpoint("relay-1", Some("192.0.2.1:51820"))
                .await
                .unwrap()
        );
        assert!(
            p.set_relay_endpoint("relay-1", Some("198.51.100.9:51820"))
                .await
                .unwrap()
        );
        let eps = ts.store.system().relay_endpoints().await.unwrap();
        assert_eq!(
            eps,
            vec![(
                "relay-1".to_string(),
                Some("198.51.100.9:51820".to_string())
            )]
        );
        assert!(p.set_relay_endpoint("relay-1", None).await.unwrap());
        assert_eq!(
            p.relay_node_keys("relay-1").await.unwrap().unwrap(),
            ("cHVi".to_string(), "priv".to_string())
        );
        ts.store.close().await;
    }
}

/// Search is a case-insensitive substring of the username, literal (no wildcards), combined with
/// the other filters, and never reaches another tenant's subscribers (on PostgreSQL it runs on the
/// suffix index of migration 0013, kept by triggers).
#[tokio::test]
async fn subscriber_search_is_a_scoped_literal_substring() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "acme").await;
        let b = tenant(&ts, "beta").await;
        for name in ["alice.smith", "Bob-Jones", "carol_x", "carolyn", "dave%"] {
            a.create_subscriber(&new_sub(name, "pw")).await.unwrap();
        }
        b.create_subscriber(&new_sub("alice.b", "pw"))
            .await
            .unwrap();
        let names = |scope: &TenantScope, q: SubscriberQuery| {
            let scope = scope.clone();
            async move {
                let page = scope.subscribers(&q).await.unwrap();
                page.items
                    .into_iter()
                    .map(|s| s.username)
                    .collect::<Vec<_>>()
            }
        };
        let search = |s: &str| SubscriberQuery {
            search: Some(s.into()),
            ..Default::default()
        };
        let backend = ts.store.backend_name();
        assert_eq!(
            names(&a, search("SMITH")).await,
            ["alice.smith"],
            "{backend}"
        );
        assert_eq!(names(&a, search("ice")).await, ["alice.smith"], "{backend}");
        assert_eq!(names(&b, search("ice")).await, ["alice.b"], "{backend}");
        assert_eq!(names(&a, search("jones")).await, ["Bob-Jones"], "{backend}");
        assert_eq!(
            names(&a, search("carol")).await,
            ["carol_x", "carolyn"],
            "{backend}"
        );
        // '_' and '%' are characters, not wildcards.
        assert_eq!(names(&a, search("l_")).await, ["carol_x"], "{backend}");
        assert_eq!(names(&a, search("e%")).await, ["dave%"], "{backend}");
        assert!(names(&a, search("zzz")).await.is_empty(), "{backend}");
        // With a status filter, and in another sort order.
        let carol = a
            .subscribers(&search("carolyn"))
            .await
            .unwrap()
            .items
            .remove(0);
        a.update_subscriber(
            carol.id,
            &SubscriberPatch {
                status: Some(SubscriberStatus::Disabled),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let disabled_carols = SubscriberQuery {
            status: Some(SubscriberStatus::Disabled),
            ..search("CAROL")
        };
        assert_eq!(
            names(&a, disabled_carols.clone()).await,
            ["carolyn"],
            "{backend}"
        );
        let sorted = a
            .subscribers_sorted(
                &search("a"),
                saas_core::store::SubscriberSort {
                    key: saas_core::store::SubscriberSortKey::Created,
                    descending: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(sorted.items.len(), 4, "{backend}: a, in all but Bob-Jones");
        // Pages of a search follow the cursor.
        let first = a
            .subscribers(&SubscriberQuery {
                limit: Some(1),
                ..search("carol")
            })
            .await
            .unwrap();
        assert_eq!(first.items[0].username, "carol_x", "{backend}");
        let second = a
            .subscribers(&SubscriberQuery {
                limit: Some(1),
                after: first.next_cursor.clone(),
                ..search("carol")
            })
            .await
            .unwrap();
        assert_eq!(second.items[0].username, "carolyn", "{backend}");
        // A term found in very many usernames (here 1,200 suffixes) takes the other query form
        // on PostgreSQL; same answers, same pages.
        for i in 0..120 {
            a.create_subscriber(&new_sub(&format!("aaaaaaaaaa{i:03}"), "pw"))
                .await
                .unwrap();
        }
        let broad = a
            .subscribers(&SubscriberQuery {
                limit: Some(50),
                ..search("AA")
            })
            .await
            .unwrap();
        assert_eq!(broad.items.len(), 50, "{backend}");
        assert_eq!(broad.items[0].username, "aaaaaaaaaa000", "{backend}");
        let next = a
            .subscribers(&SubscriberQuery {
                limit: Some(100),
                after: broad.next_cursor.clone(),
                ..search("AA")
            })
            .await
            .unwrap();
        assert_eq!(next.items.len(), 70, "{backend}");
        assert_eq!(next.items[0].username, "aaaaaaaaaa050", "{backend}");
        assert!(next.next_cursor.is_none(), "{backend}");
        // A deleted subscriber is no longer found.
        assert!(a.delete_subscriber(carol.id).await.unwrap());
        assert!(names(&a, disabled_carols).await.is_empty(), "{backend}");
        assert_eq!(names(&a, search("carol")).await, ["carol_x"], "{backend}");
    }
}

#[tokio::test]
async fn operator_console_reads_relays_peers_polling_and_zone_changes() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "cona").await;
        let b = tenant(&ts, "conb").await;
        let p = ts.store.platform();
        let sys = ts.store.system();
        // A report for an unknown node is refused; a registered node keeps its latest report.
        let mut stats = RelayStats::default();
        stats.drops.insert("unknown_key".into(), 4);
        stats.handshakes_ok = 9;
        assert!(!p.report_relay_stats("relay-x", &stats).await.unwrap());
        p.upsert_relay_node("relay-1", "cHVi", "cHJpdg==", None)
            .await
            .unwrap();
        assert!(p.report_relay_stats("relay-1", &stats).await.unwrap());
        let nodes = sys.relay_nodes().await.unwrap();
        assert_eq!(nodes.len(), 1, "{}", ts.backend);
        assert_eq!(nodes[0].stats.as_ref(), Some(&stats), "{}", ts.backend);
        assert!(nodes[0].last_seen.is_some());
        // Peers of both tenants, with their tenant, NAS and handshake.
        let na = a.create_nas(&new_nas("edge-a", None, "s1")).await.unwrap();
        let nb = b.create_nas(&new_nas("edge-b", None, "s2")).await.unwrap();
        let pa = a
            .create_peer(na.id, "YS1rZXk=", None, "10.200.0.2/24", Some("relay-1"))
            .await
            .unwrap();
        b.create_peer(nb.id, "Yi1rZXk=", None, "10.200.1.2/24", Some("relay-1"))
            .await
            .unwrap();
        let seen = chrono::Utc::now();
        a.record_peer_status(
            pa.id,
            &PeerStatusUpdate {
                last_handshake: Some(seen),
                endpoint: Some("203.0.113.5:4000".into()),
                rx_bytes: 1,
                tx_bytes: 2,
                handshake_tai64: None,
                state: TunnelState::Up,
            },
        )
        .await
        .unwrap();
        let peers = sys.relay_peer_status().await.unwrap();
        let got: Vec<_> = peers
            .iter()
            .map(|p| {
                (
                    p.tenant.as_str(),
                    p.nas.as_str(),
                    p.last_handshake.is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [("cona", "edge-a", true), ("conb", "edge-b", false)],
            "{}",
            ts.backend
        );
        // RouterOS polling: one NAS of one tenant checked.
        let since = chrono::Utc::now() - chrono::Duration::minutes(1);
        assert_eq!(sys.routeros_checked_since(since).await.unwrap(), (0, 0));
        a.set_nas_api_state(na.id, ApiState::Online, None)
            .await
            .unwrap();
        assert_eq!(
            sys.routeros_checked_since(since).await.unwrap(),
            (1, 1),
            "{}",
            ts.backend
        );
        // The zone's latest change comes from the event log.
        p.append_event(None, "dns.changed", None, "{}")
            .await
            .unwrap();
        assert!(
            sys.zone_changed_at().await.unwrap().is_some(),
            "{}",
            ts.backend
        );
        ts.store.close().await;
    }
}

#[tokio::test]
async fn hourly_traffic_sums_each_rise_once_and_old_hours_are_pruned_for_every_tenant() {
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "hourlya").await;
        let b = tenant(&ts, "hourlyb").await;
        let na = a.create_nas(&new_nas("n", None, "s")).await.unwrap();
        let nb = b.create_nas(&new_nas("n", None, "s")).await.unwrap();
        let now = saas_core::store::now();
        let old = now - chrono::Duration::hours(30);
        let later = old + chrono::Duration::minutes(1);
        // Two sessions of dave through the batch statement, then interims in one batch.
        a.record_accounting(&[
            acct(AcctKind::Start, na.id, "A1", 0, 0, 0, old),
            acct(AcctKind::Start, na.id, "A2", 0, 0, 0, old),
        ])
        .await
        .unwrap();
        a.record_accounting(&[
            acct(AcctKind::Interim, na.id, "A1", 60, 100, 200, later),
            acct(AcctKind::Interim, na.id, "A2", 60, 1000, 2000, later),
        ])
        .await
        .unwrap();
        // One more rise an hour-plus later, then its retransmit (no rise, nothing added).
        let recent = now - chrono::Duration::minutes(1);
        for _ in 0..2 {
            a.record_accounting(&[acct(AcctKind::Interim, na.id, "A1", 99, 150, 300, recent)])
                .await
                .unwrap();
        }
        b.record_accounting(&[
            acct(AcctKind::Start, nb.id, "B1", 0, 0, 0, old),
            acct(AcctKind::Interim, nb.id, "B2", 60, 7, 7, later),
        ])
        .await
        .unwrap();
        let since = now - chrono::Duration::hours(48);
        let rows = |v: Vec<saas_core::store::HourlyUsage>| {
            v.into_iter()
                .map(|h| (h.username, h.input_octets, h.output_octets))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rows(a.usage_hourly(since).await.unwrap()),
            vec![("dave".into(), 1100, 2200), ("dave".into(), 50, 100)],
            "{}",
            ts.backend
        );
        assert_eq!(
            rows(b.usage_hourly(since).await.unwrap()),
            vec![("dave".into(), 7, 7)]
        );
        // Pruning before a day ago drops both tenants' old hour and keeps the recent one.
        let gone = ts
            .store
            .platform()
            .prune_usage_hourly(now - chrono::Duration::hours(24))
            .await
            .unwrap();
        assert_eq!(gone, 2, "{}", ts.backend);
        assert_eq!(
            rows(a.usage_hourly(since).await.unwrap()),
            vec![("dave".into(), 50, 100)]
        );
        assert!(b.usage_hourly(since).await.unwrap().is_empty());
    }
}

/// A record for a session that is already closed (a repeated Stop, a spool replayed after a
/// crash that had committed it) finds that session by its key, not by reading every session of
/// the tenant (migration 0017: the index of open sessions alone left it to a scan of the table).
#[tokio::test]
async fn a_record_for_a_closed_session_finds_it_by_its_key() {
    use sqlx::Connection as _;
    let Some(ts) = testing::postgres().await else {
        return;
    };
    let a = tenant(&ts, "closed-key").await;
    let nas = a.create_nas(&new_nas("n", None, "s")).await.unwrap();
    let t0 = saas_core::store::now() - chrono::Duration::seconds(7200);
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let mut records = Vec::new();
    for n in 0..5000 {
        let id = format!("C{n}");
        records.push(acct(AcctKind::Start, nas.id, &id, 0, 0, 0, at(n)));
        records.push(acct(AcctKind::Stop, nas.id, &id, 60, 10, 10, at(n + 60)));
    }
    a.record_accounting(&records).await.unwrap();
    // The Stop again, later and higher: the closed session takes its counters, no row is added.
    a.record_accounting(&[acct(AcctKind::Stop, nas.id, "C42", 60, 20, 20, at(103))])
        .await
        .unwrap();
    let (i, o) = a.usage_since("dave", None).await.unwrap();
    assert_eq!((i, o), (5000 * 10 + 10, 5000 * 10 + 10));
    ts.store.platform().refresh_session_stats().await.unwrap();
    let mut su = sqlx::PgConnection::connect(ts.super_url.as_deref().unwrap())
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM radius_sessions WHERE tenant_id = $1 AND nas_id = $2 AND acct_session_id = $3
           AND stopped_at IS NOT NULL AND started_at >= $4 AND started_at <= $5 ORDER BY started_at DESC LIMIT 1",
    )
    .bind(a.tenant_id().0)
    .bind(nas.id.0)
    .bind("C42")
    .bind(at(40))
    .bind(at(44))
    .fetch_all(&mut su)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("radius_sessions_key"), "{plan}");
    ts.store.close().await;
}
