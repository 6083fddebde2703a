//! The tenant panel on `SLUG.<base>`: sign-in, dashboard, subscribers, plans, routers,
//! sessions, auth log, audit log, users, settings. Every handler reads the tenant from the host
//! (never from the session or the URL) and names the permission it needs ([`Signed`]).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use askama::Template;
use axum::Router;
use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{Duration as ChronoDuration, Utc};
use saas_core::bus::kinds;
use saas_core::ids::*;
use saas_core::model::*;
use saas_core::platform::{DisconnectAnswer, TenantOps};
use saas_core::store::SubscriberQuery;
use serde::Deserialize;
use serde_json::json;
use tenant_api::auth::Principal;
use tenant_api::host::{ClientIp, TenantHost};
use tenant_api::limit;
use tenant_api::problem::{Path, Problem};
use tenant_api::roles::{CanRead, CanSettings, CanSubscribers, CanUsers, Permission, allows};
use uuid::Uuid;

use crate::WebState;
use crate::charts;
use crate::session::{self, Visit};
use crate::view::*;

/// Routes of a tenant host.
pub fn router(ws: &WebState) -> Router<WebState> {
    let guarded = Router::new()
        .route("/login", get(login_form).post(login))
        .route_layer(from_fn_with_state(
            (ws.api().clone(), "login"),
            limit::guard,
        ));
    Router::new()
        .merge(guarded)
        .route("/logout", post(logout))
        .route("/act-as", get(act_as))
        .route("/", get(dashboard))
        .route("/subscribers", get(subscribers).post(create_subscriber))
        .route("/subscribers/new", get(new_subscriber))
        .route("/subscribers/bulk", post(bulk_subscribers))
        .route("/subscribers/{id}", get(subscriber).post(update_subscriber))
        .route("/subscribers/{id}/edit", get(edit_subscriber))
        .route("/subscribers/{id}/status", post(set_subscriber_status))
        .route("/subscribers/{id}/renew", post(renew_subscriber))
        .route("/subscribers/{id}/disconnect", post(disconnect_subscriber))
        .route(
            "/subscribers/{id}/delete",
            get(confirm_delete_subscriber).post(delete_subscriber),
        )
        .route("/plans", get(plans).post(create_plan))
        .route("/plans/new", get(new_plan))
        .route("/plans/{id}", post(update_plan))
        .route("/plans/{id}/edit", get(edit_plan))
        .route(
            "/plans/{id}/delete",
            get(confirm_delete_plan).post(delete_plan),
        )
        .route("/routers", get(routers).post(create_router))
        .route("/routers/new", get(new_router))
        .route("/routers/{id}", get(router_page_detail))
        .route("/routers/{id}/checklist", get(router_checklist))
        .route(
            "/routers/{id}/script",
            get(confirm_router_script).post(router_script),
        )
        .route(
            "/routers/{id}/delete",
            get(confirm_delete_router).post(delete_router),
        )
        .route("/sessions", get(sessions))
        .route("/sessions/{id}/disconnect", post(disconnect))
        .route("/auth-log", get(auth_log))
        .route("/audit", get(audit))
        .route("/users", get(users).post(create_user))
        .route("/users/{id}", post(change_user))
        .route("/api-tokens", post(create_token))
        .route("/api-tokens/{id}/revoke", post(revoke_token))
        .route("/settings", get(settings).post(save_settings))
}

// ---- access ----

/// Extractor: a signed-in user of this tenant allowed `P` (else the sign-in page, or 403).
pub struct Signed<P: Permission>(pub Principal, PhantomData<P>);

impl<S: Send + Sync, P: Permission> FromRequestParts<S> for Signed<P> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Self::Rejection> {
        let v = Visit::from_request_parts(parts, s).await?;
        let Some(p) = v.principal else {
            let next = parts
                .uri
                .path_and_query()
                .map(|x| x.as_str().to_owned())
                .unwrap_or_else(|| "/".into());
            return Err(WebError::SignIn(next));
        };
        if !allows(p.role, P::PERM) {
            return Err(Problem::forbidden(format!(
                "your role ({}) may not do this; ask the account's owner or an admin",
                p.role.as_str()
            ))
            .into());
        }
        Ok(Signed(p, PhantomData))
    }
}

const SECTIONS: [(&str, &str); 9] = [
    ("/", "Dashboard"),
    ("/subscribers", "Subscribers"),
    ("/plans", "Plans"),
    ("/routers", "Routers"),
    ("/sessions", "Sessions"),
    ("/auth-log", "Auth log"),
    ("/audit", "Audit"),
    ("/users", "Users"),
    ("/settings", "Settings"),
];

fn layout(t: &Tenant, v: &Visit, title: impl Into<String>, section: &str) -> Layout {
    let mut l = Layout::bare(title, t.name.clone(), &v.csrf);
    if let Some(p) = &v.principal {
        l.user = Some(format!("{} ({})", p.name, p.role.as_str()));
        l.nav = SECTIONS
            .iter()
            .map(|(href, label)| Nav {
                href,
                label,
                current: *href == section,
            })
            .collect();
    }
    l
}

fn flash(done: Option<&str>) -> Option<String> {
    let m = match done? {
        "created" => "Created.",
        "saved" => "Saved.",
        "deleted" => "Deleted.",
        "enabled" => "Enabled.",
        "disabled" => "Disabled; its online sessions are being disconnected.",
        "disconnect" => "Disconnect requested; the router answers within seconds.",
        "renewed" => "Renewed: the expiry moved by the plan's validity.",
        "bulk" => "Done for each selected subscriber; every change is in the audit log.",
        "offline" => "This subscriber has no online session.",
        "revoked" => "Revoked; the token no longer works.",
        _ => return None,
    };
    Some(m.to_owned())
}

fn ops(ws: &WebState, t: &TenantHost, p: &Principal, ip: ClientIp) -> TenantOps {
    ws.api()
        .platform()
        .ops_for((*t.0).clone(), p.actor())
        .with_client_ip(ip.0.to_string())
}

// ---- sign-in ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    heading: String,
    error: Option<String>,
    next: String,
    fields: Vec<Field>,
    enrol: Option<Enrol>,
}

/// Operator TOTP enrolment shown on the sign-in page.
pub struct Enrol {
    /// QR code (SVG markup generated here, no user text in it).
    pub qr_svg: String,
    /// The secret in base32, for typing in.
    pub secret: String,
    /// Ticket that proves the password was right.
    pub ticket: String,
}

#[derive(Debug, Default, Deserialize)]
struct NextQ {
    next: Option<String>,
}

fn login_page(t: &Tenant, v: &Visit, email: &str, next: &str, error: Option<String>) -> LoginPage {
    LoginPage {
        l: layout(t, v, "Sign in", ""),
        heading: format!("Sign in to {}", t.name),
        error,
        next: next.to_owned(),
        fields: vec![
            Field::new("email", "E-mail", "email")
                .value(email)
                .required()
                .auto("username"),
            Field::new("password", "Password", "password")
                .required()
                .auto("current-password"),
        ],
        enrol: None,
    }
}

async fn login_form(t: TenantHost, v: Visit, Query(q): Query<NextQ>) -> Response {
    if v.principal.is_some() {
        return see_other(&safe_next(q.next.as_deref()));
    }
    render(&login_page(
        &t.0,
        &v,
        "",
        &safe_next(q.next.as_deref()),
        None,
    ))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn login(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    Form(f): Form<LoginForm>,
) -> WebResult {
    let next = safe_next(f.next.as_deref());
    let user =
        match tenant_api::tenant::verify_user(ws.api(), &t.0, f.email.trim(), f.password).await {
            Ok(u) => u,
            Err(p) if p.status == StatusCode::UNAUTHORIZED => {
                // 401 so the API's limiter counts the failure.
                let page = login_page(
                    &t.0,
                    &v,
                    f.email.trim(),
                    &next,
                    Some("Wrong e-mail or password.".into()),
                );
                return Ok(render_status(StatusCode::UNAUTHORIZED, &page));
            }
            Err(p) => return Err(p.into()),
        };
    let api = ws.api();
    let scope = api.store().tenant(t.0.id);
    let ttl = ws.config().session_ttl;
    let fam = Uuid::new_v4();
    // The family's token is never handed out: the cookie's JWT names the family instead.
    let unused = tenant_api::auth::new_refresh_token(fam);
    let expires = Utc::now() + ChronoDuration::seconds(ttl.as_secs() as i64);
    scope
        .create_refresh_family(
            fam,
            user.id,
            &tenant_api::auth::sha256_hex(&unused),
            expires,
        )
        .await?;
    scope
        .audit_from(
            &format!("user:{}", user.email),
            "auth.login",
            Some(user.email.as_str()),
            Some("web panel"),
            Some(&ip.0.to_string()),
        )
        .await?;
    let jwt = session::sign(
        api.tenant_keys(),
        user.id.0,
        Some(t.0.id),
        tenant_api::roles::ApiRole::from_user(user.role),
        user.email.as_str(),
        fam,
        ttl,
    )?;
    let mut r = see_other(&next);
    if let Ok(v) = HeaderValue::from_str(&session::session_cookie(&jwt, ttl)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

async fn logout(State(ws): State<WebState>, v: Visit) -> WebResult {
    if let Some(p) = &v.principal {
        tenant_api::tenant::revoke_session(ws.api(), p).await?;
    }
    let mut r = see_other("/login");
    if let Ok(v) = HeaderValue::from_str(&session::clear_session_cookie()) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

#[derive(Debug, Deserialize)]
struct TicketQ {
    ticket: String,
}

/// The operator's one-time act-as link: a short session (the API's act-as lifetime) whose
/// cookie names no refresh family; logout revokes its token id.
async fn act_as(State(ws): State<WebState>, t: TenantHost, Query(q): Query<TicketQ>) -> WebResult {
    let api = ws.api();
    let key = format!("pp:web:actas:{}", q.ticket);
    let grant = api.cache().get(&key).await.ok().flatten();
    let _ = api.cache().delete(&key).await;
    let grant: Option<serde_json::Value> = grant.and_then(|b| serde_json::from_slice(&b).ok());
    let Some(g) = grant.filter(|g| g["tenant"].as_str() == Some(t.0.id.0.to_string().as_str()))
    else {
        return Err(Problem::unauthorized(
            "this act-as link is used, expired or for another account; ask for a new one in the operator console",
        )
        .into());
    };
    let op = g["operator"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| Problem::internal(&"act-as grant without operator"))?;
    let email = g["email"].as_str().unwrap_or("operator");
    let ttl = tenant_api::auth::ACT_AS_TTL;
    let c = tenant_api::auth::claims(
        op,
        tenant_api::auth::TokenType::Panel,
        Some(t.0.id),
        tenant_api::roles::ApiRole::Operator,
        email,
        None,
        ttl,
    );
    let jwt = api.tenant_keys().sign(&c)?;
    let mut r = see_other("/");
    if let Ok(v) = HeaderValue::from_str(&session::session_cookie(&jwt, ttl)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

// ---- dashboard ----

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    l: Layout,
    online: usize,
    accepts: usize,
    rejects: usize,
    subscribers: i64,
    nas: Vec<NasRow>,
    top: Vec<(String, String, String)>,
    online_chart: String,
    auth_chart: String,
    traffic_chart: String,
}

struct NasRow {
    id: String,
    name: String,
    reach: String,
    tunnel: String,
    radius: String,
    api: String,
}

async fn dashboard(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanRead>,
) -> WebResult {
    let scope = ws.api().store().tenant(t.0.id);
    let now = Utc::now();
    let day_ago = now - ChronoDuration::hours(24);
    let hour_ago = now - ChronoDuration::hours(1);
    let sessions = scope.sessions_since(day_ago, 20_000).await?;
    let auths = scope.auth_outcomes_since(day_ago, 100_000).await?;
    let online = sessions.iter().filter(|s| s.stopped_at.is_none()).count();
    let recent = auths.iter().filter(|(at, _)| *at >= hour_ago);
    let (mut accepts, mut rejects) = (0, 0);
    for (_, o) in recent {
        if o == "accept" {
            accepts += 1;
        } else {
            rejects += 1;
        }
    }
    let tz = &t.0.timezone;
    let nas = scope
        .nas_list()
        .await?
        .into_iter()
        .map(|n| nas_row(&n, tz))
        .collect();
    // What the counters rose by in the last 24 hours (not the sessions' lifetime totals).
    let hours = scope
        .usage_hourly(charts::hour_start(now) - ChronoDuration::hours(23))
        .await?;
    let mut traffic: BTreeMap<&str, i64> = BTreeMap::new();
    for u in &hours {
        *traffic.entry(u.username.as_str()).or_default() += u.input_octets + u.output_octets;
    }
    let mut top: Vec<(&str, i64)> = traffic.into_iter().collect();
    top.sort_by_key(|x| std::cmp::Reverse(x.1));
    let top = top
        .into_iter()
        .take(5)
        .map(|(u, b)| (u.to_owned(), pct(u), bytes(b)))
        .collect();
    let slots: Vec<_> = hours
        .iter()
        .map(|u| (u.hour, u.output_octets, u.input_octets))
        .collect();
    let traffic_chart = charts::hourly_traffic(&slots, now, tz);
    let (online_chart, auth_chart) = charts::day_charts(&sessions, &auths, now, tz);
    let page = Dashboard {
        l: layout(&t.0, &v, "Dashboard", "/"),
        online,
        accepts,
        rejects,
        subscribers: scope.subscriber_count().await?,
        nas,
        top,
        online_chart,
        auth_chart,
        traffic_chart,
    };
    Ok(render(&page))
}

fn ago(t: Option<chrono::DateTime<Utc>>, tz: &str) -> String {
    t.map(|t| when(t, tz)).unwrap_or_else(|| "never".into())
}

fn nas_row(n: &Nas, tz: &str) -> NasRow {
    NasRow {
        id: n.id.0.to_string(),
        name: n.name.clone(),
        reach: match n.reach {
            NasReach::Tunnel => "WireGuard tunnel".into(),
            _ => {
                n.ip.map(|i| i.to_string())
                    .unwrap_or_else(|| "direct".into())
            }
        },
        tunnel: match n.reach {
            NasReach::Tunnel => format!("{}", n.tunnel_state),
            _ => "—".into(),
        },
        radius: ago(n.radius_last_seen, tz),
        api: format!("{}", n.api_state),
    }
}

// ---- subscribers ----

#[derive(Debug, Default, Deserialize)]
struct SubListQ {
    q: Option<String>,
    status: Option<String>,
    plan: Option<String>,
    after: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "subscribers.html")]
struct SubscribersPage {
    l: Layout,
    q: String,
    status: String,
    plan: String,
    plans: Vec<(String, String)>,
    rows: Vec<SubRow>,
    next: Option<String>,
    first: Option<String>,
    can_edit: bool,
}

struct SubRow {
    id: String,
    username: String,
    status: String,
    plan: String,
    expires: String,
}

fn sub_row(s: &Subscriber, tz: &str) -> SubRow {
    SubRow {
        id: s.id.0.to_string(),
        username: s.username.clone(),
        status: s.status.to_string(),
        plan: s.plan.clone().unwrap_or_else(|| "—".into()),
        expires: s
            .expires_at
            .map(|e| when(e, tz))
            .unwrap_or_else(|| "never".into()),
    }
}

async fn plan_options(ws: &WebState, t: &Tenant, none: &str) -> WebResult<Vec<(String, String)>> {
    let mut o = vec![(String::new(), none.to_owned())];
    for p in ws.api().store().tenant(t.id).plans().await? {
        o.push((p.id.0.to_string(), p.name));
    }
    Ok(o)
}

async fn subscribers(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    a: Signed<CanRead>,
    Query(q): Query<SubListQ>,
) -> WebResult {
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<SubscriberStatus>().ok());
    let plan = q
        .plan
        .as_deref()
        .and_then(|p| Uuid::parse_str(p).ok())
        .map(PlanId);
    let sq = SubscriberQuery {
        search: q.q.clone().filter(|s| !s.trim().is_empty()),
        status,
        plan_id: plan,
        after: q.after.clone().filter(|s| !s.is_empty()),
        limit: Some(25),
    };
    let page = ws.api().store().tenant(t.0.id).subscribers(&sq).await?;
    let filters = format!(
        "q={}&status={}&plan={}",
        pct(q.q.as_deref().unwrap_or("")),
        pct(q.status.as_deref().unwrap_or("")),
        pct(q.plan.as_deref().unwrap_or(""))
    );
    let mut l = layout(&t.0, &v, "Subscribers", "/subscribers");
    l.flash = flash(q.done.as_deref());
    let p = SubscribersPage {
        l,
        q: q.q.clone().unwrap_or_default(),
        status: q.status.clone().unwrap_or_default(),
        plan: q.plan.clone().unwrap_or_default(),
        plans: plan_options(&ws, &t.0, "Any plan").await?,
        rows: page
            .items
            .iter()
            .map(|s| sub_row(s, &t.0.timezone))
            .collect(),
        next: page
            .next_cursor
            .map(|c| format!("/subscribers?{filters}&after={}", pct(&c))),
        first: q
            .after
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|_| format!("/subscribers?{filters}")),
        can_edit: allows(a.0.role, CanSubscribers::PERM),
    };
    Ok(render(&p))
}

/// What the subscriber form sends.
#[derive(Debug, Default, Deserialize)]
struct SubForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    static_ip: String,
    #[serde(default)]
    mac_lock: String,
}

async fn sub_fields(
    ws: &WebState,
    t: &Tenant,
    f: &SubForm,
    e: &Errors,
    editing: bool,
) -> WebResult<Vec<Field>> {
    let mut fields = Vec::new();
    if !editing {
        fields.push(
            Field::new("username", "Username", "text")
                .value(&f.username)
                .required()
                .hint("The PPPoE or hotspot login.")
                .errors(e),
        );
    }
    fields.push(if editing {
        Field::new("password", "New password", "text")
            .hint("Leave empty to keep the current password.")
            .errors(e)
    } else {
        Field::new("password", "Password", "text")
            .value(&f.password)
            .required()
            .hint("The PPPoE or hotspot password.")
            .errors(e)
    });
    fields.push(
        Field::new("plan", "Plan", "select")
            .value(&f.plan)
            .options(plan_options(ws, t, "Default plan").await?)
            .errors(e),
    );
    if editing {
        fields.push(
            Field::new("status", "Status", "select")
                .value(&f.status)
                .options(
                    ["active", "disabled", "expired"]
                        .iter()
                        .map(|s| (s.to_string(), s.to_string()))
                        .collect(),
                )
                .errors(e),
        );
    }
    fields.push(
        Field::new("expires", "Expires", "date")
            .value(&f.expires)
            .hint("End of that day in your timezone; empty = never.")
            .errors(e),
    );
    fields.push(
        Field::new("static_ip", "Static IPv4", "text")
            .value(&f.static_ip)
            .hint("Optional, e.g. 100.64.0.10.")
            .errors(e),
    );
    fields.push(
        Field::new("mac_lock", "MAC lock", "text")
            .value(&f.mac_lock)
            .hint("Optional: only this caller MAC may log in.")
            .errors(e),
    );
    Ok(fields)
}

async fn sub_form_page(
    ws: &WebState,
    t: &Tenant,
    v: &Visit,
    f: &SubForm,
    e: &Errors,
    top: Option<String>,
    edit: Option<&Subscriber>,
) -> WebResult<FormPage> {
    let (heading, action, cancel) = match edit {
        Some(s) => (
            format!("Edit {}", s.username),
            format!("/subscribers/{}", s.id.0),
            format!("/subscribers/{}", s.id.0),
        ),
        None => (
            "New subscriber".to_owned(),
            "/subscribers".to_owned(),
            "/subscribers".to_owned(),
        ),
    };
    Ok(FormPage {
        l: layout(t, v, heading.clone(), "/subscribers"),
        heading,
        error: top,
        action,
        fields: sub_fields(ws, t, f, e, edit.is_some()).await?,
        submit: if edit.is_some() {
            "Save"
        } else {
            "Create subscriber"
        },
        cancel,
    })
}

async fn new_subscriber(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanSubscribers>,
) -> WebResult {
    let p = sub_form_page(
        &ws,
        &t.0,
        &v,
        &SubForm::default(),
        &Errors::default(),
        None,
        None,
    )
    .await?;
    Ok(render(&p))
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn plan_id(f: &SubForm, e: &mut Errors) -> Option<PlanId> {
    let p = f.plan.trim();
    if p.is_empty() {
        return None;
    }
    match Uuid::parse_str(p) {
        Ok(u) => Some(PlanId(u)),
        Err(_) => {
            e.add("plan", "choose a plan from the list");
            None
        }
    }
}

fn expiry(o: &TenantOps, f: &SubForm, e: &mut Errors) -> Option<chrono::DateTime<Utc>> {
    let s = f.expires.trim();
    if s.is_empty() {
        return None;
    }
    match o.parse_date(s) {
        Ok(d) => Some(d),
        Err(err) => {
            e.add("expires", err.to_string());
            None
        }
    }
}

/// Puts a store message on the field it is about, when it names one.
fn field_of_message(msg: &str) -> Option<&'static str> {
    let m = msg.to_ascii_lowercase();
    [
        ("username", "username"),
        ("already exists", "username"),
        ("password", "password"),
        ("static", "static_ip"),
        ("ip", "static_ip"),
        ("mac", "mac_lock"),
        ("plan", "plan"),
    ]
    .iter()
    .find(|(k, _)| m.contains(k))
    .map(|(_, f)| *f)
}

fn place(p: Problem, e: &mut Errors) -> Option<String> {
    let (pe, top) = problem_errors(&p);
    if !pe.is_empty() {
        e.0.extend(pe.0);
        return None;
    }
    let msg = top.unwrap_or_default();
    match field_of_message(&msg) {
        Some(f) if p.status != StatusCode::INTERNAL_SERVER_ERROR => {
            e.add(f, msg);
            None
        }
        _ => Some(msg),
    }
}

async fn create_subscriber(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanSubscribers>,
    Form(f): Form<SubForm>,
) -> WebResult {
    let o = ops(&ws, &t, &a.0, ip);
    let mut e = Errors::default();
    if f.username.trim().is_empty() {
        e.add("username", "enter a username");
    }
    if f.password.is_empty() {
        e.add("password", "enter a password");
    }
    let plan = plan_id(&f, &mut e);
    let expires_at = expiry(&o, &f, &mut e);
    let mut top = None;
    if e.is_empty() {
        let plan_name = match plan {
            Some(id) => match ws.api().store().tenant(t.0.id).plan(id).await? {
                Some(p) => Some(p.name),
                None => {
                    e.add("plan", "no such plan in this account");
                    None
                }
            },
            None => None,
        };
        if e.is_empty() {
            let new = NewSubscriber {
                username: f.username.trim().to_owned(),
                password: f.password.clone(),
                plan_id: None,
                expires_at,
                static_ip: opt(&f.static_ip),
                framed_ipv6_prefix: None,
                delegated_ipv6_prefix: None,
                mac_lock: opt(&f.mac_lock),
                sim_use: None,
            };
            match o.add_subscriber(new, plan_name.as_deref()).await {
                Ok(s) => return Ok(see_other(&format!("/subscribers/{}?done=created", s.id.0))),
                Err(err) => top = place(err.into(), &mut e),
            }
        }
    }
    let p = sub_form_page(&ws, &t.0, &v, &f, &e, top, None).await?;
    Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &p))
}

async fn find_sub(ws: &WebState, t: &Tenant, id: Uuid) -> WebResult<Subscriber> {
    ws.api()
        .store()
        .tenant(t.id)
        .subscriber(SubscriberId(id))
        .await?
        .ok_or_else(|| Problem::not_found("there is no such subscriber in this account").into())
}

#[derive(Debug, Default, Deserialize)]
struct DoneQ {
    done: Option<String>,
    all: Option<String>,
}

#[derive(Template)]
#[template(path = "subscriber.html")]
struct SubscriberPage {
    l: Layout,
    s: SubRow,
    static_ip: String,
    mac_lock: String,
    created: String,
    usage_in: String,
    usage_out: String,
    active: bool,
    can_edit: bool,
    online: bool,
    usage_chart: String,
    sessions: Vec<SessRow>,
    auth: Vec<AuthRow>,
}

/// The last 30 days of a subscriber's traffic, with the API's daily buckets.
async fn usage_chart(
    scope: &saas_core::TenantScope,
    s: &Subscriber,
    tz: &str,
) -> WebResult<String> {
    use tenant_api::usage::{Period, buckets, fill};
    let z: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
    let spans =
        buckets(Period::Daily, Some(30), z, Utc::now()).map_err(|m| Problem::internal(&m))?;
    let Some(first) = spans.first().map(|b| b.0) else {
        return Ok(String::new());
    };
    let rows = scope.session_usage(&s.username, first).await?;
    Ok(charts::daily_usage(&fill(&spans, &rows, z, Period::Daily)))
}

async fn subscriber(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    a: Signed<CanRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let s = find_sub(&ws, &t.0, id).await?;
    let scope = ws.api().store().tenant(t.0.id);
    let tz = &t.0.timezone;
    let (i, o) = scope.usage_since(&s.username, s.usage_reset_at).await?;
    let nas = nas_names(&ws, &t.0).await?;
    let sessions: Vec<SessRow> = scope
        .sessions_since(Utc::now() - ChronoDuration::days(30), 2000)
        .await?
        .into_iter()
        .filter(|x| x.username == s.username)
        .take(20)
        .map(|x| sess_row(&x, &nas, tz))
        .collect();
    let auth = scope
        .auth_log(1000)
        .await?
        .into_iter()
        .filter(|x| x.username == s.username)
        .take(20)
        .map(|x| auth_row(&x, &nas, tz))
        .collect();
    let mut l = layout(&t.0, &v, s.username.clone(), "/subscribers");
    l.flash = flash(q.done.as_deref());
    let page = SubscriberPage {
        l,
        static_ip: s.static_ip.clone().unwrap_or_else(|| "—".into()),
        mac_lock: s.mac_lock.clone().unwrap_or_else(|| "—".into()),
        created: when(s.created_at, tz),
        usage_in: bytes(i),
        usage_out: bytes(o),
        active: s.status == SubscriberStatus::Active,
        can_edit: allows(a.0.role, CanSubscribers::PERM),
        online: sessions.iter().any(|x| x.online),
        usage_chart: usage_chart(&scope, &s, tz).await?,
        s: sub_row(&s, tz),
        sessions,
        auth,
    };
    Ok(render(&page))
}

fn form_of(s: &Subscriber, tz: &str) -> SubForm {
    SubForm {
        username: s.username.clone(),
        password: String::new(),
        plan: s.plan_id.map(|p| p.0.to_string()).unwrap_or_default(),
        status: s.status.to_string(),
        expires: s
            .expires_at
            .map(|e| match tz.parse::<chrono_tz::Tz>() {
                Ok(z) => e.with_timezone(&z).format("%Y-%m-%d").to_string(),
                Err(_) => e.format("%Y-%m-%d").to_string(),
            })
            .unwrap_or_default(),
        static_ip: s.static_ip.clone().unwrap_or_default(),
        mac_lock: s.mac_lock.clone().unwrap_or_default(),
    }
}

async fn edit_subscriber(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanSubscribers>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let s = find_sub(&ws, &t.0, id).await?;
    let f = form_of(&s, &t.0.timezone);
    let p = sub_form_page(&ws, &t.0, &v, &f, &Errors::default(), None, Some(&s)).await?;
    Ok(render(&p))
}

async fn update_subscriber(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanSubscribers>,
    Path(id): Path<Uuid>,
    Form(f): Form<SubForm>,
) -> WebResult {
    let s = find_sub(&ws, &t.0, id).await?;
    let o = ops(&ws, &t, &a.0, ip);
    let mut e = Errors::default();
    let plan = plan_id(&f, &mut e);
    let expires_at = expiry(&o, &f, &mut e);
    let status = match f.status.parse::<SubscriberStatus>() {
        Ok(st) => Some(st),
        Err(_) => {
            e.add("status", "choose a status from the list");
            None
        }
    };
    let mut top = None;
    if e.is_empty() {
        let patch = SubscriberPatch {
            password: opt(&f.password),
            status,
            plan_id: Some(plan),
            expires_at: Some(expires_at),
            static_ip: Some(opt(&f.static_ip)),
            framed_ipv6_prefix: None,
            delegated_ipv6_prefix: None,
            mac_lock: Some(opt(&f.mac_lock)),
            sim_use: None,
        };
        match o.update_subscriber(&s.username, &patch).await {
            Ok(_) => return Ok(see_other(&format!("/subscribers/{id}?done=saved"))),
            Err(err) => top = place(err.into(), &mut e),
        }
    }
    let mut f = f;
    f.username = s.username.clone();
    let p = sub_form_page(&ws, &t.0, &v, &f, &e, top, Some(&s)).await?;
    Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &p))
}

#[derive(Debug, Deserialize)]
struct StatusForm {
    status: String,
}

/// The patch of the Enable/Disable buttons, and the flash that confirms it.
fn status_patch(status: &str) -> WebResult<(SubscriberPatch, &'static str)> {
    let (status, done) = match status {
        "active" => (SubscriberStatus::Active, "enabled"),
        "disabled" => (SubscriberStatus::Disabled, "disabled"),
        _ => return Err(Problem::bad_request("status must be active or disabled").into()),
    };
    let patch = SubscriberPatch {
        status: Some(status),
        ..Default::default()
    };
    Ok((patch, done))
}

async fn set_subscriber_status(
    State(ws): State<WebState>,
    t: TenantHost,
    ip: ClientIp,
    a: Signed<CanSubscribers>,
    Path(id): Path<Uuid>,
    Form(f): Form<StatusForm>,
) -> WebResult {
    let s = find_sub(&ws, &t.0, id).await?;
    let (patch, done) = status_patch(&f.status)?;
    ops(&ws, &t, &a.0, ip)
        .update_subscriber(&s.username, &patch)
        .await?;
    Ok(see_other(&format!("/subscribers/{id}?done={done}")))
}

/// A renewal: the expiry moves by the plan's validity (30 days without one), from now or from
/// the current expiry if it is later; an expired subscriber becomes active (as the API's renew).
async fn renew_patch(ws: &WebState, t: &Tenant, s: &Subscriber) -> WebResult<SubscriberPatch> {
    let days = match s.plan_id {
        Some(pid) => ws
            .api()
            .store()
            .tenant(t.id)
            .plan(pid)
            .await?
            .and_then(|p| p.validity_days),
        None => None,
    }
    .unwrap_or(30);
    let now = Utc::now();
    let from = s.expires_at.filter(|e| *e > now).unwrap_or(now);
    Ok(SubscriberPatch {
        expires_at: Some(Some(from + ChronoDuration::days(days))),
        status: (s.status == SubscriberStatus::Expired).then_some(SubscriberStatus::Active),
        ..Default::default()
    })
}

async fn renew_subscriber(
    State(ws): State<WebState>,
    t: TenantHost,
    ip: ClientIp,
    a: Signed<CanSubscribers>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let s = find_sub(&ws, &t.0, id).await?;
    let patch = renew_patch(&ws, &t.0, &s).await?;
    ops(&ws, &t, &a.0, ip)
        .update_subscriber(&s.username, &patch)
        .await?;
    Ok(see_other(&format!("/subscribers/{id}?done=renewed")))
}

async fn confirm_delete_subscriber(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanSubscribers>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let s = find_sub(&ws, &t.0, id).await?;
    Ok(render(&ConfirmPage {
        l: layout(&t.0, &v, format!("Delete {}", s.username), "/subscribers"),
        heading: format!("Delete {}?", s.username),
        text: format!(
            "The subscriber {} is removed with its settings and cannot log in any more. Its session history stays in the logs.",
            s.username
        ),
        action: format!("/subscribers/{id}/delete"),
        button: "Delete subscriber",
        cancel: format!("/subscribers/{id}"),
    }))
}

async fn delete_subscriber(
    State(ws): State<WebState>,
    t: TenantHost,
    ip: ClientIp,
    a: Signed<CanSubscribers>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let s = find_sub(&ws, &t.0, id).await?;
    ops(&ws, &t, &a.0, ip)
        .delete_subscriber(&s.username)
        .await?;
    Ok(see_other("/subscribers?done=deleted"))
}

/// Most subscribers one bulk action may change (a list page shows 25).
const BULK_MAX: usize = 100;

#[derive(Template)]
#[template(path = "bulk_confirm.html")]
struct BulkConfirmPage {
    l: Layout,
    rows: Vec<SubRow>,
}

/// A bulk action on the subscribers ticked in the list: enable, disable, renew, plan (change
/// to `plan`) or delete (after a confirmation page). Each subscriber goes through the same
/// audited command as its single action; every id must belong to this tenant before anything
/// changes.
async fn bulk_subscribers(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanSubscribers>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> WebResult {
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let ids: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.as_str())
        .collect();
    if ids.is_empty() {
        return Err(Problem::bad_request(
            "no subscriber is selected; tick the boxes of the subscribers to change, then apply",
        )
        .into());
    }
    if ids.len() > BULK_MAX {
        return Err(Problem::bad_request(format!(
            "at most {BULK_MAX} subscribers at once; narrow the selection"
        ))
        .into());
    }
    let mut subs = Vec::with_capacity(ids.len());
    for id in ids {
        let id = Uuid::parse_str(id)
            .map_err(|_| Problem::not_found("there is no such subscriber in this account"))?;
        subs.push(find_sub(&ws, &t.0, id).await?);
    }
    let o = ops(&ws, &t, &a.0, ip);
    match field("action") {
        st @ ("active" | "disabled") => {
            let (patch, _) = status_patch(st)?;
            for s in &subs {
                o.update_subscriber(&s.username, &patch).await?;
            }
        }
        "renew" => {
            for s in &subs {
                let patch = renew_patch(&ws, &t.0, s).await?;
                o.update_subscriber(&s.username, &patch).await?;
            }
        }
        "plan" => {
            let id = Uuid::parse_str(field("plan")).map_err(|_| {
                Problem::bad_request("choose the new plan in the list next to the action")
            })?;
            let plan = find_plan(&ws, &t.0, id).await?;
            let patch = SubscriberPatch {
                plan_id: Some(Some(plan.id)),
                ..Default::default()
            };
            for s in &subs {
                o.update_subscriber(&s.username, &patch).await?;
            }
        }
        "delete" if field("confirm") != "yes" => {
            let tz = &t.0.timezone;
            return Ok(render(&BulkConfirmPage {
                l: layout(&t.0, &v, "Delete subscribers", "/subscribers"),
                rows: subs.iter().map(|s| sub_row(s, tz)).collect(),
            }));
        }
        "delete" => {
            for s in &subs {
                o.delete_subscriber(&s.username).await?;
            }
        }
        _ => {
            return Err(Problem::bad_request(
                "choose what to do with the selection: enable, disable, renew, change plan or delete",
            )
            .into());
        }
    }
    Ok(see_other("/subscribers?done=bulk"))
}

// ---- plans ----

#[derive(Template)]
#[template(path = "plans.html")]
struct PlansPage {
    l: Layout,
    rows: Vec<PlanRow>,
    can_edit: bool,
}

struct PlanRow {
    id: String,
    name: String,
    rate: String,
    quota: String,
    validity: String,
    price: String,
    default: bool,
}

async fn plans(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    a: Signed<CanRead>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let rows = ws
        .api()
        .store()
        .tenant(t.0.id)
        .plans()
        .await?
        .into_iter()
        .map(|p| PlanRow {
            rate: format!("{} / {} kbit/s", p.download_kbps, p.upload_kbps),
            quota: match (p.quota_bytes, p.fup_download_kbps) {
                (Some(q), Some(f)) => format!("{} then {f} kbit/s", bytes(q)),
                (Some(q), None) => bytes(q),
                _ => "unlimited".into(),
            },
            validity: p
                .validity_days
                .map(|d| format!("{d} days"))
                .unwrap_or_else(|| "—".into()),
            price: format!("{}.{:02}", p.price_cents / 100, p.price_cents % 100),
            default: p.is_default,
            id: p.id.0.to_string(),
            name: p.name,
        })
        .collect();
    let mut l = layout(&t.0, &v, "Plans", "/plans");
    l.flash = flash(q.done.as_deref());
    Ok(render(&PlansPage {
        l,
        rows,
        can_edit: allows(a.0.role, CanSettings::PERM),
    }))
}

#[derive(Debug, Default, Deserialize)]
struct PlanForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    download_kbps: String,
    #[serde(default)]
    upload_kbps: String,
    #[serde(default)]
    quota_gb: String,
    #[serde(default)]
    fup_download_kbps: String,
    #[serde(default)]
    fup_upload_kbps: String,
    #[serde(default)]
    validity_days: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    ip_pool: String,
    #[serde(default)]
    burst_download_kbps: String,
    #[serde(default)]
    burst_upload_kbps: String,
    #[serde(default)]
    burst_threshold_kbps: String,
    #[serde(default)]
    burst_time_s: String,
    #[serde(default)]
    ipv6_pool: String,
    #[serde(default)]
    delegated_ipv6_pool: String,
    #[serde(default)]
    session_timeout_s: String,
    #[serde(default)]
    sim_use: String,
}

fn plan_page(
    t: &Tenant,
    v: &Visit,
    f: &PlanForm,
    e: &Errors,
    top: Option<String>,
    edit: Option<&Plan>,
) -> FormPage {
    let (heading, action) = match edit {
        Some(p) => (
            format!("Edit plan {}", p.name),
            format!("/plans/{}", p.id.0),
        ),
        None => ("New plan".to_owned(), "/plans".to_owned()),
    };
    FormPage {
        l: layout(t, v, heading.clone(), "/plans"),
        heading,
        error: top,
        action,
        fields: vec![
            Field::new("name", "Name", "text")
                .value(&f.name)
                .required()
                .hint("e.g. 20M")
                .errors(e),
            Field::new("download_kbps", "Download (kbit/s)", "number")
                .value(&f.download_kbps)
                .required()
                .hint("20480 = 20 Mbit/s")
                .errors(e),
            Field::new("upload_kbps", "Upload (kbit/s)", "number")
                .value(&f.upload_kbps)
                .required()
                .errors(e),
            Field::new("quota_gb", "Quota (GB)", "number")
                .value(&f.quota_gb)
                .hint("Empty = unlimited.")
                .errors(e),
            Field::new(
                "fup_download_kbps",
                "After quota: download (kbit/s)",
                "number",
            )
            .value(&f.fup_download_kbps)
            .hint("Empty = reject after the quota.")
            .errors(e),
            Field::new("fup_upload_kbps", "After quota: upload (kbit/s)", "number")
                .value(&f.fup_upload_kbps)
                .errors(e),
            Field::new("validity_days", "Validity (days)", "number")
                .value(&f.validity_days)
                .hint("What a renewal adds.")
                .errors(e),
            Field::new("price", "Price", "text")
                .value(&f.price)
                .hint("e.g. 19.99")
                .errors(e),
            Field::new("ip_pool", "IP pool", "text")
                .value(&f.ip_pool)
                .hint("Router pool name (Framed-Pool); optional.")
                .errors(e),
            Field::new("burst_download_kbps", "Burst download (kbit/s)", "number")
                .value(&f.burst_download_kbps)
                .hint("MikroTik burst; empty = no burst.")
                .errors(e),
            Field::new("burst_upload_kbps", "Burst upload (kbit/s)", "number")
                .value(&f.burst_upload_kbps)
                .errors(e),
            Field::new("burst_threshold_kbps", "Burst threshold (kbit/s)", "number")
                .value(&f.burst_threshold_kbps)
                .hint("Bursting stops above this average rate.")
                .errors(e),
            Field::new("burst_time_s", "Burst time (s)", "number")
                .value(&f.burst_time_s)
                .errors(e),
            Field::new("ipv6_pool", "IPv6 pool", "text")
                .value(&f.ipv6_pool)
                .hint("Framed-IPv6-Pool name; optional.")
                .errors(e),
            Field::new("delegated_ipv6_pool", "Delegated prefix pool", "text")
                .value(&f.delegated_ipv6_pool)
                .hint("Delegated-IPv6-Prefix-Pool name (DHCPv6-PD); optional.")
                .errors(e),
            Field::new("session_timeout_s", "Session timeout (s)", "number")
                .value(&f.session_timeout_s)
                .hint("Session-Timeout; empty = none.")
                .errors(e),
            Field::new("sim_use", "Simultaneous sessions", "number")
                .value(&f.sim_use)
                .hint("How many sessions one login may hold; empty = 1.")
                .errors(e),
        ],
        submit: if edit.is_some() {
            "Save plan"
        } else {
            "Create plan"
        },
        cancel: "/plans".into(),
    }
}

async fn new_plan(t: TenantHost, v: Visit, _a: Signed<CanSettings>) -> WebResult {
    Ok(render(&plan_page(
        &t.0,
        &v,
        &PlanForm::default(),
        &Errors::default(),
        None,
        None,
    )))
}

fn num(e: &mut Errors, field: &str, s: &str, required: bool) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        if required {
            e.add(field, "enter a number");
        }
        return None;
    }
    match s.parse::<i64>() {
        Ok(n) if n >= 0 => Some(n),
        _ => {
            e.add(field, "enter a whole number, 0 or more");
            None
        }
    }
}

fn price_cents(e: &mut Errors, s: &str) -> i64 {
    let s = s.trim();
    if s.is_empty() {
        return 0;
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let ok = !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && frac.len() <= 2
        && frac.chars().all(|c| c.is_ascii_digit());
    if !ok {
        e.add("price", "enter an amount like 19.99");
        return 0;
    }
    let w: i64 = whole.parse().unwrap_or(0);
    let f: i64 = format!("{frac:0<2}").parse().unwrap_or(0);
    w.saturating_mul(100).saturating_add(f)
}

/// The plan a form describes.
fn parse_plan(f: &PlanForm, e: &mut Errors) -> NewPlan {
    if f.name.trim().is_empty() {
        e.add("name", "enter a name");
    }
    let down = num(e, "download_kbps", &f.download_kbps, true);
    let up = num(e, "upload_kbps", &f.upload_kbps, true);
    let quota = num(e, "quota_gb", &f.quota_gb, false);
    let price = price_cents(e, &f.price);
    NewPlan {
        name: f.name.trim().to_owned(),
        download_kbps: down.unwrap_or(0),
        upload_kbps: up.unwrap_or(0),
        burst_download_kbps: num(e, "burst_download_kbps", &f.burst_download_kbps, false),
        burst_upload_kbps: num(e, "burst_upload_kbps", &f.burst_upload_kbps, false),
        burst_threshold_kbps: num(e, "burst_threshold_kbps", &f.burst_threshold_kbps, false),
        burst_time_s: num(e, "burst_time_s", &f.burst_time_s, false),
        quota_bytes: quota.map(|g| g.saturating_mul(1_000_000_000)),
        fup_download_kbps: num(e, "fup_download_kbps", &f.fup_download_kbps, false),
        fup_upload_kbps: num(e, "fup_upload_kbps", &f.fup_upload_kbps, false),
        validity_days: num(e, "validity_days", &f.validity_days, false),
        price_cents: price,
        ip_pool: opt(&f.ip_pool),
        ipv6_pool: opt(&f.ipv6_pool),
        delegated_ipv6_pool: opt(&f.delegated_ipv6_pool),
        session_timeout_s: num(e, "session_timeout_s", &f.session_timeout_s, false),
        sim_use: num(e, "sim_use", &f.sim_use, false),
    }
}

fn plan_problem(p: Problem, e: &mut Errors) -> Option<String> {
    let (pe, msg) = problem_errors(&p);
    e.0.extend(pe.0);
    match msg {
        Some(m) if m.contains("already exists") => {
            e.add("name", m);
            None
        }
        m => m,
    }
}

async fn create_plan(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanSettings>,
    Form(f): Form<PlanForm>,
) -> WebResult {
    let mut e = Errors::default();
    let p = parse_plan(&f, &mut e);
    let mut top = None;
    if e.is_empty() {
        match ops(&ws, &t, &a.0, ip).add_plan(&p).await {
            Ok(_) => return Ok(see_other("/plans?done=created")),
            Err(err) => top = plan_problem(err.into(), &mut e),
        }
    }
    let page = plan_page(&t.0, &v, &f, &e, top, None);
    Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page))
}

async fn find_plan(ws: &WebState, t: &Tenant, id: Uuid) -> WebResult<Plan> {
    ws.api()
        .store()
        .tenant(t.id)
        .plan(PlanId(id))
        .await?
        .ok_or_else(|| Problem::not_found("there is no such plan in this account").into())
}

fn opt_num(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

async fn edit_plan(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanSettings>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let p = find_plan(&ws, &t.0, id).await?;
    let f = PlanForm {
        name: p.name.clone(),
        download_kbps: p.download_kbps.to_string(),
        upload_kbps: p.upload_kbps.to_string(),
        quota_gb: opt_num(p.quota_bytes.map(|b| b / 1_000_000_000)),
        fup_download_kbps: opt_num(p.fup_download_kbps),
        fup_upload_kbps: opt_num(p.fup_upload_kbps),
        validity_days: opt_num(p.validity_days),
        price: format!("{}.{:02}", p.price_cents / 100, p.price_cents % 100),
        ip_pool: p.ip_pool.clone().unwrap_or_default(),
        burst_download_kbps: opt_num(p.burst_download_kbps),
        burst_upload_kbps: opt_num(p.burst_upload_kbps),
        burst_threshold_kbps: opt_num(p.burst_threshold_kbps),
        burst_time_s: opt_num(p.burst_time_s),
        ipv6_pool: p.ipv6_pool.clone().unwrap_or_default(),
        delegated_ipv6_pool: p.delegated_ipv6_pool.clone().unwrap_or_default(),
        session_timeout_s: opt_num(p.session_timeout_s),
        sim_use: p.sim_use.to_string(),
    };
    Ok(render(&plan_page(
        &t.0,
        &v,
        &f,
        &Errors::default(),
        None,
        Some(&p),
    )))
}

async fn update_plan(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanSettings>,
    Path(id): Path<Uuid>,
    Form(f): Form<PlanForm>,
) -> WebResult {
    let old = find_plan(&ws, &t.0, id).await?;
    let mut e = Errors::default();
    let p = parse_plan(&f, &mut e);
    let mut top = None;
    if e.is_empty() {
        let o = ops(&ws, &t, &a.0, ip);
        let updated = o.scope().update_plan(old.id, &p).await.and_then(|p| {
            p.ok_or_else(|| saas_core::store::StoreError::NotFound(format!("plan {}", old.id)))
        });
        match updated {
            Ok(plan) => {
                plan_changed(&ws, &o, "plan.update", &plan, json!({"plan": plan.id})).await?;
                return Ok(see_other("/plans?done=saved"));
            }
            Err(err) => top = plan_problem(err.into(), &mut e),
        }
    }
    let page = plan_page(&t.0, &v, &f, &e, top, Some(&old));
    Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page))
}

/// Audits a plan change and announces it: online subscribers of the plan get the new rate at
/// their next authentication; every AAA node drops its cached copy now.
async fn plan_changed(
    ws: &WebState,
    o: &TenantOps,
    action: &str,
    plan: &Plan,
    event: serde_json::Value,
) -> WebResult<()> {
    o.audit(action, &plan.name).await?;
    ws.api()
        .platform()
        .bus()
        .publish(Some(o.tenant().id), kinds::PLAN_CHANGED, &event)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(())
}

async fn confirm_delete_plan(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanSettings>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let p = find_plan(&ws, &t.0, id).await?;
    Ok(render(&ConfirmPage {
        l: layout(&t.0, &v, format!("Delete plan {}", p.name), "/plans"),
        heading: format!("Delete the plan {}?", p.name),
        text: "The plan is removed. A plan that subscribers still use cannot be deleted: move them to another plan first.".into(),
        action: format!("/plans/{id}/delete"),
        button: "Delete plan",
        cancel: "/plans".into(),
    }))
}

async fn delete_plan(
    State(ws): State<WebState>,
    t: TenantHost,
    ip: ClientIp,
    a: Signed<CanSettings>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let p = find_plan(&ws, &t.0, id).await?;
    let o = ops(&ws, &t, &a.0, ip);
    match o.scope().delete_plan(p.id).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(Problem::not_found("there is no such plan in this account").into());
        }
        Err(saas_core::StoreError::Conflict(m)) => {
            // The store's message names the API; here the way out is the subscriber list.
            let why = m.split(';').next().unwrap_or(&m).to_owned();
            return Err(Problem::conflict(format!(
                "{why}; move them to another plan first: on Subscribers filter by this plan, tick them and apply \"Change plan to…\""
            ))
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    plan_changed(
        &ws,
        &o,
        "plan.delete",
        &p,
        json!({"plan": p.id, "deleted": true}),
    )
    .await?;
    Ok(see_other("/plans?done=deleted"))
}

// ---- routers ----

#[derive(Template)]
#[template(path = "routers.html")]
struct RoutersPage {
    l: Layout,
    rows: Vec<NasRow>,
    can_edit: bool,
}

async fn routers(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    a: Signed<CanRead>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let rows = ws
        .api()
        .store()
        .tenant(t.0.id)
        .nas_list()
        .await?
        .iter()
        .map(|n| nas_row(n, &t.0.timezone))
        .collect();
    let mut l = layout(&t.0, &v, "Routers", "/routers");
    l.flash = flash(q.done.as_deref());
    Ok(render(&RoutersPage {
        l,
        rows,
        can_edit: allows(a.0.role, CanSettings::PERM),
    }))
}

#[derive(Debug, Default, Deserialize)]
struct RouterForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    public_key: String,
    #[serde(default)]
    reach: String,
    #[serde(default)]
    ip: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    api_user: String,
    #[serde(default)]
    api_password: String,
}

fn router_page(t: &Tenant, v: &Visit, f: &RouterForm, e: &Errors, top: Option<String>) -> FormPage {
    FormPage {
        l: layout(t, v, "Add a router", "/routers"),
        heading: "Add a router".into(),
        error: top,
        action: "/routers".into(),
        fields: vec![
            Field::new("name", "Name", "text")
                .value(&f.name)
                .required()
                .hint("e.g. core-1; how this router appears in the panel.")
                .errors(e),
            Field::new("reach", "How it reaches us", "select")
                .value(if f.reach.is_empty() { "tunnel" } else { &f.reach })
                .options(vec![
                    (
                        "tunnel".into(),
                        "WireGuard tunnel (behind NAT; we give you a script)".into(),
                    ),
                    (
                        "direct".into(),
                        "Direct: RADIUS from a public IP, no tunnel".into(),
                    ),
                ])
                .errors(e),
            Field::new("public_key", "Router's WireGuard public key", "text")
                .value(&f.public_key)
                .hint(
                    "Tunnel only, optional. Empty = we generate the router's key pair and put it in the script.",
                )
                .errors(e),
            Field::new("ip", "Router's public IP", "text")
                .value(&f.ip)
                .hint("Direct only: the source address of its RADIUS packets.")
                .errors(e),
            Field::new("secret", "RADIUS secret", "text")
                .value(&f.secret)
                .hint("Direct only: the secret configured on the router; empty = we generate one.")
                .errors(e),
            Field::new("api_user", "RouterOS API user", "text")
                .value(&f.api_user)
                .hint("Optional; lets us read sessions and kick them when a CoA fails.")
                .errors(e),
            Field::new("api_password", "RouterOS API password", "password")
                .auto("new-password")
                .errors(e),
        ],
        submit: "Add router and show its script",
        cancel: "/routers".into(),
    }
}

async fn new_router(t: TenantHost, v: Visit, _a: Signed<CanSettings>) -> WebResult {
    Ok(render(&router_page(
        &t.0,
        &v,
        &RouterForm::default(),
        &Errors::default(),
        None,
    )))
}

#[derive(Template)]
#[template(path = "router_script.html")]
struct ScriptPage {
    l: Layout,
    id: String,
    steps: Checklist,
    name: String,
    tunnel_address: String,
    endpoint: String,
    script: String,
    /// Shown again on request (no private key), not in the answer that added the router.
    again: bool,
}

fn no_relay() -> WebError {
    Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "peers-unavailable",
        "Tunnel routers cannot be managed here",
    )
    .detail("this process has no relay settings; run the panel inside `proxpanel serve`")
    .into()
}

/// The one-paste script of a tunnel router (never cached: it holds secrets).
fn script_page(
    t: &Tenant,
    v: &Visit,
    id: NasId,
    steps: Checklist,
    name: String,
    p: &serde_json::Value,
    again: bool,
) -> Response {
    let page = ScriptPage {
        l: layout(t, v, format!("Router {name}"), "/routers"),
        id: id.0.to_string(),
        steps,
        tunnel_address: p["tunnel_address"].as_str().unwrap_or("").into(),
        endpoint: match (
            p["relay_endpoint_host"].as_str(),
            p["relay_endpoint_ip"].as_str(),
        ) {
            (Some(h), _) => format!("{h}:{}", p["relay_endpoint_port"]),
            (None, Some(i)) => format!("{i}:{}", p["relay_endpoint_port"]),
            _ => String::new(),
        },
        script: p["routeros_script"].as_str().unwrap_or("").into(),
        name,
        again,
    };
    let mut r = render(&page);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn create_router(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanSettings>,
    Form(f): Form<RouterForm>,
) -> WebResult {
    let mut e = Errors::default();
    let name = f.name.trim().to_owned();
    if name.is_empty() {
        e.add("name", "enter a name");
    }
    let direct = f.reach == "direct";
    let ip_addr = if direct {
        match f.ip.trim().parse::<std::net::IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                e.add("ip", "enter the router's IPv4 or IPv6 address");
                None
            }
        }
    } else {
        None
    };
    let (api_user, api_password) = (opt(&f.api_user), opt(&f.api_password));
    if api_user.is_some() != api_password.is_some() {
        e.add(
            "api_password",
            "give both the API user and its password, or neither",
        );
    }
    let new = NewNas {
        name: name.clone(),
        vendor: NasVendor::Mikrotik,
        ip: ip_addr,
        secret: opt(&f.secret).unwrap_or_else(|| saas_core::crypto::random_token(18)),
        message_auth: MessageAuthPolicy::Auto,
        coa_port: 3799,
        api_user,
        api_password,
        use_ssl: false,
    };
    let o = ops(&ws, &t, &a.0, ip);
    if direct {
        // A direct NAS needs no tunnel: it is ready once stored.
        if e.is_empty() {
            match o.add_nas(&new).await {
                Ok(nas) => return Ok(see_other(&format!("/routers/{}?done=created", nas.id.0))),
                Err(err) => {
                    let (pe, msg) = problem_errors(&err.into());
                    e.0.extend(pe.0);
                    match msg {
                        Some(m) if m.contains("already exists") => e.add("name", m),
                        Some(m) if m.to_ascii_lowercase().contains("ip") => e.add("ip", m),
                        Some(m) => e.add("name", m),
                        None => {}
                    }
                }
            }
        }
        return Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &router_page(&t.0, &v, &f, &e, None),
        ));
    }
    let peers = ws.api().config().peers.clone().ok_or_else(no_relay)?;
    let mut top = None;
    if e.is_empty() {
        match o.add_nas(&new).await {
            Ok(nas) => {
                let key = opt(&f.public_key);
                match peers.add_peer(&o, &name, key.as_deref()).await {
                    Ok(p) => {
                        let mut r =
                            script_page(&t.0, &v, nas.id, Checklist::default(), name, &p, false);
                        *r.status_mut() = StatusCode::CREATED;
                        return Ok(r);
                    }
                    Err(err) => {
                        // Leave no half-added router behind.
                        let _ = o.delete_nas(&name).await;
                        let (pe, msg) = problem_errors(&err.into());
                        e.0.extend(pe.0);
                        match msg {
                            Some(m) if m.contains("public_key") => e.add("public_key", m),
                            m => top = m,
                        }
                    }
                }
            }
            Err(err) => {
                let (pe, msg) = problem_errors(&err.into());
                e.0.extend(pe.0);
                match msg {
                    Some(m) if m.contains("already exists") => e.add("name", m),
                    m => top = m,
                }
            }
        }
    }
    Ok(render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        &router_page(&t.0, &v, &f, &e, top),
    ))
}

/// The onboarding steps of a router, as far as they have happened.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Checklist {
    /// A WireGuard handshake was seen (or, for a direct NAS, not needed).
    pub handshake: bool,
    /// A RADIUS packet arrived from it (Accounting-On comes first after the script).
    pub radius: bool,
    /// A subscriber was accepted through it.
    pub accept: bool,
}

async fn checklist(ws: &WebState, t: &Tenant, id: Uuid) -> WebResult<(Nas, Checklist)> {
    let scope = ws.api().store().tenant(t.id);
    let nas = scope
        .nas(NasId(id))
        .await?
        .ok_or_else(|| Problem::not_found("there is no such router in this account"))?;
    let accept = scope
        .auth_log(1000)
        .await?
        .iter()
        .any(|x| x.nas_id == Some(nas.id) && x.outcome == "accept");
    let c = Checklist {
        handshake: nas.reach != NasReach::Tunnel || nas.last_handshake_at.is_some(),
        radius: nas.radius_last_seen.is_some(),
        accept,
    };
    Ok((nas, c))
}

/// JSON of the checklist, polled by the router page's script (the page shows the same on
/// reload without it).
async fn router_checklist(
    State(ws): State<WebState>,
    t: TenantHost,
    _a: Signed<CanRead>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let (_, c) = checklist(&ws, &t.0, id).await?;
    Ok(axum::Json(c).into_response())
}

#[derive(Template)]
#[template(path = "router.html")]
struct RouterPage {
    l: Layout,
    id: String,
    steps: Checklist,
    n: NasRow,
    can_edit: bool,
    tunnel: bool,
}

async fn router_page_detail(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    a: Signed<CanRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let (nas, steps) = checklist(&ws, &t.0, id).await?;
    let mut l = layout(&t.0, &v, format!("Router {}", nas.name), "/routers");
    l.flash = flash(q.done.as_deref());
    Ok(render(&RouterPage {
        l,
        id: nas.id.0.to_string(),
        steps,
        n: nas_row(&nas, &t.0.timezone),
        can_edit: allows(a.0.role, CanSettings::PERM),
        tunnel: nas.reach == NasReach::Tunnel,
    }))
}

/// The confirmation before a router action (`what`: `script` or `delete`). The script holds the
/// RADIUS secret and API password, so an owner or admin asks for it explicitly (a POST behind
/// this page) and the showing is audited.
async fn confirm_router(
    ws: &WebState,
    t: &TenantHost,
    v: &Visit,
    id: Uuid,
    what: &str,
) -> WebResult {
    let (nas, _) = checklist(ws, &t.0, id).await?;
    let (heading, text, button) = if what == "script" {
        (
            format!("Show the script of {} again?", nas.name),
            "The script holds the router's RADIUS secret and API password. Showing it is recorded in the audit log with your name.",
            "Show the script",
        )
    } else {
        (
            format!("Delete the router {}?", nas.name),
            "Its tunnel is removed and its RADIUS packets are no longer answered; its sessions leave the lists. Subscribers stay.",
            "Delete router",
        )
    };
    Ok(render(&ConfirmPage {
        l: layout(&t.0, v, heading.clone(), "/routers"),
        heading,
        text: text.into(),
        action: format!("/routers/{id}/{what}"),
        button,
        cancel: format!("/routers/{id}"),
    }))
}

async fn confirm_router_script(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanSettings>,
    Path(id): Path<Uuid>,
) -> WebResult {
    confirm_router(&ws, &t, &v, id, "script").await
}

async fn router_script(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanSettings>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let (nas, steps) = checklist(&ws, &t.0, id).await?;
    if nas.reach != NasReach::Tunnel {
        return Err(Problem::conflict(
            "this router reaches us directly and has no tunnel script; its RADIUS secret is the one you configured",
        )
        .into());
    }
    let peers = ws.api().config().peers.clone().ok_or_else(no_relay)?;
    let o = ops(&ws, &t, &a.0, ip);
    let p = peers.script(&o, &nas.name).await?;
    o.audit("peer.script", &nas.name).await?;
    Ok(script_page(
        &t.0,
        &v,
        nas.id,
        steps,
        nas.name.clone(),
        &p,
        true,
    ))
}

async fn confirm_delete_router(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanSettings>,
    Path(id): Path<Uuid>,
) -> WebResult {
    confirm_router(&ws, &t, &v, id, "delete").await
}

async fn delete_router(
    State(ws): State<WebState>,
    t: TenantHost,
    ip: ClientIp,
    a: Signed<CanSettings>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let (nas, _) = checklist(&ws, &t.0, id).await?;
    // The same command as the API's NAS delete (audited, announced).
    ops(&ws, &t, &a.0, ip).delete_nas(&nas.name).await?;
    Ok(see_other("/routers?done=deleted"))
}

// ---- sessions and logs ----

struct SessRow {
    id: String,
    username: String,
    user_href: String,
    nas: String,
    ip: String,
    caller: String,
    started: String,
    duration: String,
    down: String,
    up: String,
    online: bool,
    cause: String,
}

async fn nas_names(ws: &WebState, t: &Tenant) -> WebResult<BTreeMap<NasId, String>> {
    Ok(ws
        .api()
        .store()
        .tenant(t.id)
        .nas_list()
        .await?
        .into_iter()
        .map(|n| (n.id, n.name))
        .collect())
}

fn duration(s: i64) -> String {
    let s = s.max(0);
    if s >= 86_400 {
        format!("{}d {}h", s / 86_400, s % 86_400 / 3600)
    } else if s >= 3600 {
        format!("{}h {}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m {}s", s / 60, s % 60)
    }
}

fn sess_row(s: &Session, nas: &BTreeMap<NasId, String>, tz: &str) -> SessRow {
    let end = s.stopped_at.unwrap_or_else(Utc::now);
    SessRow {
        id: s.id.0.to_string(),
        user_href: format!("/subscribers?q={}", pct(&s.username)),
        username: s.username.clone(),
        nas: nas.get(&s.nas).cloned().unwrap_or_else(|| "—".into()),
        ip: s.framed_ip.clone().unwrap_or_else(|| "—".into()),
        caller: s.calling_station_id.clone().unwrap_or_else(|| "—".into()),
        started: when(s.started_at, tz),
        duration: duration((end - s.started_at).num_seconds()),
        // Router view: input = from the subscriber (upload), output = to it (download).
        down: bytes(s.output_octets),
        up: bytes(s.input_octets),
        online: s.stopped_at.is_none(),
        cause: s.terminate_cause.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    l: Layout,
    all: bool,
    rows: Vec<SessRow>,
    can_disconnect: bool,
}

async fn sessions(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    a: Signed<CanRead>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let all = q.all.as_deref() == Some("1");
    let nas = nas_names(&ws, &t.0).await?;
    let rows = ws
        .api()
        .store()
        .tenant(t.0.id)
        .sessions(!all, 200)
        .await?
        .iter()
        .map(|s| sess_row(s, &nas, &t.0.timezone))
        .collect();
    let mut l = layout(&t.0, &v, "Sessions", "/sessions");
    l.flash = flash(q.done.as_deref());
    Ok(render(&SessionsPage {
        l,
        all,
        rows,
        can_disconnect: allows(a.0.role, CanSubscribers::PERM),
    }))
}

/// One line of a disconnect's answer.
struct CoaLine {
    session: String,
    outcome: String,
    ok: bool,
    detail: String,
}

#[derive(Template)]
#[template(path = "disconnect.html")]
struct DisconnectPage {
    l: Layout,
    username: String,
    back: String,
    unanswered: bool,
    wait_s: u64,
    lines: Vec<CoaLine>,
}

fn coa_line(acct: &str, r: &saas_core::aaa::coa::CoaResult) -> CoaLine {
    let (outcome, ok) = match r.outcome.as_str() {
        "ack" => (
            "Disconnect-ACK: the router ended the session".to_owned(),
            true,
        ),
        "nak" => (
            match r.error_cause {
                Some(c) => format!("Disconnect-NAK (Error-Cause {c}): the router refused"),
                None => "Disconnect-NAK: the router refused".to_owned(),
            },
            false,
        ),
        "timeout" => ("No answer from the router (timeout)".to_owned(), false),
        "api-kick" => (
            "Ended through the RouterOS API (fallback after the CoA failed)".to_owned(),
            true,
        ),
        "api-gone" => (
            "The RouterOS API shows no such session any more (fallback)".to_owned(),
            true,
        ),
        o => (format!("Not done ({o})"), false),
    };
    CoaLine {
        session: acct.to_owned(),
        outcome,
        ok,
        detail: r.detail.clone(),
    }
}

/// Sends the disconnect through the same audited command as the API and shows what the router
/// answered, per session, or that no answer came in time.
async fn disconnect_and_show(
    ws: &WebState,
    t: &TenantHost,
    v: &Visit,
    o: &TenantOps,
    sess: &Session,
    back: String,
) -> WebResult {
    let wait = ws.config().coa_wait;
    let answer = o.disconnect_session(sess, Some(wait)).await?;
    let (unanswered, lines) = match &answer {
        DisconnectAnswer::Answered(rs) => (false, rs.iter().map(|(a, r)| coa_line(a, r)).collect()),
        _ => (true, Vec::new()),
    };
    Ok(render(&DisconnectPage {
        l: layout(
            &t.0,
            v,
            format!("Disconnect {}", sess.username),
            "/sessions",
        ),
        username: sess.username.clone(),
        back,
        unanswered,
        wait_s: wait.as_secs().max(1),
        lines,
    }))
}

async fn disconnect(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanSubscribers>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let scope = ws.api().store().tenant(t.0.id);
    let sess = scope
        .session(SessionId(id))
        .await?
        .ok_or_else(|| Problem::not_found("there is no such session in this account"))?;
    if sess.stopped_at.is_some() {
        return Ok(see_other("/sessions"));
    }
    let o = ops(&ws, &t, &a.0, ip);
    disconnect_and_show(&ws, &t, &v, &o, &sess, "/sessions".into()).await
}

/// The subscriber page's Disconnect button: ends its online sessions.
async fn disconnect_subscriber(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanSubscribers>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let s = find_sub(&ws, &t.0, id).await?;
    let online = ws
        .api()
        .store()
        .tenant(t.0.id)
        .sessions(true, 1000)
        .await?
        .into_iter()
        .find(|x| x.username == s.username);
    let Some(sess) = online else {
        return Ok(see_other(&format!("/subscribers/{id}?done=offline")));
    };
    let o = ops(&ws, &t, &a.0, ip);
    disconnect_and_show(&ws, &t, &v, &o, &sess, format!("/subscribers/{id}")).await
}

struct AuthRow {
    at: String,
    username: String,
    nas: String,
    method: String,
    outcome: String,
    reason: String,
    caller: String,
}

fn auth_row(x: &AuthLogEntry, nas: &BTreeMap<NasId, String>, tz: &str) -> AuthRow {
    AuthRow {
        at: when(x.at, tz),
        username: x.username.clone(),
        nas: x
            .nas_id
            .and_then(|n| nas.get(&n).cloned())
            .unwrap_or_else(|| "—".into()),
        method: x.method.clone().unwrap_or_default(),
        outcome: x.outcome.clone(),
        reason: x.reason.clone().unwrap_or_default(),
        caller: x.calling_station_id.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "auth_log.html")]
struct AuthLogPage {
    l: Layout,
    rows: Vec<AuthRow>,
}

async fn auth_log(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanRead>,
) -> WebResult {
    let nas = nas_names(&ws, &t.0).await?;
    let rows = ws
        .api()
        .store()
        .tenant(t.0.id)
        .auth_log(200)
        .await?
        .iter()
        .map(|x| auth_row(x, &nas, &t.0.timezone))
        .collect();
    Ok(render(&AuthLogPage {
        l: layout(&t.0, &v, "Auth log", "/auth-log"),
        rows,
    }))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    rows: Vec<[String; 5]>,
}

async fn audit(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanSettings>,
) -> WebResult {
    let rows = ws
        .api()
        .store()
        .tenant(t.0.id)
        .audit_log(200)
        .await?
        .into_iter()
        .map(|x| {
            [
                when(x.at, &t.0.timezone),
                x.actor,
                x.action,
                x.target.unwrap_or_default(),
                x.client_ip.unwrap_or_default(),
            ]
        })
        .collect();
    Ok(render(&AuditPage {
        l: layout(&t.0, &v, "Audit log", "/audit"),
        rows,
    }))
}

// ---- users and settings ----

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    l: Layout,
    rows: Vec<UserRow>,
    fields: Vec<Field>,
    error: Option<String>,
    tokens: Vec<TokenRow>,
    token_fields: Vec<Field>,
    created: Option<tenant_api::tenant::ApiTokenCreated>,
}

struct UserRow {
    id: String,
    email: String,
    role: String,
    disabled: bool,
}

struct TokenRow {
    id: String,
    name: String,
    scope: String,
    created: String,
    last_used: String,
    revoked: bool,
}

/// Role choices of the users page (an owner is made by the owner through the API only).
fn role_options() -> Vec<(String, String)> {
    vec![
        (
            "admin".into(),
            "admin — everything but the owner's rights".into(),
        ),
        ("staff".into(), "staff — subscribers and sessions".into()),
        ("viewer".into(), "viewer — read only".into()),
    ]
}

#[derive(Debug, Default, Deserialize)]
struct UserForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

async fn users_page(
    ws: &WebState,
    t: &Tenant,
    v: &Visit,
    f: &UserForm,
    e: &Errors,
    top: Option<String>,
    done: Option<&str>,
) -> WebResult<UsersPage> {
    let scope = ws.api().store().tenant(t.id);
    let rows = scope
        .users()
        .await?
        .into_iter()
        .map(|u| UserRow {
            id: u.id.0.to_string(),
            email: u.email.as_str().to_owned(),
            role: u.role.to_string(),
            disabled: u.disabled,
        })
        .collect();
    let tokens = scope
        .api_tokens()
        .await?
        .into_iter()
        .map(|k| TokenRow {
            id: k.id.to_string(),
            name: k.name,
            scope: k.scope,
            created: format!("{} by {}", when(k.created_at, &t.timezone), k.created_by),
            last_used: ago(k.last_used_at, &t.timezone),
            revoked: k.revoked_at.is_some(),
        })
        .collect();
    let mut l = layout(t, v, "Users", "/users");
    l.flash = flash(done);
    Ok(UsersPage {
        l,
        rows,
        error: top,
        fields: vec![
            Field::new("email", "E-mail", "email")
                .value(&f.email)
                .required()
                .errors(e),
            Field::new("password", "Password", "password")
                .required()
                .auto("new-password")
                .hint("At least 8 characters.")
                .errors(e),
            Field::new("role", "Role", "select")
                .value(if f.role.is_empty() { "staff" } else { &f.role })
                .options(role_options())
                .errors(e),
        ],
        tokens,
        token_fields: vec![
            Field::new("token_name", "Name", "text")
                .required()
                .hint("What uses it, e.g. billing-sync.")
                .errors(e),
            Field::new("scope", "Access", "select")
                .value("read")
                .options(vec![
                    ("read".into(), "read — look only".into()),
                    ("write".into(), "write — also change".into()),
                ])
                .errors(e),
        ],
        created: None,
    })
}

#[derive(Debug, Deserialize)]
struct UserChange {
    role: Option<String>,
    disabled: Option<String>,
}

/// Role change or enable/disable of a panel user, through the API's checks (only an owner
/// touches an owner) and audit.
async fn change_user(
    State(ws): State<WebState>,
    t: TenantHost,
    ip: ClientIp,
    a: Signed<CanUsers>,
    Path(id): Path<Uuid>,
    Form(f): Form<UserChange>,
) -> WebResult {
    let role = match f.role.as_deref() {
        None => None,
        Some("admin") => Some(Role::Admin),
        Some("staff") => Some(Role::Staff),
        Some("viewer") => Some(Role::Viewer),
        Some(_) => return Err(Problem::bad_request("choose admin, staff or viewer").into()),
    };
    let disabled = match f.disabled.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(Problem::bad_request("disabled must be true or false").into()),
    };
    let patch = tenant_api::tenant::PatchUser {
        role,
        disabled,
        password: None,
    };
    let o = ops(&ws, &t, &a.0, ip);
    tenant_api::tenant::change_user(ws.api(), &o, &a.0, id, &patch).await?;
    Ok(see_other("/users?done=saved"))
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    #[serde(default)]
    token_name: String,
    #[serde(default)]
    scope: String,
}

/// Creates an API token and shows its text on this answer only (never cached).
async fn create_token(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanUsers>,
    Form(f): Form<TokenForm>,
) -> WebResult {
    let o = ops(&ws, &t, &a.0, ip);
    let n = tenant_api::tenant::NewApiToken {
        name: f.token_name.clone(),
        scope: f.scope.clone(),
    };
    let (status, created, e) = match tenant_api::tenant::issue_api_token(&o, &n).await {
        Ok(c) => (StatusCode::CREATED, Some(c), Errors::default()),
        Err(p) => {
            let (mut e, top) = problem_errors(&p);
            // The API names the field `name`; the form's is `token_name`.
            for (field, _) in e.0.iter_mut() {
                if field == "name" {
                    *field = "token_name".into();
                }
            }
            if let Some(m) = top {
                e.add("token_name", m);
            }
            (StatusCode::UNPROCESSABLE_ENTITY, None, e)
        }
    };
    let mut page = users_page(&ws, &t.0, &v, &UserForm::default(), &e, None, None).await?;
    page.created = created;
    let mut r = render_status(status, &page);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn revoke_token(
    State(ws): State<WebState>,
    t: TenantHost,
    ip: ClientIp,
    a: Signed<CanUsers>,
    Path(id): Path<Uuid>,
) -> WebResult {
    tenant_api::tenant::revoke_token(&ops(&ws, &t, &a.0, ip), id).await?;
    Ok(see_other("/users?done=revoked"))
}

async fn users(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanUsers>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let p = users_page(
        &ws,
        &t.0,
        &v,
        &UserForm::default(),
        &Errors::default(),
        None,
        q.done.as_deref(),
    )
    .await?;
    Ok(render(&p))
}

async fn create_user(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanUsers>,
    Form(f): Form<UserForm>,
) -> WebResult {
    let mut e = Errors::default();
    let email = match Email::parse(f.email.trim()) {
        Ok(m) => Some(m),
        Err(err) => {
            e.add("email", err.to_string());
            None
        }
    };
    let role = match f.role.as_str() {
        "admin" => Some(Role::Admin),
        "staff" => Some(Role::Staff),
        "viewer" => Some(Role::Viewer),
        _ => {
            e.add("role", "choose admin, staff or viewer");
            None
        }
    };
    let mut top = None;
    if let (Some(email), Some(role), true) = (email, role, e.is_empty()) {
        match ops(&ws, &t, &a.0, ip)
            .add_user(&email, &f.password, role)
            .await
        {
            Ok(_) => return Ok(see_other("/users?done=created")),
            Err(err) => {
                let (pe, msg) = problem_errors(&err.into());
                e.0.extend(pe.0);
                match msg {
                    Some(m) if m.contains("password") => e.add("password", m),
                    Some(m) if m.contains("already exists") => e.add("email", m),
                    m => top = m,
                }
            }
        }
    }
    let p = users_page(&ws, &t.0, &v, &f, &e, top, None).await?;
    Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &p))
}

#[derive(Debug, Default, Deserialize)]
struct SettingsForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    timezone: String,
    /// Id of the default plan; empty leaves it as it is.
    #[serde(default)]
    default_plan: String,
}

async fn settings_page(
    ws: &WebState,
    t: &Tenant,
    v: &Visit,
    f: &SettingsForm,
    e: &Errors,
    done: Option<&str>,
) -> WebResult<FormPage> {
    let mut l = layout(t, v, "Settings", "/settings");
    l.flash = flash(done);
    Ok(FormPage {
        l,
        heading: "Settings".into(),
        error: None,
        action: "/settings".into(),
        fields: vec![
            Field::new("name", "ISP name", "text")
                .value(&f.name)
                .required()
                .errors(e),
            Field::new("timezone", "Timezone", "text")
                .value(&f.timezone)
                .required()
                .hint("IANA name, e.g. Asia/Kolkata; dates in the panel and expiry days use it.")
                .errors(e),
            Field::new("default_plan", "Default plan for new subscribers", "select")
                .value(&f.default_plan)
                .options(plan_options(ws, t, "No plan").await?)
                .hint("A subscriber added without a plan (here, by the API or by import) gets this one.")
                .errors(e),
        ],
        submit: "Save",
        cancel: "/".into(),
    })
}

async fn settings(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanSettings>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let plans = ws.api().store().tenant(t.0.id).plans().await?;
    let f = SettingsForm {
        name: t.0.name.clone(),
        timezone: t.0.timezone.clone(),
        default_plan: plans
            .iter()
            .find(|p| p.is_default)
            .map(|p| p.id.0.to_string())
            .unwrap_or_default(),
    };
    let page = settings_page(&ws, &t.0, &v, &f, &Errors::default(), q.done.as_deref()).await?;
    Ok(render(&page))
}

async fn save_settings(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanSettings>,
    Form(f): Form<SettingsForm>,
) -> WebResult {
    let mut e = Errors::default();
    if f.name.trim().is_empty() {
        e.add("name", "enter a name");
    }
    if let Err(m) = validate_timezone(f.timezone.trim()) {
        e.add("timezone", m);
    }
    // Some(None): an id that is not one of this tenant's plans.
    let plan = match f.default_plan.trim() {
        "" => None,
        id => match Uuid::parse_str(id) {
            Ok(id) => Some(ws.api().store().tenant(t.0.id).plan(PlanId(id)).await?),
            Err(_) => Some(None),
        },
    };
    if matches!(plan, Some(None)) {
        e.add("default_plan", "choose one of the plans in the list");
    }
    if !e.is_empty() {
        let page = settings_page(&ws, &t.0, &v, &f, &e, None).await?;
        return Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let o = ops(&ws, &t, &a.0, ip);
    if let Some(Some(p)) = plan.filter(|p| p.as_ref().is_some_and(|p| !p.is_default)) {
        o.set_default_plan(p.id).await?;
    }
    let tenant = o
        .scope()
        .update_tenant(Some(f.name.trim()), Some(f.timezone.trim()), None)
        .await?;
    o.audit("tenant.settings", tenant.slug.as_str()).await?;
    ws.api()
        .platform()
        .bus()
        .publish(
            Some(tenant.id),
            kinds::TENANT_CHANGED,
            &json!({"tenant": tenant.id, "slug": tenant.slug, "status": tenant.status}),
        )
        .await
        .map_err(|e| Problem::internal(&e))?;
    ws.api().tenants().invalidate(Some(tenant.slug.as_str()));
    Ok(see_other("/settings?done=saved"))
}
