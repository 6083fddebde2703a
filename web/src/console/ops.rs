//! The operator's platform pages: relay nodes (peers, handshakes, drops by admission stage),
//! the zone's managed DNS records (add, remove) and platform health (store, cache, bus, relays,
//! DNS, certificate, RouterOS polling).

use std::time::Instant;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use saas_core::dns_records::{DEFAULT_TTL, MANAGED_TYPES};
use saas_core::model::{DnsRecord, TenantStatus};
use serde::Deserialize;
use tenant_api::host::ClientIp;
use tenant_api::problem::{Path, Problem};
use tenant_api::roles::CanPlatform;
use uuid::Uuid;

use super::{DoneQ, layout};
use crate::WebState;
use crate::panel::Signed;
use crate::session::Visit;
use crate::view::*;

/// A handshake newer than this counts as recent (WireGuard rekeys every 2 minutes; the relay
/// marks a tunnel down after 3).
const RECENT_HANDSHAKE: ChronoDuration = ChronoDuration::seconds(180);
/// A relay node not heard from for this long is shown as stale (it reports every 10 s).
const RELAY_STALE: ChronoDuration = ChronoDuration::seconds(60);
/// The window of "RouterOS API checked recently".
const ROUTEROS_WINDOW: ChronoDuration = ChronoDuration::minutes(10);

/// The routes of these pages.
pub(super) fn routes(r: Router<WebState>) -> Router<WebState> {
    r.route("/platform", get(health))
        .route("/relays", get(relays))
        .route("/dns", get(dns).post(add_dns))
        .route("/dns/{id}/delete", get(confirm_remove_dns).post(remove_dns))
}

fn current(v: &Visit, title: &str, href: &str) -> Layout {
    let mut l = layout(v, title);
    for n in &mut l.nav {
        n.current = n.href == href;
    }
    l
}

fn ago(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = (now - t).num_seconds().max(0);
            match s {
                0..60 => format!("{s} s ago"),
                60..3600 => format!("{} min ago", s / 60),
                _ => when(t, "UTC"),
            }
        }
    }
}

// ---- relays ----

struct NodeRow {
    name: String,
    endpoint: String,
    last_seen: String,
    stale: bool,
    peers: usize,
    recent: usize,
    stale_peers: usize,
    never: usize,
    connected: String,
    handshakes_ok: String,
    drops: Vec<String>,
}

#[derive(Template)]
#[template(path = "op_relays.html")]
struct RelaysPage {
    l: Layout,
    stages: Vec<String>,
    nodes: Vec<NodeRow>,
    peers: Vec<[String; 6]>,
}

/// Relay nodes with their peers (recent, stale, never handshaken) and what each node last
/// reported: live tunnels, handshakes answered and initiations dropped by admission stage.
async fn relays(State(ws): State<WebState>, v: Visit, _a: Signed<CanPlatform>) -> WebResult {
    let sys = ws.api().store().system();
    let now = Utc::now();
    let registered = sys.relay_nodes().await?;
    let peers = sys.relay_peer_status().await?;
    let mut stages: Vec<String> = Vec::new();
    for n in &registered {
        for k in n.stats.iter().flat_map(|s| s.drops.keys()) {
            if !stages.contains(k) {
                stages.push(k.clone());
            }
        }
    }
    // Peers on a node that never registered still get a row.
    let mut names: Vec<String> = registered.iter().map(|n| n.name.clone()).collect();
    for p in &peers {
        let n = p.relay_node.clone().unwrap_or_else(|| "—".into());
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let nodes = names
        .into_iter()
        .map(|name| {
            let reg = registered.iter().find(|n| n.name == name);
            let mine: Vec<_> = peers
                .iter()
                .filter(|p| p.relay_node.as_deref().unwrap_or("—") == name)
                .collect();
            let recent = mine
                .iter()
                .filter(|p| p.last_handshake.is_some_and(|h| now - h < RECENT_HANDSHAKE))
                .count();
            let never = mine.iter().filter(|p| p.last_handshake.is_none()).count();
            let stats = reg.and_then(|n| n.stats.clone());
            let last_seen = reg.and_then(|n| n.last_seen);
            NodeRow {
                endpoint: reg
                    .and_then(|n| n.endpoint.clone())
                    .unwrap_or_else(|| "—".into()),
                last_seen: ago(last_seen, now),
                stale: last_seen.is_none_or(|t| now - t > RELAY_STALE),
                peers: mine.len(),
                recent,
                stale_peers: mine.len() - recent - never,
                never,
                connected: stats
                    .as_ref()
                    .map(|s| s.peers_connected.to_string())
                    .unwrap_or_else(|| "—".into()),
                handshakes_ok: stats
                    .as_ref()
                    .map(|s| s.handshakes_ok.to_string())
                    .unwrap_or_else(|| "—".into()),
                drops: stages
                    .iter()
                    .map(|k| {
                        stats
                            .as_ref()
                            .and_then(|s| s.drops.get(k))
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "—".into())
                    })
                    .collect(),
                name,
            }
        })
        .collect();
    let peers = peers
        .into_iter()
        .take(500)
        .map(|p| {
            let state = match p.last_handshake {
                None => "never",
                Some(h) if now - h < RECENT_HANDSHAKE => "recent",
                Some(_) => "stale",
            };
            [
                p.tenant,
                p.nas,
                p.tunnel_address,
                p.relay_node.unwrap_or_else(|| "—".into()),
                p.endpoint.unwrap_or_else(|| "not seen".into()),
                format!("{state} ({})", ago(p.last_handshake, now)),
            ]
        })
        .collect();
    Ok(render(&RelaysPage {
        l: current(&v, "Relays", "/relays"),
        stages,
        nodes,
        peers,
    }))
}

// ---- DNS records ----

#[derive(Debug, Default, Deserialize)]
struct DnsForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    rtype: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    ttl: String,
}

#[derive(Template)]
#[template(path = "op_dns.html")]
struct DnsPage {
    l: Layout,
    base: String,
    records: Vec<DnsRecord>,
    error: Option<String>,
    fields: Vec<Field>,
}

async fn dns_page(
    ws: &WebState,
    v: &Visit,
    f: &DnsForm,
    e: &Errors,
    error: Option<String>,
    flash: Option<String>,
) -> WebResult<DnsPage> {
    let mut l = current(v, "DNS records", "/dns");
    l.flash = flash;
    let types = MANAGED_TYPES
        .iter()
        .map(|t| ((*t).to_owned(), (*t).to_owned()))
        .collect();
    Ok(DnsPage {
        l,
        base: ws.api().config().base_domain.clone(),
        records: ws.api().platform().dns_records().await?,
        error,
        fields: vec![
            Field::new("name", "Name", "text")
                .value(&f.name)
                .required()
                .hint("Absolute, e.g. www.<base>.")
                .errors(e),
            Field::new("rtype", "Type", "select")
                .value(if f.rtype.is_empty() {
                    "TXT"
                } else {
                    f.rtype.as_str()
                })
                .options(types)
                .errors(e),
            Field::new("value", "Value", "text")
                .value(&f.value)
                .required()
                .errors(e),
            Field::new("ttl", "TTL (seconds)", "number")
                .value(&f.ttl)
                .hint("Empty = 60.")
                .errors(e),
        ],
    })
}

/// The zone's managed records, with a form to add one (the operator API's functions).
async fn dns(
    State(ws): State<WebState>,
    v: Visit,
    _a: Signed<CanPlatform>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let flash = match q.done.as_deref() {
        Some("added") => Some("Record added; the DNS role serves it within a second.".into()),
        Some("removed") => Some("Record removed.".into()),
        _ => None,
    };
    let page = dns_page(
        &ws,
        &v,
        &DnsForm::default(),
        &Errors::default(),
        None,
        flash,
    )
    .await?;
    Ok(render(&page))
}

async fn add_dns(
    State(ws): State<WebState>,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanPlatform>,
    Form(f): Form<DnsForm>,
) -> WebResult {
    let mut e = Errors::default();
    let ttl = match f.ttl.trim() {
        "" => Some(DEFAULT_TTL),
        t => match t.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                e.add("ttl", "enter a whole number of seconds");
                None
            }
        },
    };
    let mut top = None;
    if e.is_empty() {
        let p = ws.api().platform().with_client_ip(ip.0.to_string());
        match p
            .add_dns_record(&f.name, &f.rtype, f.value.trim(), ttl, &a.0.actor())
            .await
        {
            Ok(_) => return Ok(see_other("/dns?done=added")),
            Err(err) => top = problem_errors(&err.into()).1,
        }
    }
    let page = dns_page(&ws, &v, &f, &e, top, None).await?;
    Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page))
}

async fn dns_record(ws: &WebState, id: &str) -> WebResult<DnsRecord> {
    let id = Uuid::parse_str(id).map_err(|_| Problem::not_found("DNS record not found"))?;
    ws.api()
        .platform()
        .dns_records()
        .await?
        .into_iter()
        .find(|r| r.id.0 == id)
        .ok_or_else(|| Problem::not_found("DNS record not found").into())
}

async fn confirm_remove_dns(
    State(ws): State<WebState>,
    v: Visit,
    _a: Signed<CanPlatform>,
    Path(id): Path<String>,
) -> WebResult {
    let r = dns_record(&ws, &id).await?;
    Ok(render(&ConfirmPage {
        l: current(&v, "Remove DNS record", "/dns"),
        heading: format!("Remove {} {}?", r.name, r.rtype),
        text: format!(
            "The zone stops answering {} {} {:?} within a second.",
            r.name, r.rtype, r.value
        ),
        action: format!("/dns/{}/delete", r.id.0),
        button: "Remove record",
        cancel: "/dns".into(),
    }))
}

async fn remove_dns(
    State(ws): State<WebState>,
    ip: ClientIp,
    a: Signed<CanPlatform>,
    Path(id): Path<String>,
) -> WebResult {
    let r = dns_record(&ws, &id).await?;
    // (name, type, value) is unique, so this removes just this record.
    ws.api()
        .platform()
        .with_client_ip(ip.0.to_string())
        .remove_dns_records(&r.name, &r.rtype, Some(&r.value), &a.0.actor())
        .await?;
    Ok(see_other("/dns?done=removed"))
}

// ---- health ----

struct Check {
    what: &'static str,
    ok: bool,
    detail: String,
}

impl Check {
    fn new(what: &'static str, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            what,
            ok,
            detail: detail.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "op_platform.html")]
struct HealthPage {
    l: Layout,
    counts: Vec<(String, String)>,
    checks: Vec<Check>,
}

/// Reachability of a backing service with the round trip of the probe started at `t`.
fn reach<T, E: std::fmt::Display>(
    what: &'static str,
    kind: &str,
    t: Instant,
    r: Result<T, E>,
) -> Check {
    let rtt = t.elapsed().as_secs_f64() * 1000.0;
    match r {
        Ok(_) => Check::new(what, true, format!("{kind} reachable, {rtt:.1} ms")),
        Err(e) => Check::new(what, false, format!("{kind} unreachable: {e}")),
    }
}

/// Platform counts and health: store and cache reachability with their round trip, event-bus
/// lag, relay heartbeats, the zone, the certificate with its ACME state, RouterOS polling.
async fn health(State(ws): State<WebState>, v: Visit, _a: Signed<CanPlatform>) -> WebResult {
    let api = ws.api();
    let now = Utc::now();
    let tenants = api.platform().tenants().await?;
    let mut counts: Vec<(String, String)> = TenantStatus::ALL
        .iter()
        .map(|st| {
            let n = tenants.iter().filter(|t| t.tenant.status == *st).count();
            (format!("tenants {st}"), n.to_string())
        })
        .collect();
    let sum = |f: fn(&saas_core::model::TenantSummary) -> i64| -> String {
        tenants.iter().map(f).sum::<i64>().to_string()
    };
    counts.push(("subscribers".into(), sum(|t| t.subscribers)));
    counts.push(("online sessions".into(), sum(|t| t.online)));
    counts.push(("routers".into(), sum(|t| t.nas)));

    let mut checks = Vec::new();
    let store = api.store();
    let t = Instant::now();
    let r = store.ping().await;
    checks.push(reach("Store", store.backend_name(), t, r));
    let cache = api.cache();
    let t = Instant::now();
    let r = cache.get("pp:health:probe").await;
    checks.push(reach("Cache", cache.kind(), t, r));
    let latest = store.platform().last_event_id().await?;
    let position = api.platform().bus().position();
    let lag = (latest - position).max(0);
    checks.push(Check::new(
        "Event bus",
        lag <= 100,
        format!("latest event {latest}, this node has delivered up to {position} (lag {lag})"),
    ));
    let sys = store.system();
    let nodes = sys.relay_nodes().await?;
    if nodes.is_empty() {
        checks.push(Check::new("Relay nodes", true, "none registered yet"));
    }
    for n in &nodes {
        let fresh = n.last_seen.is_some_and(|t| now - t <= RELAY_STALE);
        checks.push(Check::new(
            "Relay node",
            fresh,
            format!("{}: last seen {}", n.name, ago(n.last_seen, now)),
        ));
    }
    let extra = sys.dns_records().await?.len();
    let live = sys.live_tenants().await?.len();
    let serial = match sys.zone_changed_at().await? {
        Some(t) => format!("serial from the latest change at {}", when(t, "UTC")),
        None => "no change since the event log was pruned".into(),
    };
    checks.push(Check::new(
        "DNS zone",
        true,
        format!("{live} tenant names, {extra} managed records; {serial}"),
    ));
    checks.push(certificate_check(&ws, now).await?);
    let (polled_tenants, polled_nas) = sys.routeros_checked_since(now - ROUTEROS_WINDOW).await?;
    checks.push(Check::new(
        "RouterOS workers",
        true,
        format!(
            "{polled_nas} routers of {polled_tenants} tenants checked in the last {} minutes",
            ROUTEROS_WINDOW.num_minutes()
        ),
    ));
    Ok(render(&HealthPage {
        l: current(&v, "Platform health", "/platform"),
        counts,
        checks,
    }))
}

/// The zone's certificate: expiry, last ACME error, and which node holds the renewal lease.
async fn certificate_check(ws: &WebState, now: DateTime<Utc>) -> WebResult<Check> {
    let base = ws.api().config().base_domain.clone();
    let p = ws.api().store().platform();
    // The lease name of `saas_core::acme::AcmeSettings::lease_name`.
    let holder = p.lease_holder(&format!("acme:{base}")).await?;
    let renewing = holder
        .map(|h| format!("; renewal lease held by {h}"))
        .unwrap_or_default();
    Ok(match p.certificate(&base).await? {
        None => Check::new(
            "Certificate",
            true,
            format!("none for {base} (ACME off, or not issued yet){renewing}"),
        ),
        Some(c) => {
            let expiry = match c.not_after {
                Some(t) => format!(
                    "expires {} (in {} days)",
                    when(t, "UTC"),
                    (t - now).num_days()
                ),
                None => "not issued yet".into(),
            };
            let err = c
                .last_error
                .as_deref()
                .map(|e| format!("; last ACME attempt failed: {e}"))
                .unwrap_or_default();
            let ok = c.last_error.is_none()
                && c.not_after
                    .is_some_and(|t| t - now > ChronoDuration::days(7));
            Check::new(
                "Certificate",
                ok,
                format!("{}: {expiry}{err}{renewing}", c.names.join(", ")),
            )
        }
    })
}
