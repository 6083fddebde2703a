use std::sync::Arc;
use std::time::Duration;

use saas_core::aaa::ledger::{Change, Ledger, MemoryLedger, Record, RedisLedger, Seed, Usage};
use saas_core::bus::{Bus, kinds};
use saas_core::cache::{self, Cache, MemoryCache, RedisCache};
use saas_core::crypto::SecretBox;
use saas_core::ids::{NasId, TenantId};
use saas_core::store::Store;
use saas_core::testing;

async fn caches() -> Vec<Arc<dyn Cache>> {
    let mut v: Vec<Arc<dyn Cache>> = vec![Arc::new(MemoryCache::default())];
    if let Some(url) = testing::redis_url() {
        v.push(Arc::new(RedisCache::connect(&url).await.expect("redis")));
    }
    v
}

#[tokio::test]
async fn cache_get_set_expire_incr() {
    for c in caches().await {
        let k = format!("pp:test:{}", uuid::Uuid::new_v4());
        assert_eq!(c.get(&k).await.unwrap(), None, "{}", c.kind());
        c.set(&k, b"v1", Duration::from_millis(300)).await.unwrap();
        assert_eq!(c.get(&k).await.unwrap().as_deref(), Some(&b"v1"[..]));
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            c.get(&k).await.unwrap(),
            None,
            "{}: value outlived its ttl",
            c.kind()
        );
        c.set(&k, b"v2", Duration::from_secs(30)).await.unwrap();
        c.delete(&k).await.unwrap();
        assert_eq!(c.get(&k).await.unwrap(), None);
        let n = format!("{k}:n");
        assert_eq!(c.incr(&n, Duration::from_millis(300)).await.unwrap(), 1);
        assert_eq!(c.incr(&n, Duration::from_millis(300)).await.unwrap(), 2);
        assert_eq!(c.incr(&n, Duration::from_millis(300)).await.unwrap(), 3);
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            c.incr(&n, Duration::from_millis(300)).await.unwrap(),
            1,
            "{}: window did not reset",
            c.kind()
        );
    }
}

/// A lease has one holder at a time, is renewed by its holder, and frees itself when not renewed.
#[tokio::test]
async fn cache_lease_has_one_holder_until_it_expires() {
    for c in caches().await {
        let k = format!("pp:test:lease:{}", uuid::Uuid::new_v4());
        let ttl = Duration::from_millis(300);
        // Many takers at once: exactly one wins.
        let takers = (0..8).map(|i| {
            let c = c.clone();
            let k = k.clone();
            tokio::spawn(async move { c.lease(&k, &format!("node-{i}"), ttl).await.unwrap() })
        });
        let mut won = 0;
        for t in takers {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1, "{}", c.kind());
        c.delete(&k).await.unwrap();
        assert!(c.lease(&k, "a", ttl).await.unwrap());
        assert!(!c.lease(&k, "b", ttl).await.unwrap(), "{}", c.kind());
        // The holder renews it past the first ttl.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(c.lease(&k, "a", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !c.lease(&k, "b", ttl).await.unwrap(),
            "{}: renewal lost",
            c.kind()
        );
        // Not renewed: another process takes it.
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(c.lease(&k, "b", ttl).await.unwrap(), "{}", c.kind());
        assert!(!c.lease(&k, "a", ttl).await.unwrap());
    }
}

#[tokio::test]
async fn cache_connect_picks_implementation_and_redacts() {
    assert_eq!(cache::connect(None).await.unwrap().kind(), "memory");
    if let Some(url) = testing::redis_url() {
        assert_eq!(cache::connect(Some(&url)).await.unwrap().kind(), "redis");
    }
    let err = cache::connect(Some("redis://:hunter2@127.0.0.1:1/"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("127.0.0.1:1") && !err.contains("hunter2"),
        "{err}"
    );
    assert_eq!(
        cache::tenant_key(saas_core::TenantId(uuid::Uuid::nil()), "x"),
        "pp:{00000000-0000-0000-0000-000000000000}:x"
    );
}

/// Two processes sharing one store: a second `Store` + `Bus` on the same database stands for a
/// CLI command run beside `serve`.
async fn second_process(ts: &testing::TestStore) -> Store {
    Store::connect(&ts.options, SecretBox::new(ts.key.clone(), vec![]))
        .await
        .unwrap()
}

async fn bus_pair(redis: Option<&str>) -> Vec<(String, Bus, Bus)> {
    let mut out = Vec::new();
    for ts in testing::each_backend().await {
        let other = second_process(&ts).await;
        let a = Bus::start(ts.store.clone(), redis).await.unwrap();
        let b = Bus::start(other, redis).await.unwrap();
        let name = format!(
            "{}+{}",
            ts.backend,
            if redis.is_some() { "redis" } else { "poll" }
        );
        // Keep the temp dir alive for the test's duration.
        std::mem::forget(ts.dir);
        out.push((name, a, b));
    }
    out
}

async fn check_cross_process_delivery(redis: Option<&str>) {
    for (name, serve, cli) in bus_pair(redis).await {
        let mut rx = serve.subscribe();
        let t = saas_core::TenantId::new();
        cli.publish(
            Some(t),
            kinds::SUBSCRIBER_CHANGED,
            &serde_json::json!({"subscriber": "x"}),
        )
        .await
        .unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{name}: not delivered"))
            .unwrap();
        assert_eq!(ev.kind, kinds::SUBSCRIBER_CHANGED);
        assert_eq!(ev.tenant_id, Some(t));
        // Request/result with a correlation id, answered by the other process.
        let mut req_rx = serve.subscribe();
        let responder = serve.clone();
        let answer = tokio::spawn(async move {
            loop {
                let ev = req_rx.recv().await.unwrap();
                if ev.kind == kinds::COA_REQUEST {
                    responder
                        .respond(&ev, kinds::COA_RESULT, &serde_json::json!({"ok": true}))
                        .await
                        .unwrap();
                    return;
                }
            }
        });
        let res = cli
            .request(
                Some(t),
                kinds::COA_REQUEST,
                &serde_json::json!({"session": 1}),
                kinds::COA_RESULT,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(res.payload, "{\"ok\":true}", "{name}");
        answer.await.unwrap();
        // Nobody answers → a timeout that says what to check.
        let err = cli
            .request(
                None,
                "nas.check",
                &serde_json::json!({}),
                "nas.check.result",
                Duration::from_millis(300),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("serve"), "{err}");
        serve.shutdown();
        cli.shutdown();
    }
}

#[tokio::test]
async fn bus_reaches_another_process_by_polling() {
    check_cross_process_delivery(None).await;
}

#[tokio::test]
async fn bus_reaches_another_process_with_redis_wakeup() {
    let Some(url) = testing::redis_url() else {
        return;
    };
    check_cross_process_delivery(Some(&url)).await;
}

#[tokio::test]
async fn bus_delivers_in_order_and_prunes() {
    let ts = testing::sqlite().await;
    let bus = Bus::start(ts.store.clone(), None).await.unwrap();
    let mut rx = bus.subscribe();
    for i in 0..20 {
        bus.publish(None, kinds::DNS_CHANGED, &i).await.unwrap();
    }
    for i in 0..20 {
        let ev = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev.payload, i.to_string());
    }
    assert_eq!(bus.prune(Duration::ZERO).await.unwrap(), 20);
}

async fn ledgers() -> Vec<Arc<dyn Ledger>> {
    let mut v: Vec<Arc<dyn Ledger>> = vec![Arc::new(MemoryLedger::default())];
    if let Some(url) = testing::redis_url() {
        let c = RedisCache::connect(&url).await.unwrap();
        v.push(Arc::new(RedisLedger::new(c.redis().unwrap())));
    }
    v
}

/// The in-process and the Redis ledger follow the same rules: absolute counters counted once,
/// retransmits harmless, unseeded entries ignored, tenants apart.
#[tokio::test]
async fn session_ledger_same_rules_on_every_backend() {
    for l in ledgers().await {
        let (a, b) = (TenantId::new(), TenantId::new());
        let nas = NasId::new();
        let u = "alice";
        let rec = |id: &'static str, change, input, output| Record {
            username: u,
            nas,
            acct_session_id: id,
            change,
            input,
            output,
        };
        // Not seeded: reads None, changes are ignored (the store has them).
        assert_eq!(l.get(a, u).await.unwrap(), None, "{l:?}");
        l.apply(a, &rec("s0", Change::Start, 0, 0)).await.unwrap();
        assert_eq!(l.get(a, u).await.unwrap(), None, "{l:?}");

        let seed = Seed {
            open: vec![(nas, "s0".into(), 10, 20)],
            closed: (1000, 2000),
        };
        l.seed(a, u, &seed).await.unwrap();
        // A second seed does not overwrite a live entry.
        l.seed(a, u, &Seed::default()).await.unwrap();
        let want = |open, input, output| Usage {
            open,
            input,
            output,
        };
        assert_eq!(
            l.get(a, u).await.unwrap(),
            Some(want(1, 1010, 2020)),
            "{l:?}"
        );

        l.apply(a, &rec("s1", Change::Start, 0, 0)).await.unwrap();
        l.apply(a, &rec("s1", Change::Start, 0, 0)).await.unwrap();
        assert_eq!(
            l.get(a, u).await.unwrap(),
            Some(want(2, 1010, 2020)),
            "{l:?}"
        );
        l.apply(a, &rec("s1", Change::Interim, 5_000_000_000, 7))
            .await
            .unwrap();
        l.apply(a, &rec("s1", Change::Interim, 4, 4)).await.unwrap(); // late and lower
        assert_eq!(
            l.get(a, u).await.unwrap(),
            Some(want(2, 5_000_001_010, 2027)),
            "{l:?}"
        );
        l.apply(a, &rec("s1", Change::Stop, 5_000_000_100, 9))
            .await
            .unwrap();
        l.apply(a, &rec("s1", Change::Stop, 5_000_000_100, 9))
            .await
            .unwrap();
        assert_eq!(
            l.get(a, u).await.unwrap(),
            Some(want(1, 5_000_001_110, 2029)),
            "{l:?}"
        );
        // The other tenant's alice is another subscriber.
        assert_eq!(l.get(b, u).await.unwrap(), None, "{l:?}");
        l.seed(b, u, &Seed::default()).await.unwrap();
        l.apply(b, &rec("s1", Change::Start, 0, 0)).await.unwrap();
        assert_eq!(l.get(b, u).await.unwrap(), Some(want(1, 0, 0)), "{l:?}");
        assert_eq!(l.get(a, u).await.unwrap().unwrap().open, 1, "{l:?}");
        // Forgetting one tenant leaves the other.
        l.forget(a, None).await.unwrap();
        assert_eq!(l.get(a, u).await.unwrap(), None, "{l:?}");
        assert!(l.get(b, u).await.unwrap().is_some(), "{l:?}");
        l.forget(b, Some(u)).await.unwrap();
        assert_eq!(l.get(b, u).await.unwrap(), None, "{l:?}");
    }
}
