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
use saas_core::platform::TenantOps;
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
        .route("/subscribers/{id}", get(subscriber).post(update_subscriber))
        .route("/subscribers/{id}/edit", get(edit_subscriber))
        .route("/subscribers/{id}/status", post(set_subscriber_status))
        .route("/subscribers/{id}/renew", post(renew_subscriber))
        .route(
            "/subscribers/{id}/delete",
            get(confirm_delete_subscriber).post(delete_subscriber),
        )
        .route("/plans", get(plans).post(create_plan))
        .route("/plans/new", get(new_plan))
        .route("/plans/{id}", post(update_plan))
        .route("/plans/{id}/edit", get(edit_plan))
        .route("/routers", get(routers).post(create_router))
        .route("/routers/new", get(new_router))
        .route("/routers/{id}", get(router_page_detail))
        .route("/routers/{id}/checklist", get(router_checklist))
        .route("/sessions", get(sessions))
        .route("/sessions/{id}/disconnect", post(disconnect))
        .route("/auth-log", get(auth_log))
        .route("/audit", get(audit))
        .route("/users", get(users).post(create_user))
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
    let mut traffic: BTreeMap<String, i64> = BTreeMap::new();
    for s in &sessions {
        *traffic.entry(s.username.clone()).or_default() += s.input_octets + s.output_octets;
    }
    let mut top: Vec<(String, i64)> = traffic.into_iter().collect();
    top.sort_by_key(|x| std::cmp::Reverse(x.1));
    let top = top
        .into_iter()
        .take(5)
        .map(|(u, b)| (u.clone(), pct(&u), bytes(b)))
        .collect();
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
    sessions: Vec<SessRow>,
    auth: Vec<AuthRow>,
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
    let sessions = scope
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

async fn set_subscriber_status(
    State(ws): State<WebState>,
    t: TenantHost,
    ip: ClientIp,
    a: Signed<CanSubscribers>,
    Path(id): Path<Uuid>,
    Form(f): Form<StatusForm>,
) -> WebResult {
    let s = find_sub(&ws, &t.0, id).await?;
    let (status, done) = match f.status.as_str() {
        "active" => (SubscriberStatus::Active, "enabled"),
        "disabled" => (SubscriberStatus::Disabled, "disabled"),
        _ => return Err(Problem::bad_request("status must be active or disabled").into()),
    };
    let patch = SubscriberPatch {
        status: Some(status),
        ..Default::default()
    };
    ops(&ws, &t, &a.0, ip)
        .update_subscriber(&s.username, &patch)
        .await?;
    Ok(see_other(&format!("/subscribers/{id}?done={done}")))
}

/// Extends the expiry by the plan's validity (30 days without one), from now or from the
/// current expiry if it is later; an expired subscriber becomes active (as the API's renew).
async fn renew_subscriber(
    State(ws): State<WebState>,
    t: TenantHost,
    ip: ClientIp,
    a: Signed<CanSubscribers>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let s = find_sub(&ws, &t.0, id).await?;
    let days = match s.plan_id {
        Some(pid) => ws
            .api()
            .store()
            .tenant(t.0.id)
            .plan(pid)
            .await?
            .and_then(|p| p.validity_days),
        None => None,
    }
    .unwrap_or(30);
    let now = Utc::now();
    let from = s.expires_at.filter(|e| *e > now).unwrap_or(now);
    let patch = SubscriberPatch {
        expires_at: Some(Some(from + ChronoDuration::days(days))),
        status: (s.status == SubscriberStatus::Expired).then_some(SubscriberStatus::Active),
        ..Default::default()
    };
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

/// The plan a form describes (`base` keeps what the form does not show: bursts, IPv6 pools,
/// session timeout, simultaneous use).
fn parse_plan(f: &PlanForm, e: &mut Errors, base: Option<&Plan>) -> NewPlan {
    if f.name.trim().is_empty() {
        e.add("name", "enter a name");
    }
    let down = num(e, "download_kbps", &f.download_kbps, true);
    let up = num(e, "upload_kbps", &f.upload_kbps, true);
    let quota = num(e, "quota_gb", &f.quota_gb, false);
    let fup_down = num(e, "fup_download_kbps", &f.fup_download_kbps, false);
    let fup_up = num(e, "fup_upload_kbps", &f.fup_upload_kbps, false);
    let validity = num(e, "validity_days", &f.validity_days, false);
    let price = price_cents(e, &f.price);
    NewPlan {
        name: f.name.trim().to_owned(),
        download_kbps: down.unwrap_or(0),
        upload_kbps: up.unwrap_or(0),
        burst_download_kbps: base.and_then(|b| b.burst_download_kbps),
        burst_upload_kbps: base.and_then(|b| b.burst_upload_kbps),
        burst_threshold_kbps: base.and_then(|b| b.burst_threshold_kbps),
        burst_time_s: base.and_then(|b| b.burst_time_s),
        quota_bytes: quota.map(|g| g.saturating_mul(1_000_000_000)),
        fup_download_kbps: fup_down,
        fup_upload_kbps: fup_up,
        validity_days: validity,
        price_cents: price,
        ip_pool: opt(&f.ip_pool),
        ipv6_pool: base.and_then(|b| b.ipv6_pool.clone()),
        delegated_ipv6_pool: base.and_then(|b| b.delegated_ipv6_pool.clone()),
        session_timeout_s: base.and_then(|b| b.session_timeout_s),
        sim_use: base.map(|b| b.sim_use),
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
    let p = parse_plan(&f, &mut e, None);
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
    let p = parse_plan(&f, &mut e, Some(&old));
    let mut top = None;
    if e.is_empty() {
        let o = ops(&ws, &t, &a.0, ip);
        let updated = o.scope().update_plan(old.id, &p).await.and_then(|p| {
            p.ok_or_else(|| saas_core::store::StoreError::NotFound(format!("plan {}", old.id)))
        });
        match updated {
            Ok(plan) => {
                o.audit("plan.update", &plan.name).await?;
                // Online subscribers of the plan get the new rate at their next authentication;
                // every AAA node drops its cached copy now.
                ws.api()
                    .platform()
                    .bus()
                    .publish(Some(t.0.id), kinds::PLAN_CHANGED, &json!({"plan": plan.id}))
                    .await
                    .map_err(|e| Problem::internal(&e))?;
                return Ok(see_other("/plans?done=saved"));
            }
            Err(err) => top = plan_problem(err.into(), &mut e),
        }
    }
    let page = plan_page(&t.0, &v, &f, &e, top, Some(&old));
    Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page))
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
            Field::new("public_key", "Router's WireGuard public key", "text")
                .value(&f.public_key)
                .hint(
                    "Optional. Empty = we generate the router's key pair and put it in the script.",
                )
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
    let Some(peers) = ws.api().config().peers.clone() else {
        return Err(Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "peers-unavailable",
            "Routers cannot be added here",
        )
        .detail("this process has no relay settings; run the panel inside `proxpanel serve`")
        .into());
    };
    let o = ops(&ws, &t, &a.0, ip);
    let mut top = None;
    if e.is_empty() {
        let nas = NewNas {
            name: name.clone(),
            vendor: NasVendor::Mikrotik,
            ip: None,
            secret: saas_core::crypto::random_token(18),
            message_auth: MessageAuthPolicy::Auto,
            coa_port: 3799,
            api_user: None,
            api_password: None,
            use_ssl: false,
        };
        match o.add_nas(&nas).await {
            Ok(nas) => {
                let key = opt(&f.public_key);
                match peers.add_peer(&o, &name, key.as_deref()).await {
                    Ok(p) => {
                        let page = ScriptPage {
                            l: layout(&t.0, &v, format!("Router {name}"), "/routers"),
                            id: nas.id.0.to_string(),
                            steps: Checklist::default(),
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
                        };
                        let mut r = render_status(StatusCode::CREATED, &page);
                        // The script holds secrets: never cache it anywhere.
                        r.headers_mut()
                            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
}

async fn router_page_detail(
    State(ws): State<WebState>,
    t: TenantHost,
    v: Visit,
    _a: Signed<CanRead>,
    Path(id): Path<Uuid>,
) -> WebResult {
    let (nas, steps) = checklist(&ws, &t.0, id).await?;
    Ok(render(&RouterPage {
        l: layout(&t.0, &v, format!("Router {}", nas.name), "/routers"),
        id: nas.id.0.to_string(),
        steps,
        n: nas_row(&nas, &t.0.timezone),
    }))
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

async fn disconnect(
    State(ws): State<WebState>,
    t: TenantHost,
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
    // The same request as the API's: whichever process holds the NAS answers it.
    ws.api()
        .platform()
        .bus()
        .publish(
            Some(t.0.id),
            kinds::COA_REQUEST,
            &json!({"action": "disconnect", "username": sess.username, "acct_session_id": sess.acct_session_id}),
        )
        .await
        .map_err(|e| Problem::internal(&e))?;
    ops(&ws, &t, &a.0, ip)
        .audit("session.disconnect", &sess.username)
        .await?;
    Ok(see_other("/sessions?done=disconnect"))
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
    rows: Vec<[String; 3]>,
    fields: Vec<Field>,
    error: Option<String>,
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
    let rows = ws
        .api()
        .store()
        .tenant(t.id)
        .users()
        .await?
        .into_iter()
        .map(|u| {
            [
                u.email.as_str().to_owned(),
                u.role.to_string(),
                if u.disabled { "disabled" } else { "active" }.to_owned(),
            ]
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
                .options(vec![
                    (
                        "admin".into(),
                        "admin — everything but the owner's rights".into(),
                    ),
                    ("staff".into(), "staff — subscribers and sessions".into()),
                    ("viewer".into(), "viewer — read only".into()),
                ])
                .errors(e),
        ],
    })
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
}

fn settings_page(
    t: &Tenant,
    v: &Visit,
    f: &SettingsForm,
    e: &Errors,
    done: Option<&str>,
) -> FormPage {
    let mut l = layout(t, v, "Settings", "/settings");
    l.flash = flash(done);
    FormPage {
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
        ],
        submit: "Save",
        cancel: "/".into(),
    }
}

async fn settings(
    t: TenantHost,
    v: Visit,
    _a: Signed<CanSettings>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let f = SettingsForm {
        name: t.0.name.clone(),
        timezone: t.0.timezone.clone(),
    };
    Ok(render(&settings_page(
        &t.0,
        &v,
        &f,
        &Errors::default(),
        q.done.as_deref(),
    )))
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
    if !e.is_empty() {
        return Ok(render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &settings_page(&t.0, &v, &f, &e, None),
        ));
    }
    let o = ops(&ws, &t, &a.0, ip);
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
