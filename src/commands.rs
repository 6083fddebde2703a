//! The admin commands (everything but `serve`).

use saas_core::config::FlagOverrides;
use saas_core::model::*;
use saas_core::platform::{Actor, ProvisionRequest};
use saas_core::store::{Page, SubscriberQuery};
use saas_core::{Email, Slug};
use serde_json::json;

use crate::Fatal;
use crate::cli::*;
use crate::context::{self, Context};
use crate::output::{self, opt};

/// Runs an admin command.
pub async fn run(cli: Cli) -> Result<(), Fatal> {
    let config = context::load_config(&cli, FlagOverrides::new())?;
    if !config.uses_postgres() {
        context::ensure_data_dir(&config.data_dir)?;
    }
    init_cli_logging(&config.log);
    let ctx = context::open(config).await?;
    let r = dispatch(&ctx, cli.json, cli.command).await;
    ctx.close().await;
    r
}

fn init_cli_logging(filter: &str) {
    // Commands print their results on stdout; only warnings and worse go to stderr.
    let f = tracing_subscriber::EnvFilter::try_new(format!(
        "warn,{}",
        filter
            .split(',')
            .filter(|d| d.contains('='))
            .collect::<Vec<_>>()
            .join(",")
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(f)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn email(s: &str) -> Result<Email, Fatal> {
    Email::parse(s).map_err(|e| Fatal::usage(e.to_string()))
}

fn parse_enum<T: std::str::FromStr<Err = String>>(what: &str, s: &str) -> Result<T, Fatal> {
    s.parse()
        .map_err(|e: String| Fatal::usage(format!("--{what}: {e}")))
}

/// `none` clears an optional field.
fn clearable(v: Option<String>) -> Option<Option<String>> {
    v.map(|s| {
        if s.eq_ignore_ascii_case("none") || s.is_empty() {
            None
        } else {
            Some(s)
        }
    })
}

async fn dispatch(ctx: &Context, as_json: bool, cmd: Command) -> Result<(), Fatal> {
    let p = &ctx.platform;
    match cmd {
        Command::Serve(_) | Command::Dev(_) => unreachable_serve(),
        Command::Migrate => {
            // Context::open already migrated.
            if as_json {
                output::json(&json!({"migrated": true, "store": ctx.store.backend_name()}));
            } else {
                println!("migrations applied ({})", ctx.store.backend_name());
            }
            Ok(())
        }
        Command::Operator(OperatorCmd::Create { email: e, password }) => {
            let (op, uri) = p
                .create_operator(&email(&e)?, &password, &Actor::cli())
                .await?;
            if as_json {
                output::json(&json!({"operator": op, "totp_enrolment_uri": uri}));
            } else {
                println!("operator {} created", op.email);
                println!("TOTP enrolment URI (add it to an authenticator app; shown once): {uri}");
            }
            Ok(())
        }
        Command::Operator(OperatorCmd::List) => {
            let ops = ctx.store.platform().operators().await?;
            if as_json {
                output::json(&Page {
                    items: ops,
                    next_cursor: None,
                });
            } else {
                output::table(
                    &["email", "role", "totp", "created"],
                    ops.iter()
                        .map(|o| {
                            vec![
                                o.email.to_string(),
                                o.role.clone(),
                                if o.totp_enrolled {
                                    "enrolled"
                                } else {
                                    "pending"
                                }
                                .into(),
                                o.created_at.to_rfc3339(),
                            ]
                        })
                        .collect(),
                );
            }
            Ok(())
        }
        Command::Tenant(cmd) => tenant(ctx, as_json, cmd).await,
        Command::Plan(cmd) => plan(ctx, as_json, cmd).await,
        Command::Subscriber(cmd) => subscriber(ctx, as_json, cmd).await,
        Command::Nas(cmd) => nas(ctx, as_json, cmd).await,
        Command::Peer(cmd) => crate::peer_cmd::peer(ctx, as_json, cmd).await,
        Command::Dns(cmd) => crate::dns_cmd::dns(ctx, as_json, cmd).await,
        Command::Cert(cmd) => crate::cert_cmd::cert(ctx, as_json, cmd).await,
        Command::Relay(crate::cli::RelayCmd::Show) => {
            crate::peer_cmd::relay_show(ctx, as_json).await
        }
        Command::Session(SessionCmd::List {
            tenant,
            online,
            live,
            timeout,
            limit,
        }) => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            if live {
                return live_sessions(ctx, &ops, as_json, timeout).await;
            }
            let list = ops.scope().sessions(online, limit).await?;
            if as_json {
                output::json(&Page {
                    items: list,
                    next_cursor: None,
                });
            } else {
                output::table(
                    &[
                        "username",
                        "acct session",
                        "framed ip",
                        "started",
                        "stopped",
                        "in",
                        "out",
                        "cause",
                    ],
                    list.iter()
                        .map(|s| {
                            vec![
                                s.username.clone(),
                                s.acct_session_id.clone(),
                                opt(&s.framed_ip),
                                s.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                                s.stopped_at
                                    .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                                    .unwrap_or_else(|| "online".into()),
                                s.input_octets.to_string(),
                                s.output_octets.to_string(),
                                opt(&s.terminate_cause),
                            ]
                        })
                        .collect(),
                );
            }
            Ok(())
        }
        Command::Session(SessionCmd::Disconnect {
            tenant,
            username,
            timeout,
        }) => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            ops.subscriber(&username).await?;
            let req = json!({"action": "disconnect", "username": Some(&username)});
            let ev = ctx
                .platform
                .bus()
                .request(
                    Some(ops.tenant().id),
                    saas_core::bus::kinds::COA_REQUEST,
                    &req,
                    saas_core::bus::kinds::COA_RESULT,
                    std::time::Duration::from_secs(timeout),
                )
                .await
                .map_err(|e| Fatal::failure(e.to_string()))?;
            let result: serde_json::Value = serde_json::from_str(&ev.payload)
                .map_err(|e| Fatal::failure(format!("bad coa.result: {e}")))?;
            if as_json {
                output::json(&result);
            } else {
                let items = result["results"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    println!("{username} has no open session");
                }
                for r in items {
                    println!(
                        "{}: {} ({})",
                        r["acct_session_id"].as_str().unwrap_or("?"),
                        r["result"]["outcome"].as_str().unwrap_or("?"),
                        r["result"]["detail"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        Command::AuthLog { tenant, limit } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let list = ops.scope().auth_log(limit).await?;
            if as_json {
                output::json(&Page {
                    items: list,
                    next_cursor: None,
                });
            } else {
                output::table(
                    &[
                        "at",
                        "username",
                        "method",
                        "outcome",
                        "reason",
                        "calling station",
                    ],
                    list.iter()
                        .map(|e| {
                            vec![
                                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                                e.username.clone(),
                                opt(&e.method),
                                e.outcome.clone(),
                                opt(&e.reason),
                                opt(&e.calling_station_id),
                            ]
                        })
                        .collect(),
                );
            }
            Ok(())
        }
    }
}

fn unreachable_serve() -> Result<(), Fatal> {
    Err(Fatal::failure("serve is handled by the serve module"))
}

fn print_tenant(t: &Tenant, as_json: bool) {
    if as_json {
        output::json(t);
    } else {
        output::fields(&[
            ("id", t.id.to_string()),
            ("slug", t.slug.to_string()),
            ("name", t.name.clone()),
            ("status", t.status.to_string()),
            ("timezone", t.timezone.clone()),
            ("max subscribers", t.limits.max_subscribers.to_string()),
            ("max NAS", t.limits.max_nas.to_string()),
            (
                "QuotaSync",
                t.quota_sync_s
                    .map_or_else(|| "platform default".into(), |s| format!("every {s} s")),
            ),
            ("created", t.created_at.to_rfc3339()),
        ]);
    }
}

async fn tenant(ctx: &Context, as_json: bool, cmd: TenantCmd) -> Result<(), Fatal> {
    let p = &ctx.platform;
    match cmd {
        TenantCmd::Create {
            slug,
            name,
            owner_email,
            owner_password,
            timezone,
            max_subscribers,
            max_nas,
        } => {
            let slug = Slug::parse(&slug)
                .map_err(|e| Fatal::usage(format!("invalid slug {slug:?}: {e}")))?;
            let limits = match (max_subscribers, max_nas) {
                (None, None) => None,
                (s, n) => {
                    let d = TenantLimits::default();
                    Some(TenantLimits {
                        max_subscribers: s.unwrap_or(d.max_subscribers),
                        max_nas: n.unwrap_or(d.max_nas),
                    })
                }
            };
            let req = ProvisionRequest {
                slug,
                name,
                owner_email: email(&owner_email)?,
                owner_password,
                timezone,
                limits,
            };
            let t = p.provision_tenant(&req, &Actor::cli()).await?;
            if !as_json {
                println!(
                    "tenant {} created: http://{}.{}/",
                    t.slug, t.slug, ctx.config.base_domain
                );
            }
            print_tenant(&t, as_json);
        }
        TenantCmd::List => {
            let ts = p.tenants().await?;
            if as_json {
                output::json(&Page {
                    items: ts,
                    next_cursor: None,
                });
            } else {
                output::table(
                    &[
                        "slug",
                        "name",
                        "status",
                        "subscribers",
                        "online",
                        "nas",
                        "created",
                    ],
                    ts.iter()
                        .map(|s| {
                            vec![
                                s.tenant.slug.to_string(),
                                s.tenant.name.clone(),
                                s.tenant.status.to_string(),
                                s.subscribers.to_string(),
                                s.online.to_string(),
                                s.nas.to_string(),
                                s.tenant.created_at.format("%Y-%m-%d").to_string(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        TenantCmd::Show { slug } => print_tenant(&p.tenant_by_slug(&slug).await?, as_json),
        TenantCmd::Update {
            slug,
            name,
            timezone,
            max_subscribers,
            max_nas,
            quota_sync,
        } => {
            let quota_sync_s = match quota_sync.as_deref() {
                None => None,
                Some("default") => Some(None),
                Some(n) => Some(Some(n.parse::<u32>().map_err(|_| {
                    Fatal::usage(format!(
                        "--quota-sync takes seconds (10-3600) or `default`, not {n:?}"
                    ))
                })?)),
            };
            let change = saas_core::platform::TenantChange {
                name,
                timezone,
                max_subscribers,
                max_nas,
                quota_sync_s,
            };
            print_tenant(
                &p.update_tenant(&slug, &change, &Actor::cli()).await?,
                as_json,
            )
        }
        TenantCmd::Suspend { slug } => print_tenant(
            &p.set_tenant_status(&slug, TenantStatus::Suspended, &Actor::cli())
                .await?,
            as_json,
        ),
        TenantCmd::Resume { slug } => print_tenant(
            &p.set_tenant_status(&slug, TenantStatus::Active, &Actor::cli())
                .await?,
            as_json,
        ),
        TenantCmd::Delete { slug, purge_now } => {
            let t = p
                .set_tenant_status(&slug, TenantStatus::Deleted, &Actor::cli())
                .await?;
            let purged = if purge_now {
                p.purge_deleted(std::time::Duration::ZERO).await? > 0
            } else {
                false
            };
            if as_json {
                output::json(&json!({"tenant": t, "purged": purged}));
            } else if purged {
                println!("tenant {slug} deleted and purged");
            } else {
                println!(
                    "tenant {slug} deleted; its data is purged after 24 h (or now with --purge-now)"
                );
            }
        }
    }
    Ok(())
}

fn print_plans(plans: &[Plan], as_json: bool) {
    if as_json {
        output::json(&Page {
            items: plans.to_vec(),
            next_cursor: None,
        });
        return;
    }
    output::table(
        &[
            "name",
            "down kbps",
            "up kbps",
            "quota",
            "after quota",
            "pool",
            "sim",
            "default",
        ],
        plans
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.download_kbps.to_string(),
                    p.upload_kbps.to_string(),
                    p.quota_bytes
                        .map(|q| format!("{:.1} GB", q as f64 / 1e9))
                        .unwrap_or_else(|| "-".into()),
                    match (p.quota_bytes, p.quota_action) {
                        (None, _) => "-".into(),
                        (Some(_), QuotaAction::Reject) => "reject".into(),
                        (Some(_), QuotaAction::Fup) => format!(
                            "{}/{} kbps",
                            opt(&p.fup_download_kbps),
                            opt(&p.fup_upload_kbps)
                        ),
                    },
                    opt(&p.ip_pool),
                    p.sim_use.to_string(),
                    if p.is_default {
                        "yes".into()
                    } else {
                        "".into()
                    },
                ]
            })
            .collect(),
    );
}

async fn plan(ctx: &Context, as_json: bool, cmd: PlanCmd) -> Result<(), Fatal> {
    match cmd {
        PlanCmd::Add(a) => {
            let ops = ctx.platform.tenant_ops(&a.tenant, Actor::cli()).await?;
            let quota_bytes = match a.quota_gb {
                Some(q) if q.is_finite() && q > 0.0 => Some((q * 1e9).round() as i64),
                Some(q) => {
                    return Err(Fatal::usage(format!(
                        "--quota-gb must be a positive number (got {q})"
                    )));
                }
                None => None,
            };
            let np = NewPlan {
                name: a.name,
                download_kbps: a.download_kbps,
                upload_kbps: a.upload_kbps,
                burst_download_kbps: a.burst_download_kbps,
                burst_upload_kbps: a.burst_upload_kbps,
                burst_threshold_kbps: a.burst_threshold_kbps,
                burst_time_s: a.burst_time_s,
                quota_bytes,
                fup_download_kbps: a.fup_download_kbps,
                fup_upload_kbps: a.fup_upload_kbps,
                validity_days: a.validity_days,
                price_cents: a.price_cents,
                ip_pool: a.pool,
                ipv6_pool: a.ipv6_pool,
                delegated_ipv6_pool: a.delegated_ipv6_pool,
                session_timeout_s: a.session_timeout_s,
                sim_use: a.sim_use,
            };
            let plan = ops.add_plan(&np).await?;
            if as_json {
                output::json(&plan);
            } else {
                println!("plan {} added to {}", plan.name, a.tenant);
            }
        }
        PlanCmd::List { tenant } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            print_plans(&ops.scope().plans().await?, as_json);
        }
    }
    Ok(())
}

fn print_subscriber(s: &Subscriber, as_json: bool) {
    if as_json {
        output::json(s);
    } else {
        output::fields(&[
            ("username", s.username.clone()),
            ("status", s.status.to_string()),
            ("plan", opt(&s.plan)),
            (
                "expires",
                s.expires_at
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_else(|| "never".into()),
            ),
            ("static IP", opt(&s.static_ip)),
            ("IPv6 prefix", opt(&s.framed_ipv6_prefix)),
            ("delegated prefix", opt(&s.delegated_ipv6_prefix)),
            ("MAC lock", opt(&s.mac_lock)),
            (
                "simultaneous use",
                s.sim_use
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "plan".into()),
            ),
        ]);
    }
}

async fn subscriber(ctx: &Context, as_json: bool, cmd: SubscriberCmd) -> Result<(), Fatal> {
    match cmd {
        SubscriberCmd::Add {
            tenant,
            username,
            password,
            plan,
            expires,
            mac,
            static_ip,
            ipv6_prefix,
            delegated_prefix,
            sim_use,
        } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let expires_at = expires.as_deref().map(|e| ops.parse_date(e)).transpose()?;
            let ns = NewSubscriber {
                username,
                password,
                plan_id: None,
                expires_at,
                static_ip,
                framed_ipv6_prefix: ipv6_prefix,
                delegated_ipv6_prefix: delegated_prefix,
                mac_lock: mac,
                sim_use,
            };
            let s = ops.add_subscriber(ns, plan.as_deref()).await?;
            if !as_json {
                println!("subscriber {} added to {}", s.username, tenant);
            }
            print_subscriber(&s, as_json);
        }
        SubscriberCmd::Set {
            tenant,
            username,
            plan,
            password,
            mac,
            static_ip,
            ipv6_prefix,
            delegated_prefix,
            sim_use,
            expires,
            status,
        } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let plan_id = match plan {
                Some(name) => Some(Some(ops.plan_named(&name).await?.id)),
                None => None,
            };
            let expires_at = match clearable(expires) {
                Some(Some(e)) => Some(Some(ops.parse_date(&e)?)),
                Some(None) => Some(None),
                None => None,
            };
            let sim_use = match clearable(sim_use) {
                Some(Some(n)) => Some(Some(n.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(
                    || {
                        Fatal::usage(format!(
                            "--sim-use must be a number ≥ 1 or none (got {n:?})"
                        ))
                    },
                )?)),
                Some(None) => Some(None),
                None => None,
            };
            let status = status
                .map(|s| parse_enum::<SubscriberStatus>("status", &s))
                .transpose()?;
            let patch = SubscriberPatch {
                password,
                status,
                plan_id,
                expires_at,
                static_ip: clearable(static_ip),
                framed_ipv6_prefix: clearable(ipv6_prefix),
                delegated_ipv6_prefix: clearable(delegated_prefix),
                mac_lock: clearable(mac),
                sim_use,
            };
            if patch == SubscriberPatch::default() {
                return Err(Fatal::usage(
                    "nothing to change: give at least one of --plan, --password, --mac, --static-ip, --ipv6-prefix, --delegated-prefix, --sim-use, --expires, --status",
                ));
            }
            let s = ops.update_subscriber(&username, &patch).await?;
            print_subscriber(&s, as_json);
        }
        SubscriberCmd::List {
            tenant,
            search,
            status,
            plan,
            limit,
            after,
        } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let plan_id = match plan {
                Some(n) => Some(ops.plan_named(&n).await?.id),
                None => None,
            };
            let status = status
                .map(|s| parse_enum::<SubscriberStatus>("status", &s))
                .transpose()?;
            let page = ops
                .subscribers(&SubscriberQuery {
                    search,
                    status,
                    plan_id,
                    after,
                    limit,
                })
                .await?;
            if as_json {
                output::json(&page);
            } else {
                output::table(
                    &["username", "status", "plan", "expires", "static ip", "mac"],
                    page.items
                        .iter()
                        .map(|s| {
                            vec![
                                s.username.clone(),
                                s.status.to_string(),
                                opt(&s.plan),
                                s.expires_at
                                    .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
                                    .unwrap_or_else(|| "-".into()),
                                opt(&s.static_ip),
                                opt(&s.mac_lock),
                            ]
                        })
                        .collect(),
                );
                if let Some(c) = page.next_cursor {
                    println!("more: --after {c}");
                }
            }
        }
        SubscriberCmd::Show { tenant, username } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            print_subscriber(&ops.subscriber(&username).await?, as_json);
        }
        SubscriberCmd::Import { tenant, file } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&file)
            }
            .map_err(|e| Fatal::usage(format!("cannot read {}: {e}", file.display())))?;
            let rows = crate::import::parse_subscribers_csv(&text, |d| ops.parse_date(d))
                .map_err(Fatal::usage)?;
            let started = std::time::Instant::now();
            let n = ops.import_subscribers(rows).await?;
            if as_json {
                output::json(&json!({"imported": n}));
            } else {
                println!(
                    "{n} subscribers imported into {tenant} in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        SubscriberCmd::Delete { tenant, username } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            ops.delete_subscriber(&username).await?;
            if as_json {
                output::json(&json!({"deleted": username}));
            } else {
                println!("subscriber {username} deleted");
            }
        }
    }
    Ok(())
}

async fn nas(ctx: &Context, as_json: bool, cmd: NasCmd) -> Result<(), Fatal> {
    match cmd {
        NasCmd::Check {
            tenant,
            name,
            timeout,
        } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let nas = ops.nas_named(&name).await?;
            let ev = ctx
                .platform
                .bus()
                .request(
                    Some(ops.tenant().id),
                    saas_core::bus::kinds::NAS_CHECK,
                    &json!({"nas": nas.id}),
                    saas_core::bus::kinds::NAS_CHECK_RESULT,
                    std::time::Duration::from_secs(timeout),
                )
                .await
                .map_err(|e| Fatal::failure(e.to_string()))?;
            let result: serde_json::Value = serde_json::from_str(&ev.payload)
                .map_err(|e| Fatal::failure(format!("bad nas.check.result: {e}")))?;
            let ok = result["ok"].as_bool().unwrap_or(false);
            if as_json {
                output::json(&result);
            } else if ok {
                println!(
                    "{name}: {} — RouterOS {} on {}, uptime {}, CPU {}%; round trip {:.1} ms (login {} ms, port {}{})",
                    result["identity"].as_str().unwrap_or("?"),
                    result["version"].as_str().unwrap_or("?"),
                    result["board"].as_str().unwrap_or("?"),
                    result["uptime"].as_str().unwrap_or("?"),
                    result["cpu_load"],
                    result["rtt_ms"].as_f64().unwrap_or(0.0),
                    result["login_ms"],
                    result["port"],
                    if result["tls"].as_bool().unwrap_or(false) {
                        ", API-SSL"
                    } else {
                        ""
                    },
                );
            }
            if !ok {
                return Err(Fatal::failure(format!(
                    "{name}: {}",
                    result["error"].as_str().unwrap_or("the check failed")
                )));
            }
        }
        NasCmd::Pin {
            tenant,
            nas,
            fingerprint,
        } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let n = ops.nas_named(&nas).await?;
            let fp = match fingerprint {
                Some(f) => {
                    let f = f.replace(':', "").to_ascii_lowercase();
                    if f.len() != 64 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(Fatal::usage(
                            "--fingerprint must be a SHA-256 in hex (64 digits, colons allowed)",
                        ));
                    }
                    Some(f)
                }
                None => None,
            };
            ops.scope().repin_nas_api(n.id, fp.as_deref()).await?;
            if as_json {
                output::json(&json!({"nas": nas, "pinned": fp}));
            } else if let Some(f) = fp {
                println!("NAS {nas}: API-SSL certificate {f} pinned");
            } else {
                println!(
                    "NAS {nas}: pin cleared; the next API-SSL connection pins the router's certificate"
                );
            }
        }
        NasCmd::Add {
            tenant,
            name,
            ip,
            tunnel,
            secret,
            vendor,
            coa_port,
            message_auth,
            api_user,
            api_password,
            api_tls,
            api_port,
        } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let ip = match (ip, tunnel) {
                (Some(s), false) => Some(
                    s.parse()
                        .map_err(|_| Fatal::usage(format!("--ip {s:?} is not an IP address")))?,
                ),
                (None, true) => None,
                _ => {
                    return Err(Fatal::usage(
                        "give either --ip ADDR (direct RADIUS) or --tunnel (through the WireGuard relay)",
                    ));
                }
            };
            if coa_port == 0 {
                return Err(Fatal::usage("--coa-port must be 1-65535"));
            }
            let n = NewNas {
                name,
                vendor: parse_enum("vendor", &vendor)?,
                ip,
                secret,
                message_auth: parse_enum("message-auth", &message_auth)?,
                coa_port,
                api_user,
                api_password,
                use_ssl: api_tls,
            };
            if api_port == Some(0) {
                return Err(Fatal::usage("--api-port must be 1-65535"));
            }
            if n.ip.is_some() && n.api_user.is_some() && !api_tls {
                // Still added (RADIUS works); the API refuses to send the password in clear.
                eprintln!(
                    "note: a direct NAS's API is used only over API-SSL; add --api-tls (port 8729) or the platform will not log in to it"
                );
            }
            let mut nas = ops.add_nas(&n).await?;
            if let Some(port) = api_port {
                ops.scope()
                    .set_nas_api_endpoint(nas.id, port, api_tls)
                    .await?;
                nas = ops.scope().nas(nas.id).await?.unwrap_or(nas);
            }
            if as_json {
                output::json(&nas);
            } else {
                println!(
                    "NAS {} added to {} ({})",
                    nas.name,
                    tenant,
                    match nas.ip {
                        Some(ip) => format!("direct, source {ip}"),
                        None => "through the WireGuard relay".into(),
                    }
                );
            }
        }
        NasCmd::List { tenant } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let list = ops.scope().nas_list().await?;
            if as_json {
                output::json(&Page {
                    items: list,
                    next_cursor: None,
                });
            } else {
                output::table(
                    &[
                        "name",
                        "vendor",
                        "reach",
                        "address",
                        "tunnel",
                        "radius last seen",
                        "api",
                        "msg-auth",
                    ],
                    list.iter()
                        .map(|n| {
                            vec![
                                n.name.clone(),
                                n.vendor.to_string(),
                                n.reach.to_string(),
                                opt(&n.ip),
                                n.tunnel_state.to_string(),
                                n.radius_last_seen
                                    .map(|d| d.to_rfc3339())
                                    .unwrap_or_else(|| "never".into()),
                                n.api_state.to_string(),
                                n.message_auth.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        NasCmd::Delete { tenant, name } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            ops.delete_nas(&name).await?;
            if as_json {
                output::json(&json!({"deleted": name}));
            } else {
                println!("NAS {name} deleted");
            }
        }
    }
    Ok(())
}

/// `session list --online --live`: asks the running `serve` holding the NAS paths.
async fn live_sessions(
    ctx: &Context,
    ops: &saas_core::platform::TenantOps,
    as_json: bool,
    timeout: u64,
) -> Result<(), Fatal> {
    let ev = ctx
        .platform
        .bus()
        .request(
            Some(ops.tenant().id),
            saas_core::bus::kinds::SESSIONS_LIVE,
            &json!({}),
            saas_core::bus::kinds::SESSIONS_LIVE_RESULT,
            std::time::Duration::from_secs(timeout),
        )
        .await
        .map_err(|e| Fatal::failure(e.to_string()))?;
    let result: serde_json::Value = serde_json::from_str(&ev.payload)
        .map_err(|e| Fatal::failure(format!("bad sessions.live.result: {e}")))?;
    if let Some(e) = result["error"].as_str() {
        return Err(Fatal::failure(e.to_owned()));
    }
    if as_json {
        output::json(&result);
        return Ok(());
    }
    let empty = Vec::new();
    let items = result["items"].as_array().unwrap_or(&empty);
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        v => v.to_string(),
    };
    output::table(
        &[
            "username",
            "acct session",
            "framed ip",
            "in (radius)",
            "out (radius)",
            "router id",
            "uptime",
            "in (router)",
            "out (router)",
        ],
        items
            .iter()
            .map(|i| {
                vec![
                    s(&i["username"]),
                    s(&i["acct_session_id"]),
                    s(&i["framed_ip"]),
                    s(&i["input_octets"]),
                    s(&i["output_octets"]),
                    s(&i["live"]["router_id"]),
                    s(&i["live"]["uptime"]),
                    s(&i["live"]["input_octets"]),
                    s(&i["live"]["output_octets"]),
                ]
            })
            .collect(),
    );
    for e in result["nas_errors"].as_array().unwrap_or(&empty) {
        eprintln!("NAS {}: {}", s(&e["nas"]), s(&e["error"]));
    }
    Ok(())
}
