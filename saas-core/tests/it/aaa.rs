use std::time::Duration;

use sqlx::Connection;

use saas_core::aaa::writer::{self, AcctOp, AcctWriter};
use saas_core::ids::SessionId;
use saas_core::model::*;
use saas_core::testing;
use saas_core::{Slug, TenantId};

fn rec(kind: AcctKind, nas: saas_core::NasId, id: &str, t: i64, octets: i64) -> AcctRecord {
    AcctRecord {
        id: SessionId::new(),
        kind,
        nas,
        subscriber: None,
        username: "erin".into(),
        acct_session_id: id.into(),
        framed_ip: None,
        calling_station_id: None,
        nas_port_id: None,
        session_time_s: t,
        input_octets: octets,
        output_octets: octets,
        terminate_cause: None,
        at: saas_core::store::now() - chrono::Duration::seconds(600 - t),
    }
}

async fn psql(super_url: &str, sql: &str) {
    let admin_db = {
        let mut u = url::Url::parse(super_url).unwrap();
        u.set_path("/postgres");
        u.to_string()
    };
    let pool = sqlx::PgPool::connect(&admin_db).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// Submits one record for each of `n` sessions `<prefix><k>` from concurrent tasks (octets
/// `octets + k`); returns when all are acknowledged.
#[allow(clippy::too_many_arguments)]
async fn submit_all(
    w: &AcctWriter,
    t: TenantId,
    nas: saas_core::NasId,
    prefix: &str,
    n: i64,
    kind: AcctKind,
    at: i64,
    octets: i64,
) {
    let mut tasks = Vec::new();
    for k in 0..n {
        let w = w.clone();
        let r = rec(kind, nas, &format!("{prefix}{k}"), at, octets + k);
        tasks.push(tokio::spawn(
            async move { w.submit(t, AcctOp::Record(r)).await },
        ));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

/// A superuser connection in a transaction holding a lock that blocks every INSERT and UPDATE
/// of `radius_sessions` (the store is "busy") until `COMMIT` is sent on it.
async fn lock_sessions(ts: &testing::TestStore) -> sqlx::PgConnection {
    let super_url = ts.super_url.clone().unwrap();
    let mut holder = sqlx::PgConnection::connect(&super_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE radius_sessions IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

/// The one session with Acct-Session-Id `id` among `sessions` (fails if there are none or
/// several; `context` goes into the message).
fn only_session<'s>(sessions: &'s [Session], id: &str, context: &str) -> &'s Session {
    let m: Vec<_> = sessions
        .iter()
        .filter(|s| s.acct_session_id == id)
        .collect();
    assert_eq!(m.len(), 1, "{context}: {id}: {m:#?}");
    m[0]
}

/// Names of the spool files (`spool…`) in `dir`.
fn spool_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("spool"))
        .collect()
}

async fn set_connections(super_url: &str, allow: bool) {
    let db = url::Url::parse(super_url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    psql(
        super_url,
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS {allow}"),
    )
    .await;
    if !allow {
        psql(
            super_url,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
            ),
        )
        .await;
    }
}

/// With the store down, accounting is still acknowledged (from the fsync'd spool); once the
/// store is back every record is there, none twice.
#[tokio::test]
async fn accounting_survives_a_store_outage() {
    let Some(ts) = testing::postgres().await else {
        return;
    };
    let t = TenantId::new();
    let scope = ts.store.tenant(t);
    scope
        .insert_tenant(
            &Slug::parse("spooly").unwrap(),
            "s",
            "UTC",
            TenantLimits::default(),
            "10.200.0.0/24",
        )
        .await
        .unwrap();
    let nas = scope
        .create_nas(&NewNas {
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
    let spool = ts.dir.path().join("spool.jsonl");
    let w = AcctWriter::start(ts.store.clone(), spool.clone());
    w.submit(t, AcctOp::Record(rec(AcctKind::Start, nas.id, "S1", 0, 0)))
        .await
        .unwrap();
    assert_eq!(w.spooled(), 0);

    let super_url = ts.super_url.clone().unwrap();
    let db = url::Url::parse(&super_url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    psql(
        &super_url,
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"),
    )
    .await;
    psql(
        &super_url,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"),
    )
    .await;

    // Acknowledged while the store is down.
    let start = std::time::Instant::now();
    w.submit(
        t,
        AcctOp::Record(rec(AcctKind::Interim, nas.id, "S1", 60, 1000)),
    )
    .await
    .unwrap();
    w.submit(
        t,
        AcctOp::Record(rec(AcctKind::Stop, nas.id, "S1", 120, 2000)),
    )
    .await
    .unwrap();
    w.submit(
        t,
        AcctOp::Record(rec(AcctKind::Start, nas.id, "S2", 130, 0)),
    )
    .await
    .unwrap();
    w.submit(
        t,
        AcctOp::Record(rec(AcctKind::Interim, nas.id, "S2", 190, 77)),
    )
    .await
    .unwrap();
    // Many sessions at once: they land in every shard's spool.
    submit_all(&w, t, nas.id, "M", 40, AcctKind::Start, 0, 0).await;
    submit_all(&w, t, nas.id, "M", 40, AcctKind::Interim, 60, 500).await;
    assert!(w.spooled() >= 83, "spooled {}", w.spooled());
    assert!(spool.exists());
    assert!(start.elapsed() < Duration::from_secs(30));

    psql(
        &super_url,
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while w.spooled() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(w.spooled(), 0, "spool not replayed");
    let left = spool_files(ts.dir.path());
    assert!(left.is_empty(), "spool files left: {left:?}");
    // New records go straight to the store again.
    w.submit(
        t,
        AcctOp::Record(rec(AcctKind::Stop, nas.id, "S2", 200, 88)),
    )
    .await
    .unwrap();
    let sessions = scope.sessions(false, 100).await.unwrap();
    assert_eq!(sessions.len(), 42, "{sessions:#?}");
    for k in 0..40 {
        let m = only_session(&sessions, &format!("M{k}"), "");
        assert_eq!(m.input_octets, 500 + k);
        assert!(m.stopped_at.is_none());
    }
    let s1 = sessions.iter().find(|s| s.acct_session_id == "S1").unwrap();
    assert_eq!(s1.input_octets, 2000);
    assert!(s1.stopped_at.is_some());
    let s2 = sessions.iter().find(|s| s.acct_session_id == "S2").unwrap();
    assert_eq!(s2.input_octets, 88);
    assert!(s2.stopped_at.is_some());
    ts.store.close().await;
}

/// Records of many sessions submitted at once (they spread over the writer shards) are all
/// durable and applied in order per session; an Accounting-On after concurrently acknowledged
/// Starts closes every one of them.
#[tokio::test]
async fn concurrent_sessions_commit_in_order_per_session() {
    for ts in testing::each_backend().await {
        let (t, nas) = tenant_with_nas(&ts, "shardy").await;
        let scope = ts.store.tenant(t);
        let w = AcctWriter::start(ts.store.clone(), ts.dir.path().join("spool.jsonl"));
        let mut tasks = Vec::new();
        for k in 0..200i64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("C{k}");
                for (kind, at, octets) in [
                    (AcctKind::Start, 0, 0),
                    (AcctKind::Interim, 60, 1000 + k),
                    (AcctKind::Stop, 120, 2000 + k),
                ] {
                    w.submit(t, AcctOp::Record(rec(kind, nas, &id, at, octets)))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // Some were acknowledged from the spool while a batch was at the store.
        assert!(w.settled(Duration::from_secs(30)).await, "{}", ts.backend);
        let sessions = scope.sessions(false, 1000).await.unwrap();
        assert_eq!(sessions.len(), 200, "{}", ts.backend);
        for k in 0..200i64 {
            let id = format!("C{k}");
            let s = only_session(&sessions, &id, ts.backend);
            assert_eq!(s.input_octets, 2000 + k, "{}: {id}", ts.backend);
            assert!(s.stopped_at.is_some(), "{}: {id}", ts.backend);
        }

        submit_all(&w, t, nas, "D", 100, AcctKind::Start, 0, 0).await;
        w.submit(
            t,
            AcctOp::CloseNas {
                nas,
                at: saas_core::store::now(),
                cause: "NAS-Reboot".into(),
            },
        )
        .await
        .unwrap();
        assert!(w.settled(Duration::from_secs(30)).await, "{}", ts.backend);
        let sessions = scope.sessions(false, 1000).await.unwrap();
        let d: Vec<_> = sessions
            .iter()
            .filter(|s| s.acct_session_id.starts_with('D'))
            .collect();
        assert_eq!(d.len(), 100, "{}", ts.backend);
        for s in d {
            assert!(s.stopped_at.is_some(), "{}: {s:?}", ts.backend);
            assert_eq!(s.terminate_cause.as_deref(), Some("NAS-Reboot"));
        }
        assert_eq!(w.spooled(), 0);
        ts.store.close().await;
    }
}

/// Accounting-On while Starts of many sessions wait in the shards' spools (store down): once the
/// store is back the On is applied after all of them, so every one is closed.
#[tokio::test]
async fn close_nas_is_ordered_after_every_shard_spool() {
    let Some(ts) = testing::postgres().await else {
        return;
    };
    let (t, nas) = tenant_with_nas(&ts, "barrier").await;
    let scope = ts.store.tenant(t);
    let spool = ts.dir.path().join("spool.jsonl");
    let w = AcctWriter::start(ts.store.clone(), spool.clone());
    let super_url = ts.super_url.clone().unwrap();
    set_connections(&super_url, false).await;
    submit_all(&w, t, nas, "B", 40, AcctKind::Start, 0, 0).await;
    assert_eq!(w.spooled(), 40);
    set_connections(&super_url, true).await;
    // At once, before the shards' retry timers replay their spools.
    w.submit(
        t,
        AcctOp::CloseNas {
            nas,
            at: saas_core::store::now(),
            cause: "NAS-Reboot".into(),
        },
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while w.spooled() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.spooled(), 0, "spool not replayed");
    let sessions = scope.sessions(false, 100).await.unwrap();
    assert_eq!(sessions.len(), 40);
    for s in &sessions {
        assert!(s.stopped_at.is_some(), "left open: {s:?}");
    }
    for i in 0..writer::SHARDS {
        assert!(!writer::shard_spool_path(&spool, i).exists());
    }
    ts.store.close().await;
}

/// While a batch is at the store (held there by a lock), the records that arrive meanwhile are
/// acknowledged from the fsync'd spool instead of waiting for it; once the store takes them
/// every one is there, in order per session, and the spool files are gone.
#[tokio::test]
async fn records_behind_a_busy_store_are_acknowledged_from_the_spool() {
    let Some(ts) = testing::postgres().await else {
        return;
    };
    let (t, nas) = tenant_with_nas(&ts, "busy").await;
    let scope = ts.store.tenant(t);
    let spool = ts.dir.path().join("spool.jsonl");
    let w = AcctWriter::start(ts.store.clone(), spool.clone());
    // Sessions of every shard (40 spread over 4), opened while the store is free.
    submit_all(&w, t, nas, "H", 40, AcctKind::Start, 0, 0).await;

    let mut holder = lock_sessions(&ts).await;
    // The shard sends its next batch straight to the store, where the lock holds it (which of
    // these records it holds depends on when the journal thread takes them; the others are
    // spooled behind it).
    let held: Vec<_> = (0..40)
        .map(|k| {
            let w = w.clone();
            tokio::spawn(async move {
                w.submit(
                    t,
                    AcctOp::Record(rec(AcctKind::Interim, nas, &format!("H{k}"), 60, 1000)),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        held.iter().any(|h| !h.is_finished()),
        "the lock did not hold a batch"
    );
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        for round in 0..3 {
            let (kind, at) = [
                (AcctKind::Start, 0),
                (AcctKind::Interim, 60),
                (AcctKind::Stop, 120),
            ][round];
            submit_all(&w, t, nas, "Q", 30, kind, at, 100 * round as i64).await;
        }
    })
    .await;
    assert!(
        acked.is_ok(),
        "records behind a busy store were not acknowledged"
    );
    assert!(
        held.iter().any(|h| !h.is_finished()),
        "the lock did not hold a batch"
    );
    assert!(w.spooled() >= 90, "spooled {}", w.spooled());
    let segments = spool_files(ts.dir.path())
        .iter()
        .filter(|n| n.starts_with("spool.jsonl."))
        .count();
    assert!(segments > 0, "no spool segment written");
    // Not in the store yet: readers see them once the store takes them.
    assert!(!w.settled(Duration::from_millis(200)).await);

    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    for h in held {
        h.await.unwrap().unwrap();
    }
    assert!(
        w.settled(Duration::from_secs(30)).await,
        "spool not drained"
    );
    assert_eq!(w.spooled(), 0);
    let sessions = scope.sessions(false, 100).await.unwrap();
    assert_eq!(sessions.len(), 70, "{sessions:#?}");
    for k in 0..30 {
        let id = format!("Q{k}");
        let q = only_session(&sessions, &id, "");
        assert_eq!(q.input_octets, 200 + k, "{id}");
        assert!(q.stopped_at.is_some(), "{id}");
    }
    for s in sessions
        .iter()
        .filter(|s| s.acct_session_id.starts_with('H'))
    {
        assert_eq!(s.input_octets, 1000, "{s:?}");
    }
    let left = spool_files(ts.dir.path());
    assert!(left.is_empty(), "spool files left: {left:?}");
    // Idle again: the next record goes straight to the store, readable at once.
    w.submit(t, AcctOp::Record(rec(AcctKind::Start, nas, "Z", 0, 0)))
        .await
        .unwrap();
    assert_eq!(w.spooled(), 0);
    assert_eq!(scope.sessions(false, 100).await.unwrap().len(), 71);
    ts.store.close().await;
}

/// The next spool segment is made (zero-filled, synced) while the open one is half full, not on
/// the acknowledgement path once it is full; a segment made ahead and not needed is removed when
/// the spool drains, and one left by a crash (no entries) is removed at start.
#[tokio::test]
async fn spool_segments_are_made_ahead_and_none_is_left_behind() {
    let Some(ts) = testing::postgres().await else {
        return;
    };
    let (t, nas) = tenant_with_nas(&ts, "ahead").await;
    let spool = ts.dir.path().join("spool.jsonl");
    // A zero-filled segment as a crash right after making one ahead leaves it.
    let stale = ts.dir.path().join("spool.jsonl.9");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let w = AcctWriter::start(ts.store.clone(), spool.clone());
    w.submit(t, AcctOp::Record(rec(AcctKind::Start, nas, "first", 0, 0)))
        .await
        .unwrap();
    assert!(!stale.exists(), "an empty segment was kept at start");

    let mut holder = lock_sessions(&ts).await;
    // Held at the store: everything after it is spooled.
    let held = {
        let w = w.clone();
        tokio::spawn(async move {
            w.submit(
                t,
                AcctOp::Record(rec(AcctKind::Interim, nas, "first", 60, 5)),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let numbered = |dir: &std::path::Path| {
        let mut v: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let g = name.strip_prefix("spool.jsonl.")?.parse().ok()?;
                Some((g, e.path()))
            })
            .collect();
        v.sort();
        v
    };
    let mut sent = 0;
    let made_ahead = loop {
        submit_all(&w, t, nas, &format!("A{sent}-"), 100, AcctKind::Start, 0, 0).await;
        sent += 100;
        let files = numbered(ts.dir.path());
        if files.len() >= 2 {
            // How much of the oldest segment holds entries (the rest is still zeros).
            let used = std::fs::read(&files[0].1)
                .unwrap()
                .iter()
                .position(|b| *b == 0)
                .unwrap_or(usize::MAX);
            break used;
        }
        assert!(
            sent < 6000,
            "no second segment after {sent} spooled records"
        );
    };
    assert!(
        made_ahead < 900 * 1024,
        "the next segment appeared only once the open one was full ({made_ahead} bytes used)"
    );

    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    held.await.unwrap().unwrap();
    assert!(
        w.settled(Duration::from_secs(30)).await,
        "spool not drained"
    );
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM radius_sessions WHERE tenant_id = $1")
            .bind(t.0)
            .fetch_one(&mut holder)
            .await
            .unwrap();
    assert_eq!(
        stored,
        sent + 1,
        "every acknowledged session is stored once"
    );
    let left = spool_files(ts.dir.path());
    assert!(left.is_empty(), "spool files left: {left:?}");
    ts.store.close().await;
}

/// Under traffic the writer refreshes radius_sessions' statistics (ANALYZE through the owner's
/// function, as the application role): plans made while few sessions were open would otherwise
/// scan the tenant's whole partial index of open sessions for every batch.
#[tokio::test]
async fn the_writer_refreshes_session_statistics_under_traffic() {
    let Some(ts) = testing::postgres().await else {
        return;
    };
    let (t, nas) = tenant_with_nas(&ts, "stats").await;
    let w = AcctWriter::start(ts.store.clone(), ts.dir.path().join("spool.jsonl"));
    let mut admin = sqlx::PgConnection::connect(ts.super_url.as_deref().unwrap())
        .await
        .unwrap();
    let count = async |admin: &mut sqlx::PgConnection| -> i64 {
        sqlx::query_scalar(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'radius_sessions'",
        )
        .fetch_one(admin)
        .await
        .unwrap()
    };
    let before = count(&mut admin).await;
    for chunk in 0..5 {
        submit_all(
            &w,
            t,
            nas,
            &format!("T{chunk}-"),
            2_000,
            AcctKind::Start,
            0,
            0,
        )
        .await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut after = count(&mut admin).await;
    while after == before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = count(&mut admin).await;
    }
    assert!(
        after > before,
        "radius_sessions was not analyzed after 10,000 records"
    );
    ts.store.close().await;
}

/// Spools of an earlier layout (the unsharded writer's one file, and the four-shard writer's
/// `-2` file) are moved to the shards that own their sessions and replayed; later records of
/// those sessions land on their spooled Start (one row per session, none lost, none doubled).
#[tokio::test]
async fn earlier_layout_spools_are_rehomed_and_replayed_in_order() {
    let ts = testing::sqlite().await;
    let (t, nas) = tenant_with_nas(&ts, "legacy").await;
    let scope = ts.store.tenant(t);
    let spool = ts.dir.path().join("accounting-spool.jsonl");
    let mut lines = [String::new(), String::new()];
    for k in 0..40 {
        let start = rec(AcctKind::Start, nas, &format!("U{k}"), 0, 0);
        let l = &mut lines[k % 2];
        l.push_str(&serde_json::json!({"tenant": t, "op": {"Record": start}}).to_string());
        l.push('\n');
    }
    std::fs::write(&spool, &lines[0]).unwrap();
    std::fs::write(writer::shard_spool_path(&spool, 2), &lines[1]).unwrap();
    let w = AcctWriter::start(ts.store.clone(), spool.clone());
    submit_all(&w, t, nas, "U", 40, AcctKind::Stop, 120, 9000).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while w.spooled() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.spooled(), 0);
    assert!(w.settled(Duration::from_secs(10)).await);
    for i in 0..4 {
        assert!(
            !writer::shard_spool_path(&spool, i).exists(),
            "spool {i} left"
        );
    }
    let sessions = scope.sessions(false, 100).await.unwrap();
    assert_eq!(sessions.len(), 40, "{sessions:#?}");
    for s in &sessions {
        assert!(s.stopped_at.is_some(), "{s:?}");
        assert!(s.input_octets >= 9000, "{s:?}");
    }
}

#[test]
fn shard_spools_sit_next_to_the_first() {
    let p = std::path::Path::new("/var/lib/proxpanel/accounting-spool.jsonl");
    assert_eq!(writer::shard_spool_path(p, 0), p);
    assert_eq!(
        writer::shard_spool_path(p, 3),
        std::path::Path::new("/var/lib/proxpanel/accounting-spool-3.jsonl")
    );
}

/// A spool left by a crashed process is replayed at start, exactly once even if replayed twice.
#[tokio::test]
async fn leftover_spool_is_replayed_at_start() {
    let ts = testing::sqlite().await;
    let t = TenantId::new();
    let scope = ts.store.tenant(t);
    scope
        .insert_tenant(
            &Slug::parse("crashy").unwrap(),
            "s",
            "UTC",
            TenantLimits::default(),
            "10.200.0.0/24",
        )
        .await
        .unwrap();
    let nas = scope
        .create_nas(&NewNas {
            name: "n".into(),
            vendor: NasVendor::Generic,
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
    let spool = ts.dir.path().join("spool.jsonl");
    let start = rec(AcctKind::Start, nas.id, "L1", 0, 0);
    let line = serde_json::json!({"tenant": t, "op": {"Record": start}}).to_string();
    // The same entry twice (a replay interrupted after commit), then a torn line.
    std::fs::write(&spool, format!("{line}\n{line}\n{{\"tenant\":")).unwrap();
    let w = AcctWriter::start(ts.store.clone(), spool.clone());
    w.submit(
        t,
        AcctOp::Record(rec(AcctKind::Interim, nas.id, "L1", 60, 5)),
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while spool.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The Interim came while the spool was there: it was spooled behind it.
    assert!(w.settled(Duration::from_secs(10)).await);
    let s = scope.sessions(false, 10).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].input_octets, 5);
}

use saas_core::aaa::{AaaMetrics, Engine, EngineConfig, Request};
use saas_core::radius::{Code, PacketBuilder, dict};

/// Deterministic xorshift so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The whole engine entry point (the fuzz target `aaa_engine` runs the same inputs): the seed
/// corpus, random garbage, and correctly signed requests with random attributes, which get past
/// the authenticator checks into the policy code. Property: no panic; every reply validates.
#[tokio::test]
async fn engine_never_panics_on_hostile_input() {
    let ts = testing::sqlite().await;
    let t = TenantId::new();
    let scope = ts.store.tenant(t);
    scope
        .insert_tenant(
            &Slug::parse("fuzzy").unwrap(),
            "f",
            "UTC",
            TenantLimits::default(),
            "10.200.0.0/24",
        )
        .await
        .unwrap();
    scope.set_status(TenantStatus::Active).await.unwrap();
    let plan = scope
        .create_plan(
            &NewPlan {
                name: "p".into(),
                download_kbps: 1000,
                upload_kbps: 500,
                quota_bytes: Some(10),
                burst_download_kbps: Some(2000),
                burst_upload_kbps: Some(1000),
                ..Default::default()
            },
            true,
        )
        .await
        .unwrap();
    scope
        .create_subscriber(&NewSubscriber {
            username: "demo".into(),
            password: "demo".into(),
            plan_id: Some(plan.id),
            expires_at: None,
            static_ip: Some("10.0.0.1".into()),
            framed_ipv6_prefix: Some("2001:db8::/64".into()),
            delegated_ipv6_prefix: None,
            mac_lock: None,
            sim_use: None,
        })
        .await
        .unwrap();
    let nas = scope
        .create_nas(&NewNas {
            name: "n".into(),
            vendor: NasVendor::Mikrotik,
            ip: None,
            secret: "testing123".into(),
            message_auth: MessageAuthPolicy::Auto,
            coa_port: 3799,
            api_user: None,
            api_password: None,
            use_ssl: false,
        })
        .await
        .unwrap();
    let writer = AcctWriter::start(ts.store.clone(), ts.dir.path().join("spool.jsonl"));
    let engine = Engine::new(
        ts.store.clone(),
        writer,
        EngineConfig {
            tenant_rps: 0,
            ..Default::default()
        },
        AaaMetrics::default(),
    );
    let mut inputs: Vec<Vec<u8>> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/radius"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
    let mut rng = Rng(0xDEAD_BEEF_1234_5678);
    for i in 0..3000u32 {
        if i % 3 == 0 {
            let n = rng.below(200) as usize;
            inputs.push(rng.bytes(n));
            continue;
        }
        let code = [
            Code::AccessRequest,
            Code::AccountingRequest,
            Code::StatusServer,
        ][rng.below(3) as usize];
        let mut b =
            PacketBuilder::request(code, rng.next() as u8, rng.bytes(16).try_into().unwrap())
                .unwrap();
        for _ in 0..rng.below(8) {
            let typ = [
                dict::USER_NAME,
                dict::USER_PASSWORD,
                dict::CHAP_PASSWORD,
                dict::CHAP_CHALLENGE,
                dict::CALLING_STATION_ID,
                dict::ACCT_STATUS_TYPE,
                dict::ACCT_SESSION_ID,
                dict::ACCT_INPUT_OCTETS,
                dict::ACCT_INPUT_GIGAWORDS,
                dict::ACCT_DELAY_TIME,
                dict::FRAMED_IP_ADDRESS,
                dict::PROXY_STATE,
            ][rng.below(12) as usize];
            let len = [0usize, 1, 4, 16, 17, 32, 50, 200][rng.below(8) as usize];
            let mut v = rng.bytes(len);
            if typ == dict::USER_NAME && rng.below(2) == 0 {
                v = b"demo".to_vec();
            }
            if typ == dict::ACCT_STATUS_TYPE {
                v = (rng.below(10) as u32).to_be_bytes().to_vec();
            }
            let _ = b.attr(typ, &v);
        }
        if rng.below(3) == 0 {
            let _ = b.vsa(
                dict::VENDOR_MICROSOFT,
                dict::microsoft::CHAP_CHALLENGE,
                &rng.bytes(16),
            );
            let n = [50usize, 49, 3][rng.below(3) as usize];
            let _ = b.vsa(
                dict::VENDOR_MICROSOFT,
                dict::microsoft::CHAP2_RESPONSE,
                &rng.bytes(n),
            );
        }
        inputs.push(b.finish(b"testing123"));
    }
    let mut answered = 0;
    for data in &inputs {
        let out = engine
            .handle(Request {
                tenant: t,
                nas: nas.id,
                source: "127.0.0.1:5000".parse().unwrap(),
                datagram: data,
                now: saas_core::store::now(),
            })
            .await;
        if let Some(r) = out.reply {
            assert!(saas_core::radius::validate(&r).is_ok());
            answered += 1;
        }
    }
    assert!(
        answered > 500,
        "only {answered} answered: the generator does not reach the engine's policy code"
    );
}

async fn tenant_with_nas(ts: &testing::TestStore, slug: &str) -> (TenantId, saas_core::NasId) {
    let t = TenantId::new();
    let scope = ts.store.tenant(t);
    scope
        .insert_tenant(
            &Slug::parse(slug).unwrap(),
            slug,
            "UTC",
            TenantLimits::default(),
            "10.200.0.0/24",
        )
        .await
        .unwrap();
    scope.set_status(TenantStatus::Active).await.unwrap();
    let nas = scope
        .create_nas(&NewNas {
            name: "n".into(),
            vendor: NasVendor::Mikrotik,
            ip: None,
            secret: "s3".into(),
            message_auth: MessageAuthPolicy::Auto,
            coa_port: 3799,
            api_user: None,
            api_password: None,
            use_ssl: false,
        })
        .await
        .unwrap();
    (t, nas.id)
}

fn status_server(id: u8) -> Vec<u8> {
    let mut auth = [0u8; 16];
    auth[0] = id;
    PacketBuilder::request(Code::StatusServer, id, auth)
        .unwrap()
        .finish(b"s3")
}

/// One tenant's flood is cut at its budget and counted; another tenant is still answered.
#[tokio::test]
async fn noisy_tenant_cannot_starve_others_and_drops_are_counted() {
    let ts = testing::sqlite().await;
    let (a, nas_a) = tenant_with_nas(&ts, "noisy").await;
    let (b, nas_b) = tenant_with_nas(&ts, "quiet").await;
    let m = saas_core::metrics::Metrics::new("sqlite", "memory");
    let writer = AcctWriter::start(ts.store.clone(), ts.dir.path().join("spool.jsonl"));
    let engine = Engine::new(
        ts.store.clone(),
        writer,
        EngineConfig {
            tenant_rps: 20,
            ..Default::default()
        },
        AaaMetrics::register(&m),
    );
    let src = "127.0.0.1:5000".parse().unwrap();
    let now = saas_core::store::now();
    let mut answered_a = 0;
    for i in 0..200u8 {
        let d = status_server(i);
        if engine
            .handle(Request {
                tenant: a,
                nas: nas_a,
                source: src,
                datagram: &d,
                now,
            })
            .await
            .reply
            .is_some()
        {
            answered_a += 1;
        }
    }
    assert!(
        (20..=25).contains(&answered_a),
        "tenant A answered {answered_a} of 200 with a budget of 20/s"
    );
    for i in 0..10u8 {
        let d = status_server(i);
        assert!(
            engine
                .handle(Request {
                    tenant: b,
                    nas: nas_b,
                    source: src,
                    datagram: &d,
                    now
                })
                .await
                .reply
                .is_some(),
            "tenant B starved"
        );
    }
    // Malformed input is dropped and counted by reason.
    let out = engine
        .handle(Request {
            tenant: b,
            nas: nas_b,
            source: src,
            datagram: &[1, 2, 3],
            now,
        })
        .await;
    assert!(out.reply.is_none() && out.dropped.is_some());
    let text = m.encode();
    assert!(
        text.contains("proxpanel_radius_tenant_throttled_total{tenant=\""),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "proxpanel_radius_dropped_total{{reason=\"{}\"}}",
            out.dropped.unwrap()
        )),
        "{text}"
    );
    // A wrong secret is an authentication failure, counted too.
    let forged = PacketBuilder::request(Code::StatusServer, 9, [9; 16])
        .unwrap()
        .finish(b"not-the-secret");
    let out = engine
        .handle(Request {
            tenant: b,
            nas: nas_b,
            source: src,
            datagram: &forged,
            now,
        })
        .await;
    assert!(out.reply.is_none(), "forged Status-Server answered");
}

/// A record whose subscriber, NAS or tenant was deleted while it was in flight is acknowledged
/// without sending its shard to the spool for ever: stored without the subscriber, or dropped
/// with its NAS/tenant. Other tenants' records committed in the same combined batch are stored
/// and nothing waits in a spool.
#[tokio::test]
async fn records_of_deleted_rows_do_not_block_the_writer() {
    for ts in testing::each_backend().await {
        let (a, nas_a) = tenant_with_nas(&ts, "orphan-a").await;
        let (b, nas_b) = tenant_with_nas(&ts, "orphan-b").await;
        let w = AcctWriter::start(ts.store.clone(), ts.dir.path().join("spool.jsonl"));
        let mut tasks = Vec::new();
        for k in 0..60i64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                let mut r = rec(AcctKind::Start, nas_a, &format!("A{k}"), 0, 0);
                match k % 3 {
                    // A deleted subscriber.
                    0 => r.subscriber = Some(saas_core::SubscriberId::new()),
                    // A deleted NAS.
                    1 => r.nas = saas_core::NasId::new(),
                    _ => {}
                }
                w.submit(a, AcctOp::Record(r)).await.unwrap();
                w.submit(
                    b,
                    AcctOp::Record(rec(AcctKind::Start, nas_b, &format!("B{k}"), 0, 0)),
                )
                .await
                .unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert!(w.settled(Duration::from_secs(30)).await, "{}", ts.backend);
        assert_eq!(w.spooled(), 0, "{}", ts.backend);
        let sa = ts.store.tenant(a).sessions(false, 1000).await.unwrap();
        // Those of the deleted subscriber are stored; those of the deleted NAS are dropped where
        // the schema refers to the NAS (SQLite; PostgreSQL keeps no foreign keys on sessions,
        // see migration 0005, and stores them as they are).
        assert_eq!(
            sa.iter().filter(|s| s.nas == nas_a).count(),
            40,
            "{}",
            ts.backend
        );
        let sb = ts.store.tenant(b).sessions(false, 1000).await.unwrap();
        assert_eq!(sb.len(), 60, "{}", ts.backend);
        // The writer still commits straight to the store.
        w.submit(a, AcctOp::Record(rec(AcctKind::Stop, nas_a, "A2", 120, 5)))
            .await
            .unwrap();
        assert_eq!(w.spooled(), 0, "{}", ts.backend);
        ts.store.close().await;
    }
}

/// The spool is written and synced by a thread of the writer's own, not through the runtime's
/// blocking pool (an acknowledgement then waits for the fsync alone, not for two thread
/// hand-overs), and the thread ends with the writer.
#[tokio::test]
async fn the_spool_is_written_by_a_journal_thread_of_its_own() {
    let journal_threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|c| c.trim() == "acct-journal-0")
            .count()
    };
    let ts = testing::sqlite().await;
    let (t, nas) = tenant_with_nas(&ts, "journal").await;
    let w = AcctWriter::start(ts.store.clone(), ts.dir.path().join("spool.jsonl"));
    submit_all(&w, t, nas, "J", 3, AcctKind::Start, 0, 0).await;
    assert_eq!(journal_threads(), 1);
    drop(w);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while journal_threads() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        journal_threads(),
        0,
        "the journal thread outlived its writer"
    );
    ts.store.close().await;
}
