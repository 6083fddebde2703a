//! The RouterOS API client against the simulator (both over real TCP sockets): every command,
//! both login styles, concurrent tagged commands, faults, API-SSL pinning, the plain-API rule
//! for direct NAS, tenant isolation of pins; and the simulator checked by librouteros.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use saas_core::ids::{NasId, PlanId, SessionId};
use saas_core::model::*;
use saas_core::routeros::sim::{Fault, SimConfig, Simulator};
use saas_core::routeros::{self, Client, RosError};
use saas_core::testing::{self, TestStore};
use saas_core::transport::{DirectTransport, NasStream, NasTransport, TransportError};
use saas_core::{Slug, TenantId, TenantScope};

const T: Duration = Duration::from_secs(5);

async fn sim(config: SimConfig) -> Simulator {
    saas_core::tls::install_crypto_provider();
    Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

fn cfg(tls: bool, legacy: bool) -> SimConfig {
    SimConfig {
        user: "api".into(),
        password: "s3cret pass".into(),
        tls,
        legacy_login: legacy,
        identity: "core-1".into(),
        version: "7.16.2 (stable)".into(),
    }
}

async fn login(s: &Simulator, password: &str) -> Result<Client, RosError> {
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    Client::login(tcp, "api", password, T).await
}

#[tokio::test]
async fn every_command_against_the_simulator_with_both_login_styles() {
    for legacy in [false, true] {
        let s = sim(cfg(false, legacy)).await;
        let alice = s.add_session("alice", "100.64.0.7", (1000, 2000), (0, 0));
        s.add_session("bob", "100.64.0.8", (0, 0), (1_000_000, 1_000_000));
        let c = login(&s, "s3cret pass").await.unwrap();
        assert_eq!(s.logins(), 1);
        assert_eq!(c.identity().await.unwrap(), "core-1");
        let r = c.resource().await.unwrap();
        assert_eq!(r.version, "7.16.2 (stable)");
        assert_eq!(r.board_name, "CHR");
        assert_eq!(r.cpu_load, Some(3));
        assert!(!r.uptime.is_empty());

        let active = c.ppp_active().await.unwrap();
        assert_eq!(active.len(), 2);
        assert_eq!(active[0].id, alice);
        assert_eq!(active[0].name, "alice");
        assert_eq!(active[0].address, "100.64.0.7");
        assert_eq!(active[0].service, "pppoe");
        assert!(active[0].session_id.is_some());

        let q = c.simple_queues().await.unwrap();
        let qa = q.iter().find(|q| q.ppp_user() == Some("alice")).unwrap();
        assert_eq!((qa.upload_bytes, qa.download_bytes), (1000, 2000));
        assert_eq!(qa.target, "100.64.0.7/32");
        let ifs = c.interfaces().await.unwrap();
        let ia = ifs.iter().find(|i| i.ppp_user() == Some("alice")).unwrap();
        assert_eq!(
            (ia.rx_bytes, ia.tx_bytes, ia.kind.as_str()),
            (1000, 2000, "pppoe-in")
        );
        // Counters grow.
        let b1 = ifs
            .iter()
            .find(|i| i.ppp_user() == Some("bob"))
            .unwrap()
            .rx_bytes;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ifs = c.interfaces().await.unwrap();
        let b2 = ifs
            .iter()
            .find(|i| i.ppp_user() == Some("bob"))
            .unwrap()
            .rx_bytes;
        assert!(b2 > b1, "{b1} -> {b2}");

        let id = c
            .address_list_add("proxpanel-fup", "100.64.0.7", "alice over quota")
            .await
            .unwrap();
        assert!(id.starts_with('*'), "{id}");
        assert_eq!(
            s.address_list(),
            [("proxpanel-fup".to_owned(), "100.64.0.7".to_owned())]
        );
        // A duplicate is a trap with the router's message.
        let e = c
            .address_list_add("proxpanel-fup", "100.64.0.7", "")
            .await
            .unwrap_err();
        assert!(
            matches!(e, RosError::Trap { ref message, .. } if message.contains("already")),
            "{e}"
        );
        assert_eq!(
            c.address_list_remove("proxpanel-fup", "100.64.0.7")
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            c.address_list_remove("proxpanel-fup", "100.64.0.7")
                .await
                .unwrap(),
            0
        );
        assert!(s.address_list().is_empty());

        c.ppp_active_remove(&alice).await.unwrap();
        assert_eq!(s.session_names(), ["bob"]);
        let e = c.ppp_active_remove(&alice).await.unwrap_err();
        assert!(matches!(e, RosError::Trap { .. }), "{e}");
        // The connection is still usable after a trap.
        assert_eq!(c.identity().await.unwrap(), "core-1");

        // Wrong password: a login error that says what to check.
        let e = login(&s, "wrong").await.unwrap_err();
        assert!(
            matches!(e, RosError::LoginFailed(_)),
            "legacy={legacy}: {e}"
        );
        assert!(e.to_string().contains("API user and password"), "{e}");
    }
}

#[tokio::test]
async fn tagged_commands_run_concurrently_on_one_connection() {
    let s = sim(cfg(false, false)).await;
    for n in 0..20 {
        s.add_session(&format!("u{n}"), &format!("100.64.1.{n}"), (n, n), (0, 0));
    }
    let c = std::sync::Arc::new(login(&s, "s3cret pass").await.unwrap());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..32 {
        let c = c.clone();
        set.spawn(async move {
            if i % 2 == 0 {
                c.identity().await.map(|id| id.len())
            } else {
                c.ppp_active().await.map(|v| v.len())
            }
        });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        let len = r.unwrap().unwrap();
        assert!(len == 6 || len == 20, "{len}");
        n += 1;
    }
    assert_eq!(n, 32);
    assert_eq!(s.logins(), 1, "one connection");
}

#[tokio::test]
async fn faults_become_clear_errors() {
    let s = sim(cfg(false, false)).await;
    let c = login(&s, "s3cret pass").await.unwrap();
    s.set_fault(Some(Fault::Trap("simulated failure".into())));
    let e = c.identity().await.unwrap_err();
    assert!(
        matches!(e, RosError::Trap { ref message, .. } if message == "simulated failure"),
        "{e}"
    );

    s.set_fault(Some(Fault::Stall));
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let c = Client::login(tcp, "api", "s3cret pass", Duration::from_millis(300))
        .await
        .unwrap();
    let e = c.identity().await.unwrap_err();
    assert!(matches!(e, RosError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("/system/identity/print"), "{e}");
    // The timed-out command is cancelled on the router (`/cancel =tag=…`), not left running.
    let started = std::time::Instant::now();
    while s.commands().last().map(String::as_str) != Some("/cancel") {
        assert!(started.elapsed() < T, "no /cancel: {:?}", s.commands());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    s.set_fault(Some(Fault::Drop));
    let c = login(&s, "s3cret pass").await.unwrap();
    let e = c.identity().await.unwrap_err();
    assert!(matches!(e, RosError::Closed(_)), "{e}");
    // Every later command on the dead connection fails at once, not after the timeout.
    let started = std::time::Instant::now();
    assert!(matches!(c.identity().await, Err(RosError::Closed(_))));
    assert!(started.elapsed() < Duration::from_secs(1));

    // `/quit` ends the session with `!fatal`.
    s.set_fault(None);
    let c = login(&s, "s3cret pass").await.unwrap();
    let e = c
        .run(routeros::wire::Command::new("/quit"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RosError::Fatal(ref m) if m.contains("terminated")),
        "{e}"
    );
}

async fn tenant(ts: &TestStore, slug: &str) -> TenantScope {
    let id = TenantId::new();
    let scope = ts.store.tenant(id);
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
    scope
}

fn nas(name: &str, ip: Option<&str>, tls: bool) -> NewNas {
    NewNas {
        name: name.into(),
        vendor: NasVendor::Mikrotik,
        ip: ip.map(|s| s.parse::<IpAddr>().unwrap()),
        secret: "radius-secret".into(),
        message_auth: MessageAuthPolicy::Auto,
        coa_port: 3799,
        api_user: Some("api".into()),
        api_password: Some("s3cret pass".into()),
        use_ssl: tls,
    }
}

/// Stands in for the relay: every "tunnel" stream goes to one listening address and every
/// datagram to another (real sockets).
#[derive(Debug)]
struct TunnelTo(SocketAddr, Option<SocketAddr>);

#[async_trait]
impl NasTransport for TunnelTo {
    async fn udp_exchange(
        &self,
        _: TenantId,
        _: &Nas,
        _: u16,
        request: &[u8],
        t: Duration,
        accept: &(dyn for<'b> Fn(&'b [u8]) -> bool + Send + Sync),
    ) -> Result<Vec<u8>, TransportError> {
        let Some(to) = self.1 else {
            return Err(TransportError::Timeout(t));
        };
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        sock.send_to(request, to).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, _) = tokio::time::timeout(t, sock.recv_from(&mut buf))
                .await
                .map_err(|_| TransportError::Timeout(t))??;
            if accept(&buf[..n]) {
                return Ok(buf[..n].to_vec());
            }
        }
    }

    async fn tcp_connect(
        &self,
        _: TenantId,
        _: &Nas,
        _: u16,
        _: Duration,
    ) -> Result<NasStream, TransportError> {
        Ok(Box::new(tokio::net::TcpStream::connect(self.0).await?))
    }
}

#[tokio::test]
async fn api_ssl_pins_on_first_use_and_refuses_a_changed_certificate() {
    for ts in testing::each_backend().await {
        let scope = tenant(&ts, "acme").await;
        let s1 = sim(cfg(true, false)).await;
        let n = scope
            .create_nas(&nas("core", Some("127.0.0.1"), true))
            .await
            .unwrap();
        assert!(
            scope
                .set_nas_api_endpoint(n.id, s1.addr().port(), true)
                .await
                .unwrap()
        );
        let n = scope.nas(n.id).await.unwrap().unwrap();
        assert_eq!(scope.nas_api_pin(n.id).await.unwrap(), None);

        let r = routeros::check_nas(&DirectTransport, &scope, &n, T)
            .await
            .unwrap();
        assert_eq!(r.identity, "core-1");
        assert_eq!(r.resource.version, "7.16.2 (stable)");
        assert!(r.connected.tls && r.connected.pinned_now);
        let fp1 = s1.fingerprint().unwrap().to_owned();
        assert_eq!(r.connected.fingerprint.as_deref(), Some(fp1.as_str()));
        assert_eq!(
            scope.nas_api_pin(n.id).await.unwrap().as_deref(),
            Some(fp1.as_str())
        );
        // Second connection: same certificate, nothing new pinned.
        let r = routeros::check_nas(&DirectTransport, &scope, &n, T)
            .await
            .unwrap();
        assert!(!r.connected.pinned_now);

        // The router now shows another certificate (a new simulator on a new port).
        let s2 = sim(cfg(true, false)).await;
        scope
            .set_nas_api_endpoint(n.id, s2.addr().port(), true)
            .await
            .unwrap();
        let n = scope.nas(n.id).await.unwrap().unwrap();
        let e = routeros::check_nas(&DirectTransport, &scope, &n, T)
            .await
            .unwrap_err();
        match &e {
            RosError::CertificateChanged { pinned, presented } => {
                assert_eq!(pinned, &fp1);
                assert_eq!(presented, s2.fingerprint().unwrap());
            }
            e => panic!("{}: {e}", ts.backend),
        }
        assert!(e.to_string().contains("proxpanel nas pin"), "{e}");
        assert_eq!(
            s2.logins(),
            0,
            "no password sent to an unpinned certificate"
        );
        // An admin re-pins (here: clears, so the next connection pins).
        scope.repin_nas_api(n.id, None).await.unwrap();
        let r = routeros::check_nas(&DirectTransport, &scope, &n, T)
            .await
            .unwrap();
        assert!(r.connected.pinned_now);
        assert_eq!(
            scope.nas_api_pin(n.id).await.unwrap().as_deref(),
            s2.fingerprint()
        );

        // Pins are per tenant: another tenant's NAS does not see this one's pin.
        let other = tenant(&ts, "beta").await;
        assert_eq!(other.nas_api_pin(n.id).await.unwrap(), None);
        assert!(!other.repin_nas_api(n.id, Some("00")).await.unwrap());
        assert_eq!(
            scope.nas_api_pin(n.id).await.unwrap().as_deref(),
            s2.fingerprint()
        );
    }
}

#[tokio::test]
async fn plain_api_only_inside_the_tunnel() {
    let ts = testing::sqlite().await;
    let scope = tenant(&ts, "acme").await;
    let s = sim(cfg(false, false)).await;
    let direct = scope
        .create_nas(&nas("edge", Some("127.0.0.1"), false))
        .await
        .unwrap();
    scope
        .set_nas_api_endpoint(direct.id, s.addr().port(), false)
        .await
        .unwrap();
    let direct = scope.nas(direct.id).await.unwrap().unwrap();
    let e = routeros::check_nas(&DirectTransport, &scope, &direct, T)
        .await
        .unwrap_err();
    assert!(matches!(e, RosError::PlainRefused(_)), "{e}");
    assert!(e.to_string().contains("--api-tls"), "{e}");
    assert_eq!(s.logins(), 0, "the password never left");

    // The same router through the tunnel: plain API is fine.
    let tunnel = scope.create_nas(&nas("core", None, false)).await.unwrap();
    let r = routeros::check_nas(&TunnelTo(s.addr(), None), &scope, &tunnel, T)
        .await
        .unwrap();
    assert_eq!(r.identity, "core-1");
    assert!(!r.connected.tls);
    assert_eq!(r.connected.port, 8728);

    // No credentials: a clear error before connecting.
    let mut bare = nas("bare", None, false);
    bare.api_user = None;
    bare.api_password = None;
    let bare = scope.create_nas(&bare).await.unwrap();
    let e = routeros::check_nas(&TunnelTo(s.addr(), None), &scope, &bare, T)
        .await
        .unwrap_err();
    assert!(matches!(e, RosError::NoCredentials(_)), "{e}");
}

/// The simulator's wire format as an independent implementation sees it: librouteros (PyPI)
/// logs in with both styles, over plain and TLS, and runs prints, add/remove and a trap.
#[tokio::test]
async fn simulator_speaks_what_librouteros_expects() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import librouteros"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "librouteros missing under CI (infra/test.sh installs it)"
        );
        eprintln!("SKIPPED: python3 -m pip install librouteros");
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../infra/e2e/routeros_librouteros.py");
    for (tls, legacy) in [(false, false), (false, true), (true, false)] {
        let s = sim(cfg(tls, legacy)).await;
        s.add_session("alice", "100.64.0.7", (1000, 2000), (0, 0));
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(&script)
            .args(["--port", &s.addr().port().to_string()])
            .args(["--user", "api", "--password", "s3cret pass"]);
        if tls {
            cmd.arg("--tls");
        }
        if legacy {
            cmd.arg("--legacy-login");
        }
        let o = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            o.status.success(),
            "tls={tls} legacy={legacy}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            s.session_names(),
            Vec::<String>::new(),
            "librouteros kicked alice"
        );
        assert!(s.address_list().is_empty());
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !f() {
        assert!(started.elapsed() < Duration::from_secs(10), "never {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn supervisor(
    ts: &TestStore,
    bus: &saas_core::bus::Bus,
    s: &Simulator,
    quota_default: Option<Duration>,
) -> std::sync::Arc<saas_core::routeros::workers::Supervisor> {
    supervisor_with(
        ts,
        bus,
        std::sync::Arc::new(saas_core::cache::MemoryCache::default()),
        s,
        quota_default,
        saas_core::routeros::workers::WorkerMetrics::default(),
    )
}

fn supervisor_with(
    ts: &TestStore,
    bus: &saas_core::bus::Bus,
    cache: std::sync::Arc<dyn saas_core::cache::Cache>,
    s: &Simulator,
    quota_default: Option<Duration>,
    metrics: saas_core::routeros::workers::WorkerMetrics,
) -> std::sync::Arc<saas_core::routeros::workers::Supervisor> {
    use saas_core::routeros::health::HealthConfig;
    use saas_core::routeros::workers::{Supervisor, WorkerConfig};
    Supervisor::new(
        ts.store.clone(),
        bus.clone(),
        cache,
        std::sync::Arc::new(TunnelTo(s.addr(), None)),
        std::sync::Arc::new(|_: &Nas| true),
        WorkerConfig {
            health: HealthConfig {
                interval: Duration::from_millis(150),
                failures_to_offline: 3,
                timeout: Duration::from_millis(300),
            },
            quota_default,
            quota_timeout: Duration::from_millis(500),
            concurrency: 4,
            per_tenant: 2,
            // Only events start and stop workers within a test's time.
            rescan: Duration::from_secs(3600),
        },
        metrics,
    )
}

/// What `platform` publishes on suspend/resume/settings changes.
async fn tenant_changed(bus: &saas_core::bus::Bus, scope: &TenantScope) {
    bus.publish(
        Some(scope.tenant_id()),
        saas_core::bus::kinds::TENANT_CHANGED,
        &serde_json::json!({}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn health_poller_goes_offline_after_three_failures_and_back_online() {
    use saas_core::bus::{Bus, kinds};
    let ts = testing::sqlite().await;
    let scope = tenant(&ts, "acme").await;
    let s = sim(cfg(false, false)).await;
    let n = scope.create_nas(&nas("core", None, false)).await.unwrap();
    let bus = Bus::start(ts.store.clone(), None).await.unwrap();
    let mut events = bus.subscribe();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let sup = supervisor(&ts, &bus, &s, None);
    let poller = tokio::spawn(sup.clone().run(stop));
    let state = || async { scope.nas(n.id).await.unwrap().unwrap() };
    wait_state(&scope, n.id, ApiState::Online).await;
    assert_eq!(state().await.api_last_error, None);
    assert_eq!(
        sup.running(),
        [(scope.tenant_id(), None)],
        "health only, no QuotaSync"
    );

    // The router stops answering: offline only after three failed polls, with the last error.
    s.set_fault(Some(Fault::Stall));
    let (off, took) = wait_state(&scope, n.id, ApiState::Offline).await;
    assert!(
        took >= Duration::from_millis(300),
        "offline after one or two failures ({took:?})"
    );
    let err = off.api_last_error.unwrap();
    assert!(err.contains("no answer"), "{err}");
    // And back on the next success.
    s.set_fault(None);
    wait_state(&scope, n.id, ApiState::Online).await;
    assert_eq!(state().await.api_last_error, None);

    // A suspended tenant's worker stops: its NAS keeps its state even while the router fails.
    scope.set_status(TenantStatus::Suspended).await.unwrap();
    tenant_changed(&bus, &scope).await;
    wait_for("worker stopped", || sup.running().is_empty()).await;
    s.set_fault(Some(Fault::Trap("down".into())));
    let before = s.commands().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(s.commands().len(), before, "polled while suspended");
    assert_eq!(state().await.api_state, ApiState::Online);

    stop_tx.send(true).unwrap();
    poller.await.unwrap();
    // nas.state events: online, offline, online.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen.len() < 3 {
        let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, events.recv()).await else {
            break;
        };
        if ev.kind == kinds::NAS_STATE {
            let v: serde_json::Value = serde_json::from_str(&ev.payload).unwrap();
            assert_eq!(v["nas"], n.id.to_string());
            seen.push(v["api_state"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, ["online", "offline", "online"]);
}

/// Two processes that both reach a NAS (a direct NAS): one polls it, holding a lease in the
/// shared cache; when that process stops, the other takes over once the lease lapses.
#[tokio::test]
async fn one_process_polls_a_nas_that_several_reach() {
    use saas_core::bus::Bus;
    use saas_core::routeros::workers::{PollLabels, WorkerMetrics};
    let ts = testing::sqlite().await;
    let scope = tenant(&ts, "acme").await;
    let s = sim(cfg(false, false)).await;
    scope.create_nas(&nas("core", None, false)).await.unwrap();
    let bus = Bus::start(ts.store.clone(), None).await.unwrap();
    let cache: std::sync::Arc<dyn saas_core::cache::Cache> =
        std::sync::Arc::new(saas_core::cache::MemoryCache::default());
    let polls = |m: &WorkerMetrics| {
        m.polls
            .get_or_create(&PollLabels {
                kind: "health",
                outcome: "ok",
            })
            .get()
    };
    let (ma, mb) = (WorkerMetrics::default(), WorkerMetrics::default());
    let a = supervisor_with(&ts, &bus, cache.clone(), &s, None, ma.clone());
    let (stop_a_tx, stop_a) = tokio::sync::watch::channel(false);
    let run_a = tokio::spawn(a.clone().run(stop_a));
    wait_for("a polls", || polls(&ma) > 0).await;
    let b = supervisor_with(&ts, &bus, cache.clone(), &s, None, mb.clone());
    let (stop_b_tx, stop_b) = tokio::sync::watch::channel(false);
    let run_b = tokio::spawn(b.clone().run(stop_b));
    wait_for("b's worker", || b.running().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(polls(&ma) >= 4, "a kept polling: {}", polls(&ma));
    assert_eq!(polls(&mb), 0, "b polled a NAS a holds");

    // a stops: b takes over within the lease (3 × 150 ms) and a poll interval.
    stop_a_tx.send(true).unwrap();
    run_a.await.unwrap();
    wait_for("b takes over", || polls(&mb) > 0).await;
    stop_b_tx.send(true).unwrap();
    run_b.await.unwrap();
}

/// Each active tenant gets its own worker with its own QuotaSync interval; suspending stops it,
/// resuming starts it again, changing the interval restarts it; a worker runs QuotaSync.
#[tokio::test]
async fn tenant_workers_follow_status_and_their_own_quota_interval() {
    use saas_core::bus::Bus;
    for ts in testing::each_backend().await {
        let a = tenant(&ts, "alpha").await;
        let b = tenant(&ts, "bravo").await;
        let s = sim(cfg(false, false)).await;
        let bus = Bus::start(ts.store.clone(), None).await.unwrap();
        let default = Duration::from_millis(300);
        b.set_quota_sync(Some(600)).await.unwrap();
        assert!(
            b.set_quota_sync(Some(5)).await.is_err(),
            "below the minimum"
        );
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let sup = supervisor(&ts, &bus, &s, Some(default));
        let run = tokio::spawn(sup.clone().run(stop));
        let mut want = vec![
            (a.tenant_id(), Some(default)),
            (b.tenant_id(), Some(Duration::from_secs(600))),
        ];
        want.sort_by_key(|(t, _)| t.0);
        wait_for("both workers", || sup.running() == want).await;

        // QuotaSync through alpha's worker raises the session's counters from the router.
        let sub = subscriber(&a, "alice", None).await;
        let n = a.create_nas(&nas("core", None, false)).await.unwrap();
        a.record_accounting(&[acct(AcctKind::Start, n.id, &sub, "s1", (0, 0))])
            .await
            .unwrap();
        s.add_session("alice", "100.64.0.7", (0, 0), (0, 0));
        s.set_bytes("alice", 700, 900);
        let started = std::time::Instant::now();
        while a.usage_since("alice", None).await.unwrap() != (700, 900) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "QuotaSync never ran"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Suspend alpha: only bravo keeps a worker; resume: alpha's comes back.
        a.set_status(TenantStatus::Suspended).await.unwrap();
        tenant_changed(&bus, &a).await;
        let only_b = vec![(b.tenant_id(), Some(Duration::from_secs(600)))];
        wait_for("alpha stopped", || sup.running() == only_b).await;
        a.set_status(TenantStatus::Active).await.unwrap();
        tenant_changed(&bus, &a).await;
        wait_for("alpha resumed", || sup.running().len() == 2).await;

        // bravo back to the platform default: its worker restarts with it.
        b.set_quota_sync(None).await.unwrap();
        tenant_changed(&bus, &b).await;
        wait_for("bravo on the default", || {
            sup.running().iter().all(|(_, q)| *q == Some(default))
        })
        .await;

        stop_tx.send(true).unwrap();
        run.await.unwrap();
        assert!(sup.running().is_empty());
    }
}

fn acct(kind: AcctKind, nas: NasId, sub: &Subscriber, session: &str, io: (i64, i64)) -> AcctRecord {
    AcctRecord {
        id: SessionId::new(),
        kind,
        nas,
        subscriber: Some(sub.id),
        username: sub.username.clone(),
        acct_session_id: session.into(),
        framed_ip: Some("100.64.0.7".into()),
        calling_station_id: None,
        nas_port_id: None,
        session_time_s: 0,
        input_octets: io.0,
        output_octets: io.1,
        terminate_cause: None,
        at: saas_core::store::now(),
    }
}

/// QuotaSync stores the router's reading as the session's absolute counters when higher,
/// never as an increment: interleaved with accounting (lower and higher Interims, a Stop) the
/// usage is always the highest reading, and crossing the plan quota sends the FUP CoA once.
#[tokio::test]
async fn quota_sync_raises_counters_never_double_counts_and_sends_the_fup_coa() {
    use saas_core::radius::{Code, PacketBuilder, dict};
    use saas_core::routeros::quota;
    for ts in testing::each_backend().await {
        let scope = tenant(&ts, "acme").await;
        let plan = scope
            .create_plan(
                &NewPlan {
                    name: "10G".into(),
                    download_kbps: 10240,
                    upload_kbps: 2048,
                    quota_bytes: Some(10_000),
                    fup_download_kbps: Some(512),
                    fup_upload_kbps: Some(256),
                    ..NewPlan::default()
                },
                false,
            )
            .await
            .unwrap();
        let sub = subscriber(&scope, "alice", Some(plan.id)).await;
        let s = sim(cfg(false, false)).await;
        s.add_session("alice", "100.64.0.7", (0, 0), (0, 0));
        // A CoA listener that ACKs and remembers the rate it was asked for.
        let (coa_addr, mut rates, responder) = nas_coa(|req| {
            assert_eq!(req.code(), Code::CoARequest);
            let rate = req
                .vsa(dict::VENDOR_MIKROTIK, dict::mikrotik::RATE_LIMIT)
                .map(|r| String::from_utf8_lossy(r).into_owned());
            (rate, PacketBuilder::reply(req, Code::CoAACK).unwrap())
        })
        .await;
        let (transport, coa) = coa_client(&s, coa_addr);
        let nas = scope.create_nas(&nas("core", None, false)).await.unwrap();
        let usage = || async { scope.usage_since("alice", None).await.unwrap() };

        scope
            .record_accounting(&[acct(AcctKind::Start, nas.id, &sub, "s1", (0, 0))])
            .await
            .unwrap();
        scope
            .record_accounting(&[acct(AcctKind::Interim, nas.id, &sub, "s1", (1000, 2000))])
            .await
            .unwrap();
        assert_eq!(usage().await, (1000, 2000));

        // The router is ahead of RADIUS: its reading becomes the session's counters.
        s.set_bytes("alice", 1500, 2500);
        let r = quota::sync_nas(&transport, &scope, &nas, &coa, T)
            .await
            .unwrap();
        assert_eq!((r.sessions, r.raised, r.missing), (1, 1, 0), "{r:?}");
        assert_eq!(r.raised_users, ["alice"], "the ledger of whom to re-seed");
        assert_eq!(usage().await, (1500, 2500), "{}", ts.backend);
        // Syncing again with the same reading changes nothing (not an increment).
        let r = quota::sync_nas(&transport, &scope, &nas, &coa, T)
            .await
            .unwrap();
        assert_eq!(r.raised, 0);
        assert_eq!(usage().await, (1500, 2500));
        // A late Interim with lower counters does not lower them; a higher one wins.
        scope
            .record_accounting(&[acct(AcctKind::Interim, nas.id, &sub, "s1", (1400, 2400))])
            .await
            .unwrap();
        assert_eq!(usage().await, (1500, 2500));
        scope
            .record_accounting(&[acct(AcctKind::Interim, nas.id, &sub, "s1", (3000, 4000))])
            .await
            .unwrap();
        assert_eq!(usage().await, (3000, 4000));
        // The router reads lower than RADIUS now: nothing changes.
        let r = quota::sync_nas(&transport, &scope, &nas, &coa, T)
            .await
            .unwrap();
        assert_eq!(r.raised, 0);
        assert!(rates.try_recv().is_err(), "no CoA below the quota");

        // Crossing the 10,000-byte quota through the router's reading: one FUP CoA.
        s.set_bytes("alice", 4000, 6500);
        let r = quota::sync_nas(&transport, &scope, &nas, &coa, T)
            .await
            .unwrap();
        assert_eq!(usage().await, (4000, 6500));
        assert_eq!(r.crossed.len(), 1, "{r:?}");
        assert_eq!(r.crossed[0].1, "fup");
        assert_eq!(r.crossed[0].2.outcome, "ack", "{r:?}");
        let rate = tokio::time::timeout(T, rates.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            rate.as_deref(),
            Some(saas_core::aaa::mikrotik_rate(&plan, true).as_str())
        );
        // Already over the quota: more traffic sends no second CoA.
        s.set_bytes("alice", 5000, 7000);
        let r = quota::sync_nas(&transport, &scope, &nas, &coa, T)
            .await
            .unwrap();
        assert_eq!((r.raised, r.crossed.len()), (1, 0));
        // The Stop carries RADIUS's own final totals (lower than the router's last reading):
        // the session keeps the higher, and usage is one session's worth, not a sum.
        scope
            .record_accounting(&[acct(AcctKind::Stop, nas.id, &sub, "s1", (4900, 6900))])
            .await
            .unwrap();
        assert_eq!(usage().await, (5000, 7000));
        assert_eq!(scope.sessions(true, 10).await.unwrap().len(), 0);
        // A closed session is never raised again.
        s.set_bytes("alice", 9000, 9000);
        let r = quota::sync_nas(&transport, &scope, &nas, &coa, T)
            .await
            .unwrap();
        assert_eq!(r.sessions, 0);
        assert_eq!(usage().await, (5000, 7000));
        responder.abort();

        // Another tenant's sync never touches this tenant's sessions.
        let other = tenant(&ts, "beta").await;
        assert!(
            !other
                .raise_session_counters(nas.id, "s1", 1 << 40, 1 << 40)
                .await
                .unwrap()
        );
        assert_eq!(usage().await, (5000, 7000));
    }
}

/// The router's RADIUS side for CoA/Disconnect: `answer` turns each request into something to
/// report to the test and the reply to send (signed with the NAS secret).
async fn nas_coa<T: Send + 'static>(
    answer: impl Fn(&saas_core::radius::Validated<'_>) -> (T, saas_core::radius::PacketBuilder)
    + Send
    + 'static,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<T>,
    tokio::task::JoinHandle<()>,
) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            let req = saas_core::radius::validate(&buf[..n]).unwrap();
            let (report, reply) = answer(&req);
            tx.send(report).unwrap();
            sock.send_to(&reply.finish(b"radius-secret"), from)
                .await
                .unwrap();
        }
    });
    (addr, rx, task)
}

/// A transport to the simulator (API) and the CoA listener, and a CoA client over it.
fn coa_client(s: &Simulator, coa: SocketAddr) -> (TunnelTo, saas_core::aaa::coa::CoaClient) {
    let mut client =
        saas_core::aaa::coa::CoaClient::new(std::sync::Arc::new(TunnelTo(s.addr(), Some(coa))));
    client.timeout = Duration::from_secs(2);
    (TunnelTo(s.addr(), Some(coa)), client)
}

async fn subscriber(scope: &TenantScope, name: &str, plan: Option<PlanId>) -> Subscriber {
    scope
        .create_subscriber(&NewSubscriber {
            username: name.into(),
            password: "pw".into(),
            plan_id: plan,
            expires_at: None,
            static_ip: None,
            framed_ipv6_prefix: None,
            delegated_ipv6_prefix: None,
            mac_lock: None,
            sim_use: None,
        })
        .await
        .unwrap()
}

async fn wait_state(scope: &TenantScope, nas: NasId, want: ApiState) -> (Nas, Duration) {
    let started = std::time::Instant::now();
    loop {
        let cur = scope.nas(nas).await.unwrap().unwrap();
        if cur.api_state == want {
            return (cur, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never {want}: {cur:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plan whose quota action is `reject`: crossing the quota through QuotaSync sends a
/// Disconnect; when the router NAKs it, the session is kicked through the API instead.
#[tokio::test]
async fn quota_sync_crossing_a_reject_plan_disconnects_with_api_kick_fallback() {
    use saas_core::radius::{Code, PacketBuilder, dict};
    use saas_core::routeros::quota;
    for ts in testing::each_backend().await {
        let scope = tenant(&ts, "acme").await;
        let plan = scope
            .create_plan(
                &NewPlan {
                    name: "capped".into(),
                    download_kbps: 10240,
                    upload_kbps: 2048,
                    quota_bytes: Some(10_000),
                    ..NewPlan::default()
                },
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            plan.quota_action,
            QuotaAction::Reject,
            "a quota without FUP rates"
        );
        let sub = subscriber(&scope, "bob", Some(plan.id)).await;
        let s = sim(cfg(false, false)).await;
        s.add_session("bob", "100.64.0.7", (0, 0), (0, 0));
        // The router's RADIUS side refuses the Disconnect (Error-Cause 503 Session Context Not
        // Found, as RouterOS answers when it cannot match the session).
        let (coa_addr, mut codes, responder) = nas_coa(|req| {
            let mut nak = PacketBuilder::reply(req, Code::DisconnectNAK).unwrap();
            nak.attr_u32(dict::ERROR_CAUSE, 503).unwrap();
            (req.code(), nak)
        })
        .await;
        let (transport, coa) = coa_client(&s, coa_addr);
        let nas = scope.create_nas(&nas("core", None, false)).await.unwrap();
        scope
            .record_accounting(&[acct(AcctKind::Start, nas.id, &sub, "s1", (0, 0))])
            .await
            .unwrap();

        // Below the quota: nothing happens.
        s.set_bytes("bob", 3000, 3000);
        let r = quota::sync_nas(&transport, &scope, &nas, &coa, T)
            .await
            .unwrap();
        assert_eq!((r.raised, r.crossed.len()), (1, 0), "{r:?}");
        assert_eq!(s.session_names(), ["bob"]);

        // Across it: a Disconnect-Request, NAKed, then /ppp/active/remove through the API.
        s.set_bytes("bob", 6000, 6000);
        let r = quota::sync_nas(&transport, &scope, &nas, &coa, T)
            .await
            .unwrap();
        assert_eq!(r.crossed.len(), 1, "{}: {r:?}", ts.backend);
        let (user, action, result) = &r.crossed[0];
        assert_eq!((user.as_str(), action.as_str()), ("bob", "disconnect"));
        assert_eq!(result.outcome, "api-kick", "{result:?}");
        assert_eq!(result.error_cause, Some(503));
        assert_eq!(codes.recv().await, Some(Code::DisconnectRequest));
        assert!(s.session_names().is_empty(), "the router still has bob");
        // The crossing is audited with what was done.
        let audit = scope.audit_log(10).await.unwrap();
        assert!(
            audit.iter().any(|a| a.action == "session.quota"
                && a.details.as_deref().unwrap_or("").contains("api-kick")),
            "{audit:?}"
        );
        responder.abort();
    }
}
