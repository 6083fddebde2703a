//! `/api/v1` on a tenant host: auth, me, settings, users, plans, subscribers, NAS, peers,
//! sessions, auth log, audit log. Every mutation goes through `TenantOps` (audited with the
//! client address, announced on the bus).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use saas_core::bus::kinds;
use saas_core::ids::*;
use saas_core::model::*;
use saas_core::platform::TenantOps;
use saas_core::store::{Page, Rotation, SubscriberQuery};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{self, Auth, Principal, TokenPair, TokenType};
use crate::host::{ClientIp, TenantHost};
use crate::problem::{ApiResult, Json, Path, Problem, Query};
use crate::roles::{ApiRole, CanRead, CanSettings, CanSubscribers, CanUsers};
use crate::{AppState, limit, verify_password};

/// The tenant host's routes.
pub fn router(state: &AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route_layer(from_fn_with_state((state.clone(), "login"), limit::guard));
    Router::new()
        .merge(guarded)
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/settings", get(settings).patch(patch_settings))
        .route("/api/v1/users", get(users).post(create_user))
        .route("/api/v1/api-tokens", get(api_tokens).post(create_api_token))
        .route(
            "/api/v1/api-tokens/{id}",
            axum::routing::delete(revoke_api_token),
        )
        .route("/api/v1/plans", get(plans).post(create_plan))
        .route("/api/v1/plans/{id}", get(plan))
        .route(
            "/api/v1/subscribers",
            get(subscribers).post(create_subscriber),
        )
        .route(
            "/api/v1/subscribers/{id}",
            get(subscriber)
                .patch(patch_subscriber)
                .delete(delete_subscriber),
        )
        .route("/api/v1/subscribers/{id}/renew", post(renew_subscriber))
        .route("/api/v1/subscribers/{id}/usage", get(subscriber_usage))
        .route("/api/v1/nas", get(nas_list).post(create_nas))
        .route("/api/v1/nas/{id}", get(nas).delete(delete_nas))
        .route("/api/v1/nas/{id}/check", post(check_nas))
        .route("/api/v1/peers", get(peers).post(create_peer))
        .route("/api/v1/peers/{id}", get(peer).delete(delete_peer))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{id}", get(session))
        .route("/api/v1/sessions/{id}/disconnect", post(disconnect_session))
        .route("/api/v1/auth-log", get(auth_log))
        .route("/api/v1/audit-log", get(audit_log))
}

fn ops(s: &AppState, t: &TenantHost, p: &Principal, ip: ClientIp) -> TenantOps {
    s.platform()
        .ops_for((*t.0).clone(), p.actor())
        .with_client_ip(ip.0.to_string())
}

fn page<T>(items: Vec<T>) -> Page<T> {
    Page {
        items,
        next_cursor: None,
    }
}

/// `Some(None)` for an explicit null, `Some(Some(v))` for a value, `None` when absent.
fn double<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::deserialize(d)?))
}

// ---- auth ----

/// Login body (DESIGN §8).
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    /// Login e-mail.
    pub email: String,
    /// Password.
    pub password: String,
    /// TOTP code (operators).
    #[serde(default)]
    pub totp: Option<String>,
}

async fn login(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<TokenPair>> {
    let user = verify_user(&s, &t.0, &req.email, req.password).await?;
    let scope = s.store().tenant(t.0.id);
    let fam = Uuid::new_v4();
    let refresh = auth::new_refresh_token(fam);
    let expires = saas_core::store::now()
        + chrono::Duration::from_std(auth::REFRESH_TTL).unwrap_or(chrono::Duration::days(30));
    scope
        .create_refresh_family(fam, user.id, &auth::sha256_hex(&refresh), expires)
        .await?;
    scope
        .audit_from(
            &format!("user:{}", user.email),
            "auth.login",
            Some(user.email.as_str()),
            None,
            Some(&ip.0.to_string()),
        )
        .await?;
    let ttl = s.config().access_ttl;
    let c = auth::claims(
        user.id.0,
        TokenType::Tenant,
        Some(t.0.id),
        ApiRole::from_user(user.role),
        user.email.as_str(),
        Some(fam),
        ttl,
    );
    Ok(Json(TokenPair {
        access_token: s.tenant_keys().sign(&c)?,
        refresh_token: Some(refresh),
        expires_in: ttl.as_secs(),
        token_type: "Bearer",
    }))
}

/// Checks a tenant user's e-mail and password (the same work whether or not the e-mail
/// exists); a disabled user is refused like a wrong password. The web panel's login uses it.
pub async fn verify_user(
    s: &AppState,
    t: &Tenant,
    email: &str,
    password: String,
) -> ApiResult<TenantUser> {
    let refused = || Problem::unauthorized("wrong e-mail or password");
    let scope = s.store().tenant(t.id);
    let found = match Email::parse(email) {
        Ok(e) => scope.user_by_email(&e).await?,
        Err(_) => None,
    };
    let Some((user, hash)) = found else {
        // Same work as a real check, so timing does not tell which e-mails exist.
        verify_password(password, s.dummy_hash().to_owned()).await;
        return Err(refused());
    };
    if !verify_password(password, hash).await || user.disabled {
        return Err(refused());
    }
    Ok(user)
}

/// Refresh body.
#[derive(Debug, Deserialize)]
pub struct RefreshRequest {
    /// The current refresh token.
    pub refresh_token: String,
}

async fn refresh(
    State(s): State<AppState>,
    t: TenantHost,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Json<TokenPair>> {
    let fam = auth::refresh_family(&req.refresh_token)
        .ok_or_else(|| Problem::unauthorized("this is not a refresh token; sign in again"))?;
    let scope = s.store().tenant(t.0.id);
    let next = auth::new_refresh_token(fam);
    let r = scope
        .rotate_refresh(
            fam,
            &auth::sha256_hex(&req.refresh_token),
            &auth::sha256_hex(&next),
        )
        .await?;
    let Rotation::Rotated(uid) = r else {
        if r == Rotation::Reused {
            tracing::warn!(tenant = %t.0.slug.as_str(), family = %fam, "refresh token reuse: family revoked");
        }
        return Err(auth::rotation_problem(&r));
    };
    let user = scope
        .user(uid)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| Problem::unauthorized("this account no longer exists or is disabled"))?;
    let ttl = s.config().access_ttl;
    let c = auth::claims(
        user.id.0,
        TokenType::Tenant,
        Some(t.0.id),
        ApiRole::from_user(user.role),
        user.email.as_str(),
        Some(fam),
        ttl,
    );
    Ok(Json(TokenPair {
        access_token: s.tenant_keys().sign(&c)?,
        refresh_token: Some(next),
        expires_in: ttl.as_secs(),
        token_type: "Bearer",
    }))
}

/// Revokes the caller's access token and its refresh family.
pub async fn revoke_session(s: &AppState, p: &Principal) -> ApiResult<()> {
    let Some(c) = &p.claims else {
        return Err(Problem::bad_request(
            "API tokens are revoked with DELETE /api/v1/api-tokens/{id}, not by logout",
        ));
    };
    let exp = DateTime::<Utc>::from_timestamp(c.exp, 0).unwrap_or_else(Utc::now);
    s.store()
        .platform()
        .revoke_access_token(&c.jti, exp)
        .await?;
    if let Some(fam) = c.fam {
        match (c.typ, p.tenant) {
            (TokenType::Operator, _) | (TokenType::Panel, None) => {
                s.store()
                    .platform()
                    .revoke_operator_refresh(fam, "logout")
                    .await?;
            }
            (_, Some(t)) => {
                s.store().tenant(t).revoke_refresh(fam, "logout").await?;
            }
            _ => {}
        }
    }
    Ok(())
}

async fn logout(State(s): State<AppState>, a: Auth<CanRead>) -> ApiResult<StatusCode> {
    revoke_session(&s, &a).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- me, settings, users, API tokens ----

async fn me(t: TenantHost, a: Auth<CanRead>) -> Json<Value> {
    Json(json!({
        "user": {"email": a.name, "role": a.role, "kind": match a.kind {
            auth::PrincipalKind::User(_) => "user",
            auth::PrincipalKind::ActAs(_) => "operator_acting",
            auth::PrincipalKind::ApiToken(_) => "api_token",
            auth::PrincipalKind::Operator(_) => "operator",
        }},
        "tenant": &*t.0,
    }))
}

async fn settings(t: TenantHost, _a: Auth<CanRead>) -> Json<Value> {
    Json(json!({"name": t.0.name, "timezone": t.0.timezone, "limits": t.0.limits}))
}

/// Tenant settings change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Display name.
    pub name: Option<String>,
    /// IANA timezone.
    pub timezone: Option<String>,
}

async fn patch_settings(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Json(p): Json<SettingsPatch>,
) -> ApiResult<Json<Value>> {
    if let Some(tz) = &p.timezone {
        validate_timezone(tz).map_err(|e| Problem::validation("timezone", e))?;
    }
    if p.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(Problem::validation("name", "must not be empty"));
    }
    let o = ops(&s, &t, &a, ip);
    let tenant = o
        .scope()
        .update_tenant(
            p.name.as_deref().map(str::trim),
            p.timezone.as_deref(),
            None,
        )
        .await?;
    o.audit("tenant.settings", tenant.slug.as_str()).await?;
    s.platform()
        .bus()
        .publish(
            Some(tenant.id),
            kinds::TENANT_CHANGED,
            &json!({"tenant": tenant.id, "slug": tenant.slug, "status": tenant.status}),
        )
        .await
        .map_err(|e| Problem::internal(&e))?;
    s.tenants().invalidate(Some(tenant.slug.as_str()));
    Ok(Json(
        json!({"name": tenant.name, "timezone": tenant.timezone, "limits": tenant.limits}),
    ))
}

async fn users(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanUsers>,
) -> ApiResult<Json<Page<TenantUser>>> {
    Ok(Json(page(s.store().tenant(t.0.id).users().await?)))
}

/// New panel user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login.
    pub email: String,
    /// Password (8 characters or more).
    pub password: String,
    /// admin, staff or viewer.
    pub role: Role,
}

async fn create_user(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanUsers>,
    Json(u): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<TenantUser>)> {
    let email = Email::parse(&u.email).map_err(|e| Problem::validation("email", e.to_string()))?;
    if u.role == Role::Owner {
        return Err(Problem::validation(
            "role",
            "a tenant has one owner; choose admin, staff or viewer",
        ));
    }
    let o = ops(&s, &t, &a, ip);
    let user = o.add_user(&email, &u.password, u.role).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn api_tokens(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanUsers>,
) -> ApiResult<Json<Page<saas_core::store::ApiTokenRow>>> {
    Ok(Json(page(s.store().tenant(t.0.id).api_tokens().await?)))
}

/// New API token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    /// Name to recognise it by.
    pub name: String,
    /// `read` or `write`.
    pub scope: String,
}

async fn create_api_token(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanUsers>,
    Json(n): Json<NewApiToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !matches!(n.scope.as_str(), "read" | "write") {
        return Err(Problem::validation("scope", "must be read or write"));
    }
    if n.name.trim().is_empty() {
        return Err(Problem::validation("name", "must not be empty"));
    }
    let token = format!(
        "{}{}",
        auth::API_TOKEN_PREFIX,
        saas_core::crypto::random_token(32)
    );
    let id = Uuid::new_v4();
    let o = ops(&s, &t, &a, ip);
    o.scope()
        .create_api_token(
            id,
            n.name.trim(),
            &auth::sha256_hex(&token),
            &n.scope,
            &a.actor().0,
        )
        .await?;
    o.audit("api_token.create", n.name.trim()).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": id, "name": n.name.trim(), "scope": n.scope, "token": token,
            "note": "shown once; store it now"}),
        ),
    ))
}

async fn revoke_api_token(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanUsers>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let o = ops(&s, &t, &a, ip);
    if !o.scope().revoke_api_token(id).await? {
        return Err(Problem::not_found("API token not found"));
    }
    o.audit("api_token.revoke", &id.to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- plans ----

async fn plans(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
) -> ApiResult<Json<Page<Plan>>> {
    Ok(Json(page(s.store().tenant(t.0.id).plans().await?)))
}

async fn plan(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Plan>> {
    s.store()
        .tenant(t.0.id)
        .plan(PlanId(id))
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found("plan not found"))
}

async fn create_plan(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Json(p): Json<NewPlan>,
) -> ApiResult<(StatusCode, Json<Plan>)> {
    if p.name.trim().is_empty() {
        return Err(Problem::validation("name", "must not be empty"));
    }
    let plan = ops(&s, &t, &a, ip).add_plan(&p).await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

// ---- subscribers ----

/// Subscriber listing parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberListQuery {
    /// Substring of the username.
    pub search: Option<String>,
    /// Status filter.
    pub status: Option<SubscriberStatus>,
    /// Plan filter.
    pub plan_id: Option<Uuid>,
    /// Sort key: only `username` (ascending) is supported.
    pub sort: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size 1..=500 (default 50).
    pub limit: Option<i64>,
}

async fn subscribers(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Query(q): Query<SubscriberListQuery>,
) -> ApiResult<Json<Page<Subscriber>>> {
    if let Some(sort) = &q.sort
        && sort != "username"
    {
        return Err(
            Problem::bad_request(format!("sort={sort:?} is not supported"))
                .field("sort", "only `username` (ascending) is supported"),
        );
    }
    if let Some(l) = q.limit
        && !(1..=500).contains(&l)
    {
        return Err(Problem::bad_request("limit must be between 1 and 500")
            .field("limit", "between 1 and 500"));
    }
    let sq = SubscriberQuery {
        search: q.search,
        status: q.status,
        plan_id: q.plan_id.map(PlanId),
        after: q.cursor,
        limit: q.limit,
    };
    Ok(Json(s.store().tenant(t.0.id).subscribers(&sq).await?))
}

async fn find_subscriber(s: &AppState, t: &TenantHost, id: Uuid) -> ApiResult<Subscriber> {
    s.store()
        .tenant(t.0.id)
        .subscriber(SubscriberId(id))
        .await?
        .ok_or_else(|| Problem::not_found("subscriber not found"))
}

async fn subscriber(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Subscriber>> {
    Ok(Json(find_subscriber(&s, &t, id).await?))
}

/// New subscriber.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriber {
    /// Login.
    pub username: String,
    /// PPPoE/hotspot password.
    pub password: String,
    /// Plan id (default plan when absent).
    pub plan_id: Option<Uuid>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Static IPv4.
    pub static_ip: Option<String>,
    /// MAC lock.
    pub mac_lock: Option<String>,
    /// Simultaneous-use override.
    pub sim_use: Option<i64>,
}

async fn plan_name(s: &AppState, t: &TenantHost, id: Uuid) -> ApiResult<String> {
    s.store()
        .tenant(t.0.id)
        .plan(PlanId(id))
        .await?
        .map(|p| p.name)
        .ok_or_else(|| Problem::validation("plan_id", "no such plan in this account"))
}

async fn create_subscriber(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSubscribers>,
    Json(c): Json<CreateSubscriber>,
) -> ApiResult<(StatusCode, Json<Subscriber>)> {
    if c.username.trim().is_empty() {
        return Err(Problem::validation("username", "must not be empty"));
    }
    if c.password.is_empty() {
        return Err(Problem::validation("password", "must not be empty"));
    }
    let plan = match c.plan_id {
        Some(id) => Some(plan_name(&s, &t, id).await?),
        None => None,
    };
    let new = NewSubscriber {
        username: c.username,
        password: c.password,
        plan_id: None,
        expires_at: c.expires_at,
        static_ip: c.static_ip,
        framed_ipv6_prefix: None,
        delegated_ipv6_prefix: None,
        mac_lock: c.mac_lock,
        sim_use: c.sim_use,
    };
    let sub = ops(&s, &t, &a, ip)
        .add_subscriber(new, plan.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(sub)))
}

/// Subscriber change; `null` clears a field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSubscriber {
    /// New password.
    pub password: Option<String>,
    /// `active` or `disabled` (enable/disable; disabling disconnects).
    pub status: Option<SubscriberStatus>,
    /// New plan (a CoA changes the rate of an online subscriber).
    #[serde(default, deserialize_with = "double")]
    pub plan_id: Option<Option<Uuid>>,
    /// New expiry.
    #[serde(default, deserialize_with = "double")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Static IPv4.
    #[serde(default, deserialize_with = "double")]
    pub static_ip: Option<Option<String>>,
    /// MAC lock.
    #[serde(default, deserialize_with = "double")]
    pub mac_lock: Option<Option<String>>,
    /// Simultaneous use.
    #[serde(default, deserialize_with = "double")]
    pub sim_use: Option<Option<i64>>,
}

async fn patch_subscriber(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSubscribers>,
    Path(id): Path<Uuid>,
    Json(p): Json<PatchSubscriber>,
) -> ApiResult<Json<Subscriber>> {
    let sub = find_subscriber(&s, &t, id).await?;
    if p.password.as_deref() == Some("") {
        return Err(Problem::validation("password", "must not be empty"));
    }
    if let Some(Some(pid)) = p.plan_id {
        plan_name(&s, &t, pid).await?;
    }
    let patch = SubscriberPatch {
        password: p.password,
        status: p.status,
        plan_id: p.plan_id.map(|o| o.map(PlanId)),
        expires_at: p.expires_at,
        static_ip: p.static_ip,
        framed_ipv6_prefix: None,
        delegated_ipv6_prefix: None,
        mac_lock: p.mac_lock,
        sim_use: p.sim_use,
    };
    let sub = ops(&s, &t, &a, ip)
        .update_subscriber(&sub.username, &patch)
        .await?;
    Ok(Json(sub))
}

async fn delete_subscriber(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSubscribers>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let sub = find_subscriber(&s, &t, id).await?;
    ops(&s, &t, &a, ip).delete_subscriber(&sub.username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Renewal: extend the expiry by `days` (default: the plan's validity, else 30).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renew {
    /// Days to add (1..=3660).
    pub days: Option<i64>,
}

async fn renew_subscriber(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSubscribers>,
    Path(id): Path<Uuid>,
    Json(r): Json<Renew>,
) -> ApiResult<Json<Subscriber>> {
    let sub = find_subscriber(&s, &t, id).await?;
    let plan_days = match sub.plan_id {
        Some(pid) => s
            .store()
            .tenant(t.0.id)
            .plan(pid)
            .await?
            .and_then(|p| p.validity_days),
        None => None,
    };
    let days = r.days.or(plan_days).unwrap_or(30);
    if !(1..=3660).contains(&days) {
        return Err(Problem::validation("days", "must be between 1 and 3660"));
    }
    let now = Utc::now();
    let from = sub.expires_at.filter(|e| *e > now).unwrap_or(now);
    let patch = SubscriberPatch {
        expires_at: Some(Some(from + chrono::Duration::days(days))),
        status: (sub.status == SubscriberStatus::Expired).then_some(SubscriberStatus::Active),
        ..Default::default()
    };
    Ok(Json(
        ops(&s, &t, &a, ip)
            .update_subscriber(&sub.username, &patch)
            .await?,
    ))
}

async fn subscriber_usage(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Value>> {
    let sub = find_subscriber(&s, &t, id).await?;
    let (i, o) = s
        .store()
        .tenant(t.0.id)
        .usage_since(&sub.username, sub.usage_reset_at)
        .await?;
    Ok(Json(
        json!({"username": sub.username, "since": sub.usage_reset_at,
        "input_octets": i, "output_octets": o}),
    ))
}

// ---- NAS ----

async fn nas_list(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
) -> ApiResult<Json<Page<Nas>>> {
    Ok(Json(page(s.store().tenant(t.0.id).nas_list().await?)))
}

async fn find_nas(s: &AppState, t: &TenantHost, id: Uuid) -> ApiResult<Nas> {
    s.store()
        .tenant(t.0.id)
        .nas(NasId(id))
        .await?
        .ok_or_else(|| Problem::not_found("NAS not found"))
}

async fn nas(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Nas>> {
    Ok(Json(find_nas(&s, &t, id).await?))
}

/// New NAS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNas {
    /// Name.
    pub name: String,
    /// mikrotik or generic (default mikrotik).
    pub vendor: Option<NasVendor>,
    /// Source address of a direct NAS; absent = reached through a WireGuard peer.
    pub ip: Option<std::net::IpAddr>,
    /// RADIUS secret (generated when absent).
    pub secret: Option<String>,
    /// Message-Authenticator policy (default auto).
    pub message_auth: Option<MessageAuthPolicy>,
    /// CoA port (default 3799).
    pub coa_port: Option<u16>,
    /// RouterOS API user.
    pub api_user: Option<String>,
    /// RouterOS API password.
    pub api_password: Option<String>,
    /// Use API-SSL.
    pub use_ssl: Option<bool>,
}

async fn create_nas(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Json(c): Json<CreateNas>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if c.name.trim().is_empty() {
        return Err(Problem::validation("name", "must not be empty"));
    }
    let generated = c.secret.is_none();
    let secret = c
        .secret
        .unwrap_or_else(|| saas_core::crypto::random_token(18));
    if secret.is_empty() {
        return Err(Problem::validation("secret", "must not be empty"));
    }
    let n = NewNas {
        name: c.name.trim().to_owned(),
        vendor: c.vendor.unwrap_or(NasVendor::Mikrotik),
        ip: c.ip,
        secret: secret.clone(),
        message_auth: c.message_auth.unwrap_or(MessageAuthPolicy::Auto),
        coa_port: c.coa_port.unwrap_or(3799),
        api_user: c.api_user,
        api_password: c.api_password,
        use_ssl: c.use_ssl.unwrap_or(false),
    };
    let nas = ops(&s, &t, &a, ip).add_nas(&n).await?;
    let mut v = serde_json::to_value(&nas).map_err(|e| Problem::internal(&e))?;
    if generated {
        // Shown once, like a peer's script; the store keeps it sealed.
        v["secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(v)))
}

async fn delete_nas(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let nas = find_nas(&s, &t, id).await?;
    ops(&s, &t, &a, ip).delete_nas(&nas.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn check_nas(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanSettings>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Value>> {
    let nas = find_nas(&s, &t, id).await?;
    let ev = s
        .platform()
        .bus()
        .request(
            Some(t.0.id),
            kinds::NAS_CHECK,
            &json!({"nas": nas.id}),
            kinds::NAS_CHECK_RESULT,
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| {
            Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "nas-check-timeout",
                "No answer",
            )
            .detail(format!(
                "no process holding this NAS answered the check: {e}"
            ))
        })?;
    let v: Value = serde_json::from_str(&ev.payload).map_err(|e| Problem::internal(&e))?;
    Ok(Json(v))
}

// ---- peers ----

async fn peers(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
) -> ApiResult<Json<Page<WgPeer>>> {
    Ok(Json(page(s.store().tenant(t.0.id).peers().await?)))
}

/// New WireGuard peer of a tunnel NAS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePeer {
    /// The NAS (added without an address, i.e. reached through the relay).
    pub nas_id: Uuid,
    /// The router's public key; absent = a key pair is generated and its private half shown
    /// once in the answer.
    pub public_key: Option<String>,
}

async fn create_peer(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Json(c): Json<CreatePeer>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let nas = s
        .store()
        .tenant(t.0.id)
        .nas(NasId(c.nas_id))
        .await?
        .ok_or_else(|| Problem::validation("nas_id", "no such NAS in this account"))?;
    let Some(p) = s.config().peers.clone() else {
        return Err(Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "peers-unavailable",
            "Peer creation unavailable",
        )
        .detail("this API process has no relay settings; run it inside `proxpanel serve`"));
    };
    let v = p
        .add_peer(&ops(&s, &t, &a, ip), &nas.name, c.public_key.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn find_peer(s: &AppState, t: &TenantHost, id: Uuid) -> ApiResult<WgPeer> {
    s.store()
        .tenant(t.0.id)
        .peers()
        .await?
        .into_iter()
        .find(|p| p.id.0 == id)
        .ok_or_else(|| Problem::not_found("peer not found"))
}

async fn peer(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<WgPeer>> {
    Ok(Json(find_peer(&s, &t, id).await?))
}

async fn delete_peer(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let p = find_peer(&s, &t, id).await?;
    let nas = find_nas(&s, &t, p.nas_id.0).await?;
    ops(&s, &t, &a, ip).remove_peer(&nas.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- sessions, logs ----

/// Session listing parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    /// Only open sessions (default true); false = history too.
    pub online: Option<bool>,
    /// Most rows (1..=1000, default 100).
    pub limit: Option<i64>,
}

async fn sessions(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Query(q): Query<SessionQuery>,
) -> ApiResult<Json<Page<Session>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(page(
        s.store()
            .tenant(t.0.id)
            .sessions(q.online.unwrap_or(true), limit)
            .await?,
    )))
}

async fn find_session(s: &AppState, t: &TenantHost, id: Uuid) -> ApiResult<Session> {
    s.store()
        .tenant(t.0.id)
        .session(SessionId(id))
        .await?
        .ok_or_else(|| Problem::not_found("session not found"))
}

async fn session(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Session>> {
    Ok(Json(find_session(&s, &t, id).await?))
}

async fn disconnect_session(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSubscribers>,
    Path(id): Path<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let sess = find_session(&s, &t, id).await?;
    if sess.stopped_at.is_some() {
        return Err(Problem::conflict("this session has already ended"));
    }
    let o = ops(&s, &t, &a, ip);
    s.platform()
        .bus()
        .publish(
            Some(t.0.id),
            kinds::COA_REQUEST,
            &json!({"action": "disconnect", "username": sess.username, "acct_session_id": sess.acct_session_id}),
        )
        .await
        .map_err(|e| Problem::internal(&e))?;
    o.audit("session.disconnect", &sess.username).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"requested": "disconnect", "session": sess.id})),
    ))
}

/// Log listing parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Most rows (1..=1000, default 100).
    pub limit: Option<i64>,
}

async fn auth_log(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<Page<AuthLogEntry>>> {
    Ok(Json(page(
        s.store()
            .tenant(t.0.id)
            .auth_log(q.limit.unwrap_or(100))
            .await?,
    )))
}

async fn audit_log(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanSettings>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    Ok(Json(page(
        s.store()
            .tenant(t.0.id)
            .audit_log(q.limit.unwrap_or(100))
            .await?,
    )))
}

/// What the role matrix test and the OpenAPI document enumerate: (method, path, permission).
pub const ENDPOINTS: &[(&str, &str, crate::roles::Perm)] = {
    use crate::roles::Perm::*;
    &[
        ("GET", "/api/v1/me", Read),
        ("GET", "/api/v1/settings", Read),
        ("PATCH", "/api/v1/settings", Settings),
        ("GET", "/api/v1/users", Users),
        ("POST", "/api/v1/users", Users),
        ("GET", "/api/v1/api-tokens", Users),
        ("POST", "/api/v1/api-tokens", Users),
        ("GET", "/api/v1/plans", Read),
        ("POST", "/api/v1/plans", Settings),
        ("GET", "/api/v1/subscribers", Read),
        ("POST", "/api/v1/subscribers", Subscribers),
        ("GET", "/api/v1/nas", Read),
        ("POST", "/api/v1/nas", Settings),
        ("GET", "/api/v1/peers", Read),
        ("POST", "/api/v1/peers", Settings),
        ("GET", "/api/v1/sessions", Read),
        ("GET", "/api/v1/auth-log", Read),
        ("GET", "/api/v1/audit-log", Settings),
    ]
};
