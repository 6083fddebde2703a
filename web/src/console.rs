//! The operator console on `operator.<base>`: sign-in with TOTP (enrolment with a QR code at
//! the first sign-in), tenants with create, suspend, resume, delete, limits and a detail page;
//! relays, DNS records and platform health in [`ops`].

mod ops;

use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{Duration as ChronoDuration, Utc};
use saas_core::crypto::{base32_encode, totp};
use saas_core::ids::{Email, Slug};
use saas_core::model::Role;
use saas_core::model::{TenantLimits, TenantStatus};
use saas_core::platform::{MIN_PASSWORD_LEN, ProvisionRequest, TenantChange};
use saas_core::store::{QUOTA_SYNC_MAX_S, QUOTA_SYNC_MIN_S};
use serde::Deserialize;
use tenant_api::host::ClientIp;
use tenant_api::limit;
use tenant_api::problem::{Path, Problem};
use tenant_api::roles::{ApiRole, CanPlatform};
use uuid::Uuid;

use crate::WebState;
use crate::panel::{Enrol, Signed};
use crate::session::{self, Visit};
use crate::view::*;

/// How long an enrolment ticket (password checked, code not yet) lasts.
const ENROL_TTL: Duration = Duration::from_secs(10 * 60);

/// Routes of the operator host.
pub fn router(ws: &WebState) -> Router<WebState> {
    let guarded = Router::new()
        .route("/login", get(login_form).post(login))
        .route_layer(from_fn_with_state(
            (ws.api().clone(), "operator-login"),
            limit::guard,
        ));
    let r = Router::new()
        .merge(guarded)
        .route("/logout", post(logout))
        .route("/", get(tenants).post(create_tenant))
        .route("/tenants/new", get(new_tenant))
        .route("/tenants/{slug}", get(tenant_detail))
        .route("/tenants/{slug}/limits", get(limits_form).post(save_limits))
        .route("/tenants/{slug}/status", post(set_status))
        .route("/tenants/{slug}/act-as", post(act_as))
        .route(
            "/tenants/{slug}/delete",
            get(confirm_delete).post(delete_tenant),
        );
    ops::routes(r)
}

fn layout(v: &Visit, title: impl Into<String>) -> Layout {
    let mut l = Layout::bare(title, "ProxPanel operator", &v.csrf);
    if let Some(p) = &v.principal {
        l.user = Some(p.name.clone());
        l.nav = vec![
            Nav {
                href: "/",
                label: "Tenants",
                current: false,
            },
            Nav {
                href: "/relays",
                label: "Relays",
                current: false,
            },
            Nav {
                href: "/dns",
                label: "DNS",
                current: false,
            },
            Nav {
                href: "/platform",
                label: "Health",
                current: false,
            },
        ];
    }
    l
}

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

fn login_page(v: &Visit, email: &str, next: &str, error: Option<String>) -> LoginPage {
    LoginPage {
        l: layout(v, "Operator sign-in"),
        heading: "Operator sign-in".into(),
        error,
        next: next.to_owned(),
        fields: vec![
            Field::new("email", "E-mail", "email").value(email).required().auto("username"),
            Field::new("password", "Password", "password")
                .required()
                .auto("current-password"),
            Field::new("totp", "Authenticator code", "text")
                .auto("one-time-code")
                .hint("6 digits from your authenticator app. At your first sign-in leave it empty: you will enrol first."),
        ],
        enrol: None,
    }
}

fn enrol_page(
    v: &Visit,
    next: &str,
    email: &str,
    secret: &[u8],
    ticket: &str,
    error: Option<String>,
) -> Result<LoginPage, Problem> {
    let uri = totp::enrolment_uri("ProxPanel", email, secret);
    let qr = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| Problem::internal(&e))?;
    let svg = qr
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    // Inline SVG: drop the XML declaration the renderer puts first.
    let svg = match svg.find("<svg") {
        Some(i) => svg[i..].to_owned(),
        None => svg,
    };
    Ok(LoginPage {
        l: layout(v, "Enrol your authenticator"),
        heading: "Enrol your authenticator".into(),
        error,
        next: next.to_owned(),
        fields: vec![
            Field::new("totp", "Authenticator code", "text")
                .required()
                .auto("one-time-code")
                .hint("The 6 digits the app shows now."),
        ],
        enrol: Some(Enrol {
            qr_svg: svg,
            secret: base32_encode(secret),
            ticket: ticket.to_owned(),
        }),
    })
}

#[derive(Debug, Default, Deserialize)]
struct NextQ {
    next: Option<String>,
}

async fn login_form(v: Visit, Query(q): Query<NextQ>) -> Response {
    if v.principal.is_some() {
        return see_other(&safe_next(q.next.as_deref()));
    }
    render(&login_page(&v, "", &safe_next(q.next.as_deref()), None))
}

#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
    ticket: Option<String>,
    next: Option<String>,
}

fn now_unix() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

async fn login(
    State(ws): State<WebState>,
    v: Visit,
    ip: ClientIp,
    Form(f): Form<LoginForm>,
) -> WebResult {
    let api = ws.api();
    let next = safe_next(f.next.as_deref());
    let refused = |msg: &str| {
        render_status(
            StatusCode::UNAUTHORIZED,
            &login_page(&v, f.email.trim(), &next, Some(msg.to_owned())),
        )
    };
    // Second step of the first sign-in: the ticket stands for the checked password.
    if let Some(ticket) = f.ticket.as_deref().filter(|t| !t.is_empty()) {
        let key = format!("pp:web:enrol:{ticket}");
        let email = match api.cache().get(&key).await {
            Ok(Some(b)) => String::from_utf8(b).unwrap_or_default(),
            _ => return Ok(refused("The enrolment has expired; sign in again.")),
        };
        let Ok(e) = Email::parse(&email) else {
            return Ok(refused("The enrolment has expired; sign in again."));
        };
        let Some((op, _, secret)) = api.store().platform().operator_by_email(&e).await? else {
            return Ok(refused("The enrolment has expired; sign in again."));
        };
        if !totp::verify(&secret, now_unix(), &f.totp) {
            let page = enrol_page(
                &v,
                &next,
                &email,
                &secret,
                ticket,
                Some(
                    "That code is not right; check the app's clock and try the current code."
                        .into(),
                ),
            )?;
            return Ok(render_status(StatusCode::UNAUTHORIZED, &page));
        }
        let _ = api.cache().delete(&key).await;
        api.store().platform().set_operator_enrolled(op.id).await?;
        return start(&ws, op.id.0, op.email.as_str(), ip, &next).await;
    }
    let (op, secret) = match tenant_api::operator::verify_operator(
        api,
        f.email.trim(),
        f.password.clone(),
    )
    .await
    {
        Ok(x) => x,
        Err(p) if p.status == StatusCode::UNAUTHORIZED => {
            return Ok(refused("Wrong e-mail, password or code."));
        }
        Err(p) => return Err(p.into()),
    };
    if f.totp.trim().is_empty() {
        if op.totp_enrolled {
            return Ok(refused("Enter the code from your authenticator app."));
        }
        let ticket = saas_core::crypto::random_token(24);
        if let Err(e) = api
            .cache()
            .set(
                &format!("pp:web:enrol:{ticket}"),
                op.email.as_str().as_bytes(),
                ENROL_TTL,
            )
            .await
        {
            return Err(Problem::internal(&e).into());
        }
        let page = enrol_page(&v, &next, op.email.as_str(), &secret, &ticket, None)?;
        return Ok(render(&page));
    }
    if !totp::verify(&secret, now_unix(), &f.totp) {
        return Ok(refused("Wrong e-mail, password or code."));
    }
    if !op.totp_enrolled {
        api.store().platform().set_operator_enrolled(op.id).await?;
    }
    start(&ws, op.id.0, op.email.as_str(), ip, &next).await
}

async fn start(ws: &WebState, id: Uuid, email: &str, ip: ClientIp, next: &str) -> WebResult {
    let api = ws.api();
    let ttl = ws.config().operator_session_ttl;
    let fam = Uuid::new_v4();
    let unused = tenant_api::auth::new_refresh_token(fam);
    let expires = Utc::now() + ChronoDuration::seconds(ttl.as_secs() as i64);
    api.store()
        .platform()
        .create_operator_refresh_family(
            fam,
            saas_core::ids::OperatorId(id),
            &tenant_api::auth::sha256_hex(&unused),
            expires,
        )
        .await?;
    api.store()
        .platform()
        .audit_from(
            &format!("operator:{email}"),
            "auth.login",
            Some(email),
            Some("web console"),
            Some(&ip.0.to_string()),
        )
        .await?;
    let jwt = session::sign(
        api.operator_keys(),
        id,
        None,
        ApiRole::Operator,
        email,
        fam,
        ttl,
    )?;
    let mut r = see_other(next);
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

// ---- tenants ----

struct TenantRow {
    slug: String,
    name: String,
    status: String,
    url: String,
    subscribers: i64,
    online: i64,
    nas: i64,
    created: String,
    active: bool,
    suspended: bool,
}

#[derive(Template)]
#[template(path = "op_tenants.html")]
struct TenantsPage {
    l: Layout,
    rows: Vec<TenantRow>,
}

#[derive(Debug, Default, Deserialize)]
struct DoneQ {
    done: Option<String>,
}

async fn tenants(
    State(ws): State<WebState>,
    v: Visit,
    _a: Signed<CanPlatform>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let api = ws.api();
    let rows = api
        .platform()
        .tenants()
        .await?
        .into_iter()
        .filter(|t| t.tenant.status != TenantStatus::Deleted)
        .map(|t| TenantRow {
            url: api.config().panel_url(t.tenant.slug.as_str()),
            slug: t.tenant.slug.as_str().to_owned(),
            name: t.tenant.name.clone(),
            status: t.tenant.status.to_string(),
            subscribers: t.subscribers,
            online: t.online,
            nas: t.nas,
            created: when(t.tenant.created_at, "UTC"),
            active: t.tenant.status == TenantStatus::Active,
            suspended: t.tenant.status == TenantStatus::Suspended,
        })
        .collect();
    let mut l = layout(&v, "Tenants");
    for n in &mut l.nav {
        n.current = n.href == "/";
    }
    l.flash = match q.done.as_deref() {
        Some("created") => Some("Tenant created.".into()),
        Some("suspended") => {
            Some("Tenant suspended: logins refused, sessions being disconnected.".into())
        }
        Some("active") => Some("Tenant resumed.".into()),
        Some("deleted") => {
            Some("Tenant deleted; its data is purged after the grace period.".into())
        }
        _ => None,
    };
    Ok(render(&TenantsPage { l, rows }))
}

#[derive(Debug, Default, Deserialize)]
struct TenantForm {
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    max_subscribers: String,
    #[serde(default)]
    max_nas: String,
}

fn tenant_page(v: &Visit, f: &TenantForm, e: &Errors, top: Option<String>) -> FormPage {
    FormPage {
        l: layout(v, "New tenant"),
        heading: "New tenant".into(),
        error: top,
        action: "/".into(),
        fields: vec![
            Field::new("slug", "Subdomain", "text")
                .value(&f.slug)
                .required()
                .errors(e),
            Field::new("name", "Name", "text")
                .value(&f.name)
                .required()
                .errors(e),
            Field::new("email", "Owner e-mail", "email")
                .value(&f.email)
                .required()
                .errors(e),
            Field::new("password", "Owner password", "password")
                .required()
                .auto("new-password")
                .hint("At least 8 characters; tell the owner to change it.")
                .errors(e),
            Field::new("max_subscribers", "Subscriber limit", "number")
                .value(&f.max_subscribers)
                .hint("Empty = the default.")
                .errors(e),
            Field::new("max_nas", "Router limit", "number")
                .value(&f.max_nas)
                .hint("Empty = the default.")
                .errors(e),
        ],
        submit: "Create tenant",
        cancel: "/".into(),
    }
}

async fn new_tenant(v: Visit, _a: Signed<CanPlatform>) -> WebResult {
    Ok(render(&tenant_page(
        &v,
        &TenantForm::default(),
        &Errors::default(),
        None,
    )))
}

async fn create_tenant(
    State(ws): State<WebState>,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanPlatform>,
    Form(f): Form<TenantForm>,
) -> WebResult {
    let mut e = Errors::default();
    let slug = match Slug::parse(&f.slug.trim().to_ascii_lowercase()) {
        Ok(s) => Some(s),
        Err(err) => {
            e.add("slug", err.to_string());
            None
        }
    };
    let email = match Email::parse(f.email.trim()) {
        Ok(m) => Some(m),
        Err(err) => {
            e.add("email", err.to_string());
            None
        }
    };
    if f.name.trim().is_empty() {
        e.add("name", "enter a name");
    }
    if f.password.chars().count() < MIN_PASSWORD_LEN {
        e.add(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        );
    }
    let ms = whole(&mut e, "max_subscribers", &f.max_subscribers);
    let mn = whole(&mut e, "max_nas", &f.max_nas);
    let mut top = None;
    if let (Some(slug), Some(email), true) = (slug, email, e.is_empty()) {
        let limits = (ms.is_some() || mn.is_some()).then(|| {
            let d = TenantLimits::default();
            TenantLimits {
                max_subscribers: ms.unwrap_or(d.max_subscribers),
                max_nas: mn.unwrap_or(d.max_nas),
            }
        });
        let req = ProvisionRequest {
            slug,
            name: f.name.trim().to_owned(),
            owner_email: email,
            owner_password: f.password.clone(),
            timezone: "UTC".into(),
            limits,
        };
        let p = ws.api().platform().with_client_ip(ip.0.to_string());
        match p.provision_tenant(&req, &a.0.actor()).await {
            Ok(t) => {
                ws.api().tenants().invalidate(Some(t.slug.as_str()));
                return Ok(see_other("/?done=created"));
            }
            Err(err) => {
                let (pe, msg) = problem_errors(&err.into());
                e.0.extend(pe.0);
                match msg {
                    Some(m) if m.contains("slug") || m.contains("taken") => e.add("slug", m),
                    m => top = m,
                }
            }
        }
    }
    Ok(render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        &tenant_page(&v, &f, &e, top),
    ))
}

/// A whole number of 0 or more from a form field; empty is none.
fn whole(e: &mut Errors, field: &str, s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
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

#[derive(Debug, Deserialize)]
struct StatusForm {
    status: String,
    /// `detail`: come back to the tenant's page rather than the list.
    back: Option<String>,
}

async fn change_status(
    ws: &WebState,
    ip: ClientIp,
    a: &Signed<CanPlatform>,
    slug: &str,
    status: TenantStatus,
) -> WebResult<()> {
    let t = ws
        .api()
        .platform()
        .with_client_ip(ip.0.to_string())
        .set_tenant_status(slug, status, &a.0.actor())
        .await?;
    ws.api().tenants().invalidate(Some(t.slug.as_str()));
    Ok(())
}

async fn set_status(
    State(ws): State<WebState>,
    ip: ClientIp,
    a: Signed<CanPlatform>,
    Path(slug): Path<String>,
    Form(f): Form<StatusForm>,
) -> WebResult {
    let status = match f.status.as_str() {
        "suspended" => TenantStatus::Suspended,
        "active" => TenantStatus::Active,
        _ => return Err(Problem::bad_request("status must be suspended or active").into()),
    };
    change_status(&ws, ip, &a, &slug, status).await?;
    if f.back.as_deref() == Some("detail") {
        return Ok(see_other(&format!("/tenants/{slug}?done={}", f.status)));
    }
    Ok(see_other(&format!("/?done={}", f.status)))
}

#[derive(Template)]
#[template(path = "op_act_as.html")]
struct ActAsPage {
    l: Layout,
    slug: String,
    link: String,
    minutes: u64,
}

/// "Act as tenant": audited in the tenant's and the platform's log, then a one-time link (60 s)
/// that opens a short session on the tenant's own host (its cookie cannot be set from here).
async fn act_as(
    State(ws): State<WebState>,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanPlatform>,
    Path(slug): Path<String>,
) -> WebResult {
    let api = ws.api();
    let t = api.platform().tenant_by_slug(&slug).await?;
    if t.status != TenantStatus::Active {
        return Err(Problem::conflict(format!(
            "tenant {slug:?} is {}; resume it before acting on it",
            t.status
        ))
        .into());
    }
    let tenant_api::auth::PrincipalKind::Operator(op) = a.0.kind else {
        return Err(Problem::forbidden("only an operator may act as a tenant").into());
    };
    let actor = a.0.actor().0;
    let ipt = ip.0.to_string();
    api.store()
        .tenant(t.id)
        .audit_from(
            &actor,
            "operator.act_as",
            Some(t.slug.as_str()),
            Some("web panel"),
            Some(&ipt),
        )
        .await?;
    api.store()
        .platform()
        .audit_from(
            &actor,
            "operator.act_as",
            Some(t.slug.as_str()),
            Some("web panel"),
            Some(&ipt),
        )
        .await?;
    let ticket = saas_core::crypto::random_token(24);
    let grant = serde_json::json!({"tenant": t.id.0, "operator": op.0, "email": a.0.name});
    api.cache()
        .set(
            &format!("pp:web:actas:{ticket}"),
            grant.to_string().as_bytes(),
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(render(&ActAsPage {
        l: layout(&v, format!("Act as {slug}")),
        link: format!(
            "{}act-as?ticket={ticket}",
            api.config().panel_url(t.slug.as_str())
        ),
        slug,
        minutes: tenant_api::auth::ACT_AS_TTL.as_secs() / 60,
    }))
}

async fn confirm_delete(v: Visit, _a: Signed<CanPlatform>, Path(slug): Path<String>) -> WebResult {
    Ok(render(&ConfirmPage {
        l: layout(&v, format!("Delete {slug}")),
        heading: format!("Delete the tenant {slug}?"),
        text: format!(
            "{slug} stops at once: its panel, API and routers are refused, and all of its data is purged after the grace period."
        ),
        action: format!("/tenants/{slug}/delete"),
        button: "Delete tenant",
        cancel: "/".into(),
    }))
}

async fn delete_tenant(
    State(ws): State<WebState>,
    ip: ClientIp,
    a: Signed<CanPlatform>,
    Path(slug): Path<String>,
) -> WebResult {
    change_status(&ws, ip, &a, &slug, TenantStatus::Deleted).await?;
    Ok(see_other("/?done=deleted"))
}

// ---- one tenant: detail and limits ----

#[derive(Template)]
#[template(path = "op_tenant.html")]
struct TenantPage {
    l: Layout,
    slug: String,
    name: String,
    status: String,
    active: bool,
    suspended: bool,
    url: String,
    facts: Vec<(&'static str, String)>,
    nas: Vec<[String; 5]>,
    peers: Vec<[String; 5]>,
    audit: Vec<[String; 4]>,
}

/// One tenant: status, owners, limits, counts, routers with their tunnel/RADIUS/API state,
/// WireGuard peers, its recent audit entries and the actions.
async fn tenant_detail(
    State(ws): State<WebState>,
    v: Visit,
    _a: Signed<CanPlatform>,
    Path(slug): Path<String>,
    Query(q): Query<DoneQ>,
) -> WebResult {
    let api = ws.api();
    let t = api.platform().tenant_by_slug(&slug).await?;
    let scope = api.store().tenant(t.id);
    let summary = api
        .platform()
        .tenants()
        .await?
        .into_iter()
        .find(|s| s.tenant.id == t.id);
    let (subscribers, online, nas_count) = summary
        .map(|s| (s.subscribers, s.online, s.nas))
        .unwrap_or_default();
    let owners = scope
        .users()
        .await?
        .into_iter()
        .filter(|u| u.role == Role::Owner)
        .map(|u| u.email.as_str().to_owned())
        .collect::<Vec<_>>()
        .join(", ");
    let ago = |t: Option<chrono::DateTime<Utc>>| {
        t.map(|t| when(t, "UTC")).unwrap_or_else(|| "never".into())
    };
    let nas_list = scope.nas_list().await?;
    let nas = nas_list
        .iter()
        .map(|n| {
            [
                n.name.clone(),
                n.tunnel_state.to_string(),
                ago(n.radius_last_seen),
                n.api_state.to_string(),
                n.api_last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let peers = scope
        .peers()
        .await?
        .into_iter()
        .map(|p| {
            [
                nas_list
                    .iter()
                    .find(|n| n.id == p.nas_id)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| "—".into()),
                p.tunnel_address,
                p.relay_node.unwrap_or_else(|| "—".into()),
                p.endpoint.unwrap_or_else(|| "not seen".into()),
                ago(p.last_handshake),
            ]
        })
        .collect();
    let audit = scope
        .audit_log(20)
        .await?
        .into_iter()
        .map(|e| {
            [
                when(e.at, "UTC"),
                e.actor,
                e.action,
                e.target.unwrap_or_default(),
            ]
        })
        .collect();
    let facts = vec![
        ("Status", t.status.to_string()),
        ("Created", when(t.created_at, "UTC")),
        ("Suspended since", ago(t.suspended_at)),
        (
            "Owner e-mail",
            if owners.is_empty() {
                "none".into()
            } else {
                owners
            },
        ),
        ("Timezone", t.timezone.clone()),
        ("Subscriber limit", t.limits.max_subscribers.to_string()),
        ("Router limit", t.limits.max_nas.to_string()),
        (
            "QuotaSync interval",
            t.quota_sync_s
                .map(|s| format!("{s} s"))
                .unwrap_or_else(|| "platform default".into()),
        ),
        ("Subscribers", subscribers.to_string()),
        ("Online sessions", online.to_string()),
        ("Routers", nas_count.to_string()),
        (
            "Relay node",
            t.relay_node.clone().unwrap_or_else(|| "—".into()),
        ),
    ];
    let mut l = layout(&v, format!("Tenant {slug}"));
    l.flash = match q.done.as_deref() {
        Some("limits") => Some("Limits saved.".into()),
        Some("suspended") => {
            Some("Tenant suspended: logins refused, sessions being disconnected.".into())
        }
        Some("active") => Some("Tenant resumed.".into()),
        _ => None,
    };
    Ok(render(&TenantPage {
        l,
        url: api.config().panel_url(t.slug.as_str()),
        slug: t.slug.as_str().to_owned(),
        name: t.name.clone(),
        status: t.status.to_string(),
        active: t.status == TenantStatus::Active,
        suspended: t.status == TenantStatus::Suspended,
        facts,
        nas,
        peers,
        audit,
    }))
}

#[derive(Debug, Default, Deserialize)]
struct LimitsForm {
    #[serde(default)]
    max_subscribers: String,
    #[serde(default)]
    max_nas: String,
    #[serde(default)]
    quota_sync_s: String,
}

fn limits_page(v: &Visit, slug: &str, f: &LimitsForm, e: &Errors, top: Option<String>) -> FormPage {
    FormPage {
        l: layout(v, format!("Limits of {slug}")),
        heading: format!("Limits of {slug}"),
        error: top,
        action: format!("/tenants/{slug}/limits"),
        fields: vec![
            Field::new("max_subscribers", "Subscriber limit", "number")
                .value(&f.max_subscribers)
                .required()
                .errors(e),
            Field::new("max_nas", "Router limit", "number")
                .value(&f.max_nas)
                .required()
                .errors(e),
            Field::new("quota_sync_s", "QuotaSync interval (seconds)", "number")
                .value(&f.quota_sync_s)
                .hint("10 to 3600; empty = the platform default.")
                .errors(e),
        ],
        submit: "Save limits",
        cancel: format!("/tenants/{slug}"),
    }
}

async fn limits_form(
    State(ws): State<WebState>,
    v: Visit,
    _a: Signed<CanPlatform>,
    Path(slug): Path<String>,
) -> WebResult {
    let t = ws.api().platform().tenant_by_slug(&slug).await?;
    let f = LimitsForm {
        max_subscribers: t.limits.max_subscribers.to_string(),
        max_nas: t.limits.max_nas.to_string(),
        quota_sync_s: t.quota_sync_s.map(|s| s.to_string()).unwrap_or_default(),
    };
    Ok(render(&limits_page(
        &v,
        t.slug.as_str(),
        &f,
        &Errors::default(),
        None,
    )))
}

/// Saves limits through [`saas_core::platform::Platform::update_tenant`] (audited, announced).
async fn save_limits(
    State(ws): State<WebState>,
    v: Visit,
    ip: ClientIp,
    a: Signed<CanPlatform>,
    Path(slug): Path<String>,
    Form(f): Form<LimitsForm>,
) -> WebResult {
    let mut e = Errors::default();
    let ms = whole(&mut e, "max_subscribers", &f.max_subscribers);
    let mn = whole(&mut e, "max_nas", &f.max_nas);
    for (name, val) in [("max_subscribers", ms), ("max_nas", mn)] {
        if val.is_none() && e.get(name).is_none() {
            e.add(name, "enter a whole number, 0 or more");
        }
    }
    let q = f.quota_sync_s.trim();
    let quota = match q.parse::<u32>() {
        _ if q.is_empty() => None,
        Ok(n) if (QUOTA_SYNC_MIN_S..=QUOTA_SYNC_MAX_S).contains(&n) => Some(n),
        _ => {
            e.add(
                "quota_sync_s",
                format!(
                    "enter {QUOTA_SYNC_MIN_S} to {QUOTA_SYNC_MAX_S} seconds, or leave it empty for the platform default"
                ),
            );
            None
        }
    };
    let mut top = None;
    if e.is_empty() {
        let change = TenantChange {
            max_subscribers: ms,
            max_nas: mn,
            quota_sync_s: Some(quota),
            ..TenantChange::default()
        };
        let p = ws.api().platform().with_client_ip(ip.0.to_string());
        match p.update_tenant(&slug, &change, &a.0.actor()).await {
            Ok(t) => {
                ws.api().tenants().invalidate(Some(t.slug.as_str()));
                return Ok(see_other(&format!(
                    "/tenants/{}?done=limits",
                    t.slug.as_str()
                )));
            }
            Err(err) => {
                let (pe, msg) = problem_errors(&err.into());
                e.0.extend(pe.0);
                top = msg;
            }
        }
    }
    Ok(render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        &limits_page(&v, &slug, &f, &e, top),
    ))
}
