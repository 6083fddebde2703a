//! `proxpanel serve`: starts the configured roles and the admin listener, seeds the demo, and
//! shuts down gracefully on SIGINT/SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use saas_core::config::{Config, FlagOverrides, Listen};
use saas_core::metrics::{Metrics, StatusLabels};
use saas_core::model::TenantStatus;
use saas_core::platform::{PURGE_AFTER, Platform};
use tokio::sync::watch;

use crate::cli::{Cli, ServeArgs};
use crate::context;
use crate::{Fatal, admin, demo, dns_role, ports, radius_role, relay_role};

/// How long bus events are kept.
const EVENT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How long the hourly traffic behind the dashboard's 24-h charts is kept.
const USAGE_HOURLY_RETENTION: Duration = Duration::from_secs(8 * 24 * 3600);

pub async fn run(cli: &Cli, args: &ServeArgs) -> Result<(), Fatal> {
    let mut flags = FlagOverrides::new();
    if let Some(r) = &args.roles {
        flags.insert("roles", r.clone());
    }
    if let Some(a) = &args.admin_listen {
        flags.insert("admin.listen", a.clone());
    }
    if let Some(a) = &args.http_listen {
        flags.insert("http.listen", a.clone());
    }
    let config = context::load_config(cli, flags)?;
    init_logging(&config.log)?;
    context::ensure_data_dir(&config.data_dir)?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), roles = %config.roles.join(","), data_dir = %config.data_dir.display(), "starting proxpanel");

    let ctx = context::open(config).await?;
    tracing::info!(
        store = ctx.store.backend_name(),
        cache = ctx.cache.kind(),
        "store and cache ready"
    );
    let metrics = Metrics::new(ctx.store.backend_name(), ctx.cache.kind());
    let started = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    // Bind every listener before anything else, so a port conflict fails start-up at once.
    if let Listen::On(addr) = ctx.config.admin_listen {
        let listener = ports::bind_tcp(addr, "admin listener", "PROXPANEL_ADMIN_LISTEN").await?;
        let router = admin::router(admin::Readiness {
            store: ctx.store.clone(),
            metrics: metrics.clone(),
            started: started.clone(),
        });
        let mut stop = stop_rx.clone();
        tracing::info!(%addr, "admin listener: /healthz /readyz /metrics");
        tasks.spawn(async move {
            let r = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = r.await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    // ACME certificate metrics: the renewer and every HTTPS listener keep the expiry gauge.
    let acme_settings = saas_core::acme::AcmeSettings::from_config(&ctx.config);
    // The panel and the API share one app and its listeners: the API's host routing picks the
    // tenant, `/api/` is the API, everything else the panel (web role).
    let (api_role, web_role) = (ctx.config.has_role("api"), ctx.config.has_role("web"));
    let https_on = (api_role || web_role) && ctx.config.https_listen.addr().is_some();
    let acme_metrics = (https_on || acme_settings.is_some())
        .then(|| metrics.with_registry(saas_core::acme::AcmeMetrics::register));
    if api_role || web_role {
        let http = ctx.config.http_listen.addr();
        let https = ctx.config.https_listen.addr();
        let http_listener = match http {
            Some(addr) => {
                Some(ports::bind_tcp(addr, "HTTP listener", "PROXPANEL_HTTP_LISTEN").await?)
            }
            None => None,
        };
        let https_listener = match https {
            Some(addr) => {
                Some(ports::bind_tcp(addr, "HTTPS listener", "PROXPANEL_HTTPS_LISTEN").await?)
            }
            None => None,
        };
        let https_port = https_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port());
        let mut api = api_config(&ctx.config, https_port);
        api.peers = Some(Arc::new(crate::api_peers::ApiPeers {
            store: ctx.store.clone(),
            config: ctx.config.clone(),
        }));
        let state = tenant_api::AppState::new(ctx.platform.clone(), ctx.cache.clone(), api)
            .await
            .map_err(|e| Fatal::failure(format!("cannot start the API: {e}")))?;
        let router = if web_role {
            tenant_api::app_with_panels(
                state.clone(),
                web::panels(&state, web::WebConfig::default()),
            )
        } else {
            tenant_api::app(state)
        };
        if let Some(listener) = https_listener {
            let resolver = saas_core::acme::CertResolver::new();
            tasks.spawn(saas_core::acme::follow(
                ctx.store.clone(),
                ctx.platform.bus().clone(),
                ctx.config.base_domain.clone(),
                resolver.clone(),
                acme_metrics.clone().unwrap_or_default(),
                stop_rx.clone(),
            ));
            let local = listener.local_addr().ok();
            let tls = crate::https::TlsListener::start(
                listener,
                Arc::new(resolver.server_config()),
                stop_rx.clone(),
            )
            .map_err(|e| Fatal::failure(format!("HTTPS listener: {e}")))?;
            let app = crate::https::with_peer_addr(router.clone());
            let mut stop = stop_rx.clone();
            tracing::info!(addr = ?local, base = %ctx.config.base_domain, "HTTPS listener (built-in TLS with the zone's ACME certificate)");
            tasks.spawn(async move {
                let r = axum::serve(
                    tls,
                    app.into_make_service_with_connect_info::<crate::https::TlsPeer>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                });
                if let Err(e) = r.await {
                    tracing::error!(error = %e, "HTTPS listener failed");
                }
            });
        }
        if let Some(listener) = http_listener {
            let addr = listener.local_addr().ok();
            let app = match https_port {
                Some(port) => {
                    tracing::info!(addr = ?addr, https_port = port, "HTTP listener: 308 redirects to HTTPS");
                    crate::https::redirect_router(port)
                }
                None => {
                    tracing::info!(addr = ?addr, base = %ctx.config.base_domain, web = web_role, "HTTP listener: panel and /api/v1 on SLUG.<base>, <base>, operator.<base>");
                    router
                }
            };
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let r = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                });
                if let Err(e) = r.await {
                    tracing::error!(error = %e, "API listener failed");
                }
            });
        }
    }
    if ctx.config.has_role("workers")
        && let Some(settings) = acme_settings
    {
        let holder = format!("{}/{}", ctx.config.relay_node, uuid::Uuid::new_v4());
        tasks.spawn(saas_core::acme::run(
            ctx.platform.clone(),
            settings,
            acme_metrics.clone().unwrap_or_default(),
            holder,
            stop_rx.clone(),
        ));
    }
    if ctx.config.has_role("radius") || ctx.config.has_role("relay") {
        let aaa_metrics = saas_core::aaa::AaaMetrics::register(&metrics);
        let cfg = saas_core::aaa::EngineConfig {
            interim_interval_s: ctx.config.radius_interim_s,
            tenant_rps: ctx.config.radius_tenant_rps,
            ..Default::default()
        };
        // Accounting that the store cannot take right now waits here, fsync'd, until it can.
        let spool = ctx.config.data_dir.join("accounting-spool.jsonl");
        let writer = saas_core::aaa::writer::AcctWriter::start(ctx.store.clone(), spool);
        let mut engine = saas_core::aaa::Engine::new(ctx.store.clone(), writer, cfg, aaa_metrics);
        // With Redis the session ledger is shared by every RADIUS node.
        if let Some(conn) = ctx.cache.redis() {
            engine = engine.with_ledger(Arc::new(saas_core::aaa::ledger::RedisLedger::new(conn)));
        }
        let engine = Arc::new(engine);
        let events = saas_core::aaa::events::EffectPublisher::start(
            ctx.platform.bus().clone(),
            engine.instance(),
        );
        let sources = Arc::new(radius_role::Sources::new(ctx.store.clone()));
        let listeners = [
            (
                ctx.config.radius_auth_listen,
                radius_role::Port::Auth,
                "RADIUS auth listener",
                "PROXPANEL_RADIUS_AUTH_LISTEN",
            ),
            (
                ctx.config.radius_acct_listen,
                radius_role::Port::Acct,
                "RADIUS accounting listener",
                "PROXPANEL_RADIUS_ACCT_LISTEN",
            ),
        ];
        let radius = ctx.config.has_role("radius");
        for (listen, port, what, setting) in listeners {
            if !radius {
                break;
            }
            if let Listen::On(addr) = listen {
                let socket = ports::bind_udp(addr, what, setting).await?;
                tracing::info!(%addr, "{what}");
                tasks.spawn(radius_role::serve(
                    socket,
                    port,
                    engine.clone(),
                    sources.clone(),
                    events.clone(),
                    stop_rx.clone(),
                ));
            }
        }
        // The relay answers RADIUS from the tunnels with the same engine.
        let mut relay = None;
        if ctx.config.has_role("relay")
            && let Listen::On(addr) = ctx.config.wg_listen
        {
            let socket = ports::bind_udp(addr, "WireGuard relay", "PROXPANEL_WG_LISTEN").await?;
            tracing::info!(%addr, "WireGuard relay listener");
            relay = Some(
                relay_role::start(
                    &ctx,
                    socket,
                    engine.clone(),
                    events.clone(),
                    &metrics,
                    &mut tasks,
                    stop_rx.clone(),
                )
                .await?,
            );
        }
        let transport = relay_role::Transport::new(relay);
        tasks.spawn(relay_role::answer_nas_checks(
            ctx.platform.bus().clone(),
            ctx.store.clone(),
            transport.clone(),
            stop_rx.clone(),
        ));
        tasks.spawn(relay_role::answer_live_sessions(
            ctx.platform.bus().clone(),
            ctx.store.clone(),
            transport.clone(),
            stop_rx.clone(),
        ));
        let workers = saas_core::routeros::workers::Supervisor::new(
            ctx.store.clone(),
            ctx.platform.bus().clone(),
            ctx.cache.clone(),
            Arc::new(transport.clone()),
            transport.reach_check(),
            saas_core::routeros::workers::WorkerConfig {
                health: saas_core::routeros::health::HealthConfig {
                    interval: Duration::from_secs(ctx.config.nas_poll_interval_s.max(1)),
                    ..Default::default()
                },
                quota_default: (ctx.config.nas_quota_sync_s > 0)
                    .then(|| Duration::from_secs(ctx.config.nas_quota_sync_s)),
                concurrency: usize::try_from(ctx.config.nas_poll_concurrency.max(1)).unwrap_or(1),
                per_tenant: usize::try_from((ctx.config.nas_poll_concurrency / 4).max(1))
                    .unwrap_or(1),
                ..Default::default()
            },
            saas_core::routeros::workers::WorkerMetrics::register(&metrics),
        );
        tasks.spawn(workers.run(stop_rx.clone()));
        let transport: Arc<dyn saas_core::transport::NasTransport> = Arc::new(transport);
        let coa = saas_core::aaa::coa::CoaClient::new(transport.clone());
        tasks.spawn(radius_role::answer_coa_requests(
            ctx.platform.bus().clone(),
            ctx.store.clone(),
            coa,
            transport,
            stop_rx.clone(),
        ));
        tasks.spawn(radius_role::follow_changes(
            ctx.platform.bus().clone(),
            engine,
            sources,
            stop_rx.clone(),
        ));
    }
    if ctx.config.has_role("dns")
        && let Listen::On(addr) = ctx.config.dns_listen
    {
        let (udp, tcp) = dns_role::bind(addr).await?;
        dns_role::start(&ctx, udp, tcp, &metrics, &mut tasks, stop_rx.clone()).await?;
    }
    if ctx.config.has_role("workers") {
        // Stale = no accounting update for 3× the interim interval.
        let stale_after = Duration::from_secs(3 * u64::from(ctx.config.radius_interim_s.max(1)));
        tasks.spawn(workers(
            ctx.platform.clone(),
            metrics.clone(),
            stale_after,
            stop_rx.clone(),
        ));
    }

    if args.demo {
        let password = demo::demo_password(&ctx.config.data_dir)?;
        let creds = demo::seed_demo(&ctx.platform, &password).await?;
        print_demo(&ctx.config, &creds, cli.json);
    }
    started.store(true, Ordering::Release);
    tracing::info!("ready");

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 10 s");
    }
    ctx.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// API settings from the configuration; panel URLs point at HTTPS when it runs here.
fn api_config(c: &Config, https_port: Option<u16>) -> tenant_api::ApiConfig {
    let mut a = tenant_api::ApiConfig::new(c.base_domain.clone(), c.data_dir.clone());
    a.trusted_proxies = c.trusted_proxies.clone();
    a.public_port = match https_port {
        Some(p) => {
            a.public_scheme = "https".into();
            Some(p)
        }
        None => c.http_listen.addr().map(|s| s.port()),
    }
    .filter(|p| *p != 80 && *p != 443);
    a.limits.enabled = c.login_rate_per_min > 0;
    a.limits.per_ip_per_minute = i64::from(c.login_rate_per_min);
    a.smtp_url = c.smtp_url.as_ref().map(|u| u.expose().to_owned());
    a.mail_from = c.mail_from.clone();
    a
}

fn init_logging(filter: &str) -> Result<(), Fatal> {
    let f = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| {
        Fatal::usage(format!(
            "PROXPANEL_LOG={filter:?} is not a valid filter: {e}"
        ))
    })?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(f)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Background upkeep: close stale sessions, disconnect expired subscribers, purge deleted tenants
/// after their grace period, prune old events, refresh the tenant gauges.
async fn workers(
    p: Platform,
    metrics: Metrics,
    stale_after: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        metrics.bus_position.set(p.bus().position());
        match p.tenants().await {
            Ok(ts) => {
                for s in TenantStatus::ALL {
                    let count = ts.iter().filter(|t| t.tenant.status == *s).count() as i64;
                    metrics
                        .tenants
                        .get_or_create(&StatusLabels {
                            status: s.to_string(),
                        })
                        .set(count);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot count tenants"),
        }
        match p.sweep_stale_sessions(stale_after).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "stale-session sweep failed"),
        }
        if let Err(e) = p.sweep_expired().await {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
        // Every 10 minutes.
        if n.is_multiple_of(20) {
            match p.purge_deleted(PURGE_AFTER).await {
                Ok(0) => {}
                Ok(k) => tracing::info!(count = k, "purged deleted tenants"),
                Err(e) => tracing::warn!(error = %e, "purge of deleted tenants failed"),
            }
            if let Err(e) = p.bus().prune(EVENT_RETENTION).await {
                tracing::warn!(error = %e, "pruning old events failed");
            }
            let platform = p.store().platform();
            if let Err(e) = platform.prune_revocations().await {
                tracing::warn!(error = %e, "pruning expired token revocations failed");
            }
            let before = chrono::Utc::now()
                - chrono::Duration::from_std(USAGE_HOURLY_RETENTION).unwrap_or_default();
            if let Err(e) = platform.prune_usage_hourly(before).await {
                tracing::warn!(error = %e, "pruning old hourly traffic failed");
            }
        }
        n += 1;
    }
}

fn print_demo(config: &Config, c: &demo::DemoCredentials, as_json: bool) {
    let base = &config.base_domain;
    let http = config.http_listen.addr().map(|a| a.port()).unwrap_or(8080);
    let admin = config
        .admin_listen
        .addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "off".into());
    if as_json {
        crate::output::json(
            &serde_json::json!({"demo": c, "admin": admin, "panel": format!("http://demo.{base}:{http}/"), "operator": format!("http://operator.{base}:{http}/")}),
        );
        return;
    }
    let created = if c.created.is_empty() {
        "nothing new (already seeded)".to_owned()
    } else {
        c.created.join(", ")
    };
    println!(
        "\nProxPanel demo — created: {created}\n\
         \n  Operator console  http://operator.{base}:{http}/  (API: /api/v1)\
         \n    login           {op} / {pw}\
         \n    TOTP enrolment  {totp}\
         \n  Tenant panel      http://demo.{base}:{http}/  (API: /api/v1)\
         \n    owner login     {owner} / {pw}\
         \n  Subscriber        {su} / {sp} (plan 10M: 10 Mbit/s down, 2 Mbit/s up)\
         \n  NAS               {nas} (mikrotik, direct), RADIUS secret {secret}\
         \n  Admin             http://{admin}/healthz  /readyz  /metrics\n",
        op = c.operator_email,
        pw = c.password,
        totp = c.operator_totp_uri.as_deref().unwrap_or("-"),
        owner = c.owner_email,
        su = c.subscriber.0,
        sp = c.subscriber.1,
        nas = c.nas_address,
        secret = c.nas_secret,
    );
}
