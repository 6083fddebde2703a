//! `/api/v1` on a tenant host: auth, me, settings, users, plans, subscribers, NAS, peers,
//! sessions, auth log, audit log. Every mutation goes through `TenantOps` (audited with the
//! client address, announced on the bus).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use saas_core::bus::kinds;
use saas_core::ids::*;
use saas_core::model::*;
use saas_core::platform::TenantOps;
use saas_core::store::{Page, Rotation, SubscriberQuery, SubscriberSort};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};
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
        .route("/api/v1/me/verify-email", post(resend_verification))
        .route("/api/v1/settings", get(settings).patch(patch_settings))
        .route("/api/v1/users", get(users).post(create_user))
        .route(
            "/api/v1/users/{id}",
            get(user).patch(patch_user).delete(delete_user),
        )
        .route("/api/v1/api-tokens", get(api_tokens).post(create_api_token))
        .route(
            "/api/v1/api-tokens/{id}",
            axum::routing::delete(revoke_api_token),
        )
        .route("/api/v1/plans", get(plans).post(create_plan))
        .route(
            "/api/v1/plans/{id}",
            get(plan).patch(patch_plan).delete(delete_plan),
        )
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
        .route(
            "/api/v1/nas/{id}",
            get(nas).patch(patch_nas).delete(delete_nas),
        )
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
pub(crate) fn double<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::deserialize(d)?))
}

// ---- auth ----

/// Login body (DESIGN §8).
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Login e-mail.
    pub email: String,
    /// Password.
    pub password: String,
    /// TOTP code (operators).
    #[serde(default)]
    pub totp: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "Signed in", body = TokenPair)))]
async fn login(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<TokenPair>> {
    let account = user_account(&t.0, &req.email);
    let user = verify_user(&s, &t.0, &req.email, req.password).await?;
    limit::account_succeeded(&s, &account).await;
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
    // Per account (any address) beside the per-address ladder of the login limiter.
    let account = user_account(t, email);
    if let Some(p) = limit::account_locked(s, &account).await {
        return Err(p);
    }
    let scope = s.store().tenant(t.id);
    let found = match Email::parse(email) {
        Ok(e) => scope.user_by_email(&e).await?,
        Err(_) => None,
    };
    let Some((user, hash)) = found else {
        // Same work as a real check, so timing does not tell which e-mails exist.
        verify_password(password, s.dummy_hash().to_owned()).await;
        limit::account_failed(s, &account).await;
        return Err(refused());
    };
    if !verify_password(password, hash).await || user.disabled {
        limit::account_failed(s, &account).await;
        return Err(refused());
    }
    Ok(user)
}

/// The lockout key of a tenant user's login (per account, whatever the address).
pub fn user_account(t: &Tenant, email: &str) -> String {
    format!("{}:{}", t.id, email.trim().to_lowercase())
}

/// Refresh body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The current refresh token.
    pub refresh_token: String,
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, description = "A new token pair; the presented refresh token is spent", body = TokenPair)))]
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

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out: this access token and its login are revoked")))]
async fn logout(State(s): State<AppState>, a: Auth<CanRead>) -> ApiResult<StatusCode> {
    revoke_session(&s, &a).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- me, settings, users, API tokens ----

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeUser {
    /// E-mail (or API token name).
    pub email: String,
    /// Role.
    pub role: ApiRole,
    /// `user`, `operator_acting`, `api_token` or `operator`.
    pub kind: String,
    /// Whether the user's e-mail address is verified (users only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// Answer of `GET /api/v1/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The caller.
    pub user: MeUser,
    /// The tenant of this host.
    pub tenant: Tenant,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "account",
    responses((status = 200, description = "The caller and the tenant", body = Me)))]
async fn me(State(s): State<AppState>, t: TenantHost, a: Auth<CanRead>) -> ApiResult<Json<Me>> {
    let email_verified = match a.kind {
        auth::PrincipalKind::User(id) => s
            .store()
            .tenant(t.0.id)
            .user(id)
            .await?
            .map(|u| u.email_verified),
        _ => None,
    };
    Ok(Json(Me {
        user: MeUser {
            email: a.name.clone(),
            role: a.role,
            kind: match a.kind {
                auth::PrincipalKind::User(_) => "user",
                auth::PrincipalKind::ActAs(_) => "operator_acting",
                auth::PrincipalKind::ApiToken(_) => "api_token",
                auth::PrincipalKind::Operator(_) => "operator",
            }
            .to_owned(),
            email_verified,
        },
        tenant: (*t.0).clone(),
    }))
}

/// Answer of `POST /api/v1/me/verify-email`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationSent {
    /// The address the new link went to.
    pub to: String,
}

/// Most verification mails one user can ask for in an hour.
const RESENDS_PER_HOUR: i64 = 5;

#[utoipa::path(post, path = "/api/v1/me/verify-email", tag = "account",
    responses((status = 202, description = "A new verification link was mailed", body = VerificationSent),
              (status = 409, description = "The address is verified already", body = crate::problem::ProblemDocument),
              (status = 429, description = "Too many links asked for this hour", body = crate::problem::ProblemDocument)))]
async fn resend_verification(
    State(s): State<AppState>,
    t: TenantHost,
    a: Auth<CanRead>,
) -> ApiResult<(StatusCode, Json<VerificationSent>)> {
    let auth::PrincipalKind::User(id) = a.kind else {
        return Err(Problem::bad_request(
            "only a signed-in user can verify their own e-mail address",
        ));
    };
    let user = s
        .store()
        .tenant(t.0.id)
        .user(id)
        .await?
        .ok_or_else(|| Problem::unauthorized("this account no longer exists; sign in again"))?;
    if user.email_verified {
        return Err(Problem::conflict(format!(
            "{} is verified already",
            user.email.as_str()
        )));
    }
    // Counted per user, so a mailbox cannot be flooded from many addresses.
    let key = format!("pp:verify-mail:{}", id.0);
    match s
        .cache()
        .incr(&key, std::time::Duration::from_secs(3600))
        .await
    {
        Ok(n) if n > RESENDS_PER_HOUR => {
            return Err(Problem::too_many(
                format!(
                    "{RESENDS_PER_HOUR} verification links were sent this hour; use the newest one or try later"
                ),
                3600,
            ));
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cache unavailable; verification mail not rate-limited")
        }
    }
    crate::signup::send_verification(&s, &t.0, &user.email).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(VerificationSent {
            to: user.email.as_str().to_owned(),
        }),
    ))
}

/// Tenant settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct Settings {
    /// Display name.
    pub name: String,
    /// IANA timezone.
    pub timezone: String,
    /// Limits set by the platform operator.
    pub limits: TenantLimits,
}

impl Settings {
    fn of(t: &Tenant) -> Self {
        Self {
            name: t.name.clone(),
            timezone: t.timezone.clone(),
            limits: t.limits,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "account",
    responses((status = 200, description = "Tenant settings", body = Settings)))]
async fn settings(t: TenantHost, _a: Auth<CanRead>) -> Json<Settings> {
    Json(Settings::of(&t.0))
}

/// Tenant settings change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Display name.
    pub name: Option<String>,
    /// IANA timezone.
    pub timezone: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/settings", tag = "account", request_body = SettingsPatch,
    responses((status = 200, description = "Updated settings", body = Settings)))]
async fn patch_settings(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Json(p): Json<SettingsPatch>,
) -> ApiResult<Json<Settings>> {
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
    Ok(Json(Settings::of(&tenant)))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, description = "Panel users", body = Page<TenantUser>)))]
async fn users(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanUsers>,
) -> ApiResult<Json<Page<TenantUser>>> {
    Ok(Json(page(s.store().tenant(t.0.id).users().await?)))
}

/// New panel user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login.
    pub email: String,
    /// Password (8 characters or more).
    pub password: String,
    /// admin, staff or viewer.
    pub role: Role,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "Created", body = TenantUser)))]
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

#[utoipa::path(get, path = "/api/v1/api-tokens", tag = "users",
    responses((status = 200, description = "API tokens (never their text)", body = Page<saas_core::store::ApiTokenRow>)))]
async fn api_tokens(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanUsers>,
) -> ApiResult<Json<Page<saas_core::store::ApiTokenRow>>> {
    Ok(Json(page(s.store().tenant(t.0.id).api_tokens().await?)))
}

/// New API token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    /// Name to recognise it by.
    pub name: String,
    /// `read` or `write`.
    pub scope: String,
}

#[utoipa::path(post, path = "/api/v1/api-tokens", tag = "users", request_body = NewApiToken,
    responses((status = 201, description = "Created; the token text is shown once", body = ApiTokenCreated)))]
async fn create_api_token(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanUsers>,
    Json(n): Json<NewApiToken>,
) -> ApiResult<(StatusCode, Json<ApiTokenCreated>)> {
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
        Json(ApiTokenCreated {
            id,
            name: n.name.trim().to_owned(),
            scope: n.scope,
            token,
            note: "shown once; store it now".into(),
        }),
    ))
}

/// A new API token: its text is shown here once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiTokenCreated {
    /// Id (to revoke it).
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// `read` or `write`.
    pub scope: String,
    /// The token (`pp_…`); only its hash is kept.
    pub token: String,
    /// Reminder.
    pub note: String,
}

#[utoipa::path(delete, path = "/api/v1/api-tokens/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "API token id")),
    responses((status = 204, description = "Revoked")))]
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

#[utoipa::path(get, path = "/api/v1/plans", tag = "plans",
    responses((status = 200, description = "Service plans", body = Page<Plan>)))]
async fn plans(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
) -> ApiResult<Json<Page<Plan>>> {
    Ok(Json(page(s.store().tenant(t.0.id).plans().await?)))
}

#[utoipa::path(get, path = "/api/v1/plans/{id}", tag = "plans",
    params(("id" = Uuid, Path, description = "Plan id")),
    responses((status = 200, description = "The plan", body = Plan)))]
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

#[utoipa::path(post, path = "/api/v1/plans", tag = "plans", request_body = NewPlan,
    responses((status = 201, description = "Created", body = Plan)))]
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
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscriberListQuery {
    /// Substring of the username.
    pub search: Option<String>,
    /// Status filter.
    pub status: Option<SubscriberStatus>,
    /// Plan filter.
    pub plan_id: Option<Uuid>,
    /// Sort key: `username` (default), `created`, `expiry`, `status` or `plan`; prefix `-`
    /// for descending. Pages stay stable: ties are ordered by id.
    pub sort: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size 1..=500 (default 50).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/subscribers", tag = "subscribers", params(SubscriberListQuery),
    responses((status = 200, description = "A page of subscribers", body = Page<Subscriber>)))]
async fn subscribers(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Query(q): Query<SubscriberListQuery>,
) -> ApiResult<Json<Page<Subscriber>>> {
    let sort: SubscriberSort = match q.sort.as_deref() {
        Some(v) => v
            .parse()
            .map_err(|e: String| Problem::bad_request(e.clone()).field("sort", e))?,
        None => SubscriberSort::default(),
    };
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
    let page = s
        .store()
        .tenant(t.0.id)
        .subscribers_sorted(&sq, sort)
        .await
        .map_err(|e| match e {
            saas_core::StoreError::Invalid(m) => Problem::bad_request(m.clone()).field("cursor", m),
            e => e.into(),
        })?;
    Ok(Json(page))
}

async fn find_subscriber(s: &AppState, t: &TenantHost, id: Uuid) -> ApiResult<Subscriber> {
    s.store()
        .tenant(t.0.id)
        .subscriber(SubscriberId(id))
        .await?
        .ok_or_else(|| Problem::not_found("subscriber not found"))
}

#[utoipa::path(get, path = "/api/v1/subscribers/{id}", tag = "subscribers",
    params(("id" = Uuid, Path, description = "Subscriber id")),
    responses((status = 200, description = "The subscriber", body = Subscriber)))]
async fn subscriber(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Subscriber>> {
    Ok(Json(find_subscriber(&s, &t, id).await?))
}

/// New subscriber.
#[derive(Debug, Deserialize, ToSchema)]
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

#[utoipa::path(post, path = "/api/v1/subscribers", tag = "subscribers", request_body = CreateSubscriber,
    responses((status = 201, description = "Created", body = Subscriber)))]
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
#[derive(Debug, Deserialize, ToSchema)]
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

#[utoipa::path(patch, path = "/api/v1/subscribers/{id}", tag = "subscribers", request_body = PatchSubscriber,
    params(("id" = Uuid, Path, description = "Subscriber id")),
    responses((status = 200, description = "Updated", body = Subscriber)))]
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
        .update_found_subscriber(&sub, &patch)
        .await?;
    Ok(Json(sub))
}

#[utoipa::path(delete, path = "/api/v1/subscribers/{id}", tag = "subscribers",
    params(("id" = Uuid, Path, description = "Subscriber id")),
    responses((status = 204, description = "Deleted (an online subscriber is disconnected)")))]
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
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Renew {
    /// Days to add (1..=3660).
    pub days: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/subscribers/{id}/renew", tag = "subscribers", request_body = Renew,
    params(("id" = Uuid, Path, description = "Subscriber id")),
    responses((status = 200, description = "Renewed", body = Subscriber)))]
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

#[utoipa::path(get, path = "/api/v1/subscribers/{id}/usage", tag = "subscribers",
    params(("id" = Uuid, Path, description = "Subscriber id"), UsageQuery),
    responses((status = 200, description = "Usage of the current period, or per day / month", body = Usage)))]
async fn subscriber_usage(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Json<Usage>> {
    let sub = find_subscriber(&s, &t, id).await?;
    let scope = s.store().tenant(t.0.id);
    let (i, o) = scope.usage_since(&sub.username, sub.usage_reset_at).await?;
    let mut usage = Usage {
        username: sub.username.clone(),
        since: sub.usage_reset_at,
        input_octets: i,
        output_octets: o,
        period: None,
        timezone: None,
        items: None,
    };
    let Some(period) = q.period else {
        return Ok(Json(usage));
    };
    let tz: chrono_tz::Tz = t.0.timezone.parse().unwrap_or(chrono_tz::UTC);
    let buckets = crate::usage::buckets(period, q.count, tz, Utc::now())
        .map_err(|m| Problem::bad_request(m.clone()).field("count", m))?;
    let Some(first) = buckets.first().map(|b| b.0) else {
        return Err(Problem::bad_request("count must be at least 1"));
    };
    let rows = scope.session_usage(&sub.username, first).await?;
    usage.period = Some(period);
    usage.timezone = Some(t.0.timezone.clone());
    usage.items = Some(crate::usage::fill(&buckets, &rows, tz, period));
    Ok(Json(usage))
}

/// `?period=daily|monthly&count=N`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Per-day or per-month buckets (absent: only the current period's totals).
    pub period: Option<crate::usage::Period>,
    /// How many buckets back from today (daily 1..=366, default 30; monthly 1..=36, default 12).
    pub count: Option<u32>,
}

/// Usage of a subscriber: totals of the current period, and buckets when asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    /// Login.
    pub username: String,
    /// Start of the current usage period.
    pub since: Option<DateTime<Utc>>,
    /// Octets in since then.
    pub input_octets: i64,
    /// Octets out since then.
    pub output_octets: i64,
    /// Bucket size asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<crate::usage::Period>,
    /// Timezone the buckets are cut in (the tenant's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Buckets, oldest first, including empty ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<crate::usage::Bucket>>,
}

// ---- NAS ----

#[utoipa::path(get, path = "/api/v1/nas", tag = "nas",
    responses((status = 200, description = "NAS devices", body = Page<Nas>)))]
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

#[utoipa::path(get, path = "/api/v1/nas/{id}", tag = "nas",
    params(("id" = Uuid, Path, description = "NAS id")),
    responses((status = 200, description = "The NAS", body = Nas)))]
async fn nas(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Nas>> {
    Ok(Json(find_nas(&s, &t, id).await?))
}

/// New NAS.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNas {
    /// Name.
    pub name: String,
    /// mikrotik or generic (default mikrotik).
    pub vendor: Option<NasVendor>,
    /// Source address of a direct NAS; absent = reached through a WireGuard peer.
    #[schema(value_type = Option<String>)]
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

#[utoipa::path(post, path = "/api/v1/nas", tag = "nas", request_body = CreateNas,
    responses((status = 201, description = "Created; a generated RADIUS secret is shown once", body = NasCreated)))]
async fn create_nas(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Json(c): Json<CreateNas>,
) -> ApiResult<(StatusCode, Json<NasCreated>)> {
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
    // A generated secret is shown once, like a peer's script; the store keeps it sealed.
    Ok((
        StatusCode::CREATED,
        Json(NasCreated {
            nas,
            secret: generated.then_some(secret),
        }),
    ))
}

/// A new NAS; `secret` only when it was generated (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct NasCreated {
    /// The NAS.
    #[serde(flatten)]
    pub nas: Nas,
    /// The generated RADIUS secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[utoipa::path(delete, path = "/api/v1/nas/{id}", tag = "nas",
    params(("id" = Uuid, Path, description = "NAS id")),
    responses((status = 204, description = "Deleted with its sessions")))]
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

#[utoipa::path(post, path = "/api/v1/nas/{id}/check", tag = "nas",
    params(("id" = Uuid, Path, description = "NAS id")),
    responses((status = 200, description = "What the process holding the NAS found (`ok`: false with `error` when it could not be reached)", body = Value)))]
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
        .await;
    // Nobody answering is a result of the check (the tunnel is down, or no process with the
    // relay role holds it), not a server failure.
    let ev = match ev {
        Ok(ev) => ev,
        Err(e) => {
            tracing::debug!(error = %e, "nas.check unanswered");
            return Ok(Json(json!({
                "nas": nas.id,
                "ok": false,
                "api": "unreachable",
                "error": "no process holding this NAS answered within 5 s: its tunnel is down or no process runs the relay role for it",
            })));
        }
    };
    let v: Value = serde_json::from_str(&ev.payload).map_err(|e| Problem::internal(&e))?;
    Ok(Json(v))
}

// ---- peers ----

#[utoipa::path(get, path = "/api/v1/peers", tag = "peers",
    responses((status = 200, description = "WireGuard peers with status", body = Page<WgPeer>)))]
async fn peers(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
) -> ApiResult<Json<Page<WgPeer>>> {
    Ok(Json(page(s.store().tenant(t.0.id).peers().await?)))
}

/// New WireGuard peer of a tunnel NAS.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePeer {
    /// The NAS (added without an address, i.e. reached through the relay).
    pub nas_id: Uuid,
    /// The router's public key; absent = a key pair is generated and its private half shown
    /// once in the answer.
    pub public_key: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/peers", tag = "peers", request_body = CreatePeer,
    responses((status = 201, description = "The peer with the RouterOS script (and a generated private key), shown once", body = Value)))]
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

#[utoipa::path(get, path = "/api/v1/peers/{id}", tag = "peers",
    params(("id" = Uuid, Path, description = "Peer id")),
    responses((status = 200, description = "The peer", body = WgPeer)))]
async fn peer(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<WgPeer>> {
    Ok(Json(find_peer(&s, &t, id).await?))
}

#[utoipa::path(delete, path = "/api/v1/peers/{id}", tag = "peers",
    params(("id" = Uuid, Path, description = "Peer id")),
    responses((status = 204, description = "Removed; the relay drops the tunnel")))]
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
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only open sessions (default true); false = history too.
    pub online: Option<bool>,
    /// Most rows (1..=1000, default 100).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(SessionQuery),
    responses((status = 200, description = "Sessions, newest first", body = Page<Session>)))]
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

#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 200, description = "The session", body = Session)))]
async fn session(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Session>> {
    Ok(Json(find_session(&s, &t, id).await?))
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/disconnect", tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 202, description = "Disconnect requested", body = DisconnectRequested)))]
async fn disconnect_session(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSubscribers>,
    Path(id): Path<Uuid>,
) -> ApiResult<(StatusCode, Json<DisconnectRequested>)> {
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
        Json(DisconnectRequested {
            requested: "disconnect".into(),
            session: sess.id,
        }),
    ))
}

/// A disconnect request was sent to the process holding the NAS.
#[derive(Debug, Serialize, ToSchema)]
pub struct DisconnectRequested {
    /// Always `disconnect`.
    pub requested: String,
    /// The session.
    pub session: SessionId,
}

/// Log listing parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Most rows (1..=1000, default 100).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/auth-log", tag = "logs", params(LogQuery),
    responses((status = 200, description = "Newest post-auth lines", body = Page<AuthLogEntry>)))]
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

#[utoipa::path(get, path = "/api/v1/audit-log", tag = "logs", params(LogQuery),
    responses((status = 200, description = "Newest audit lines", body = Page<AuditEntry>)))]
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

// ---- changes added with the API gaps: users, plans, NAS ----

/// Audit line with the changed field names, then the bus event.
async fn audited(
    s: &AppState,
    o: &TenantOps,
    action: &str,
    target: &str,
    fields: &[&str],
    event: Option<(&str, Value)>,
) -> ApiResult<()> {
    let details = json!({ "fields": fields }).to_string();
    let ip = o_client_ip(o);
    o.scope()
        .audit_from(
            &o.actor().0,
            action,
            Some(target),
            Some(&details),
            ip.as_deref(),
        )
        .await?;
    if let Some((kind, payload)) = event {
        s.platform()
            .bus()
            .publish(Some(o.tenant().id), kind, &payload)
            .await
            .map_err(|e| Problem::internal(&e))?;
    }
    Ok(())
}

fn o_client_ip(o: &TenantOps) -> Option<String> {
    o.client_ip().map(str::to_owned)
}

fn set_fields(pairs: &[(&'static str, bool)]) -> Vec<&'static str> {
    pairs
        .iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| *n)
        .collect()
}

async fn find_user(s: &AppState, t: &TenantHost, id: Uuid) -> ApiResult<TenantUser> {
    s.store()
        .tenant(t.0.id)
        .user(UserId(id))
        .await?
        .ok_or_else(|| Problem::not_found("user not found"))
}

/// Owners are changed only by owners and operators (an admin cannot take over the account).
fn may_touch_owner(a: &Principal) -> bool {
    matches!(a.role, ApiRole::Owner | ApiRole::Operator)
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "The user", body = TenantUser)))]
async fn user(
    State(s): State<AppState>,
    t: TenantHost,
    _a: Auth<CanUsers>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<TenantUser>> {
    Ok(Json(find_user(&s, &t, id).await?))
}

/// Panel user change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    /// New role (`owner` only by an owner).
    pub role: Option<Role>,
    /// Refuse (true) or allow (false) login; disabling signs the user out.
    pub disabled: Option<bool>,
    /// New password (8 characters or more); signs the user out.
    pub password: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", request_body = PatchUser,
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "Updated", body = TenantUser)))]
async fn patch_user(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanUsers>,
    Path(id): Path<Uuid>,
    Json(p): Json<PatchUser>,
) -> ApiResult<Json<TenantUser>> {
    let cur = find_user(&s, &t, id).await?;
    if (cur.role == Role::Owner || p.role == Some(Role::Owner)) && !may_touch_owner(&a) {
        return Err(Problem::forbidden(
            "only an owner may change an owner or make someone owner",
        ));
    }
    let password_hash = match &p.password {
        Some(pw) => {
            if pw.chars().count() < saas_core::platform::MIN_PASSWORD_LEN {
                return Err(Problem::validation(
                    "password",
                    format!(
                        "must be at least {} characters",
                        saas_core::platform::MIN_PASSWORD_LEN
                    ),
                ));
            }
            Some(s.platform().hash_password(pw)?)
        }
        None => None,
    };
    let o = ops(&s, &t, &a, ip);
    let patch = UserPatch {
        role: p.role,
        disabled: p.disabled,
        password_hash,
    };
    let u = o
        .scope()
        .update_user(cur.id, &patch)
        .await?
        .ok_or_else(|| Problem::not_found("user not found"))?;
    let fields = set_fields(&[
        ("role", p.role.is_some()),
        ("disabled", p.disabled.is_some()),
        ("password", p.password.is_some()),
    ]);
    audited(&s, &o, "user.update", u.email.as_str(), &fields, None).await?;
    Ok(Json(u))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Deleted and signed out")))]
async fn delete_user(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanUsers>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let cur = find_user(&s, &t, id).await?;
    if cur.role == Role::Owner && !may_touch_owner(&a) {
        return Err(Problem::forbidden("only an owner may delete an owner"));
    }
    let o = ops(&s, &t, &a, ip);
    if !o.scope().delete_user(cur.id).await? {
        return Err(Problem::not_found("user not found"));
    }
    audited(&s, &o, "user.delete", cur.email.as_str(), &[], None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Plan change; `null` clears an optional field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchPlan {
    /// Name.
    pub name: Option<String>,
    /// Download rate (kbit/s).
    pub download_kbps: Option<i64>,
    /// Upload rate (kbit/s).
    pub upload_kbps: Option<i64>,
    /// Burst download rate.
    #[serde(default, deserialize_with = "double")]
    pub burst_download_kbps: Option<Option<i64>>,
    /// Burst upload rate.
    #[serde(default, deserialize_with = "double")]
    pub burst_upload_kbps: Option<Option<i64>>,
    /// Burst threshold.
    #[serde(default, deserialize_with = "double")]
    pub burst_threshold_kbps: Option<Option<i64>>,
    /// Burst time (s).
    #[serde(default, deserialize_with = "double")]
    pub burst_time_s: Option<Option<i64>>,
    /// Quota (bytes).
    #[serde(default, deserialize_with = "double")]
    pub quota_bytes: Option<Option<i64>>,
    /// FUP download rate.
    #[serde(default, deserialize_with = "double")]
    pub fup_download_kbps: Option<Option<i64>>,
    /// FUP upload rate.
    #[serde(default, deserialize_with = "double")]
    pub fup_upload_kbps: Option<Option<i64>>,
    /// Validity of a renewal (days).
    #[serde(default, deserialize_with = "double")]
    pub validity_days: Option<Option<i64>>,
    /// Price in cents.
    pub price_cents: Option<i64>,
    /// IPv4 pool.
    #[serde(default, deserialize_with = "double")]
    pub ip_pool: Option<Option<String>>,
    /// IPv6 pool.
    #[serde(default, deserialize_with = "double")]
    pub ipv6_pool: Option<Option<String>>,
    /// Delegated prefix pool.
    #[serde(default, deserialize_with = "double")]
    pub delegated_ipv6_pool: Option<Option<String>>,
    /// Session-Timeout (s).
    #[serde(default, deserialize_with = "double")]
    pub session_timeout_s: Option<Option<i64>>,
    /// Simultaneous use.
    pub sim_use: Option<i64>,
}

fn merge<T: Clone>(cur: &Option<T>, new: &Option<Option<T>>) -> Option<T> {
    match new {
        Some(v) => v.clone(),
        None => cur.clone(),
    }
}

#[utoipa::path(patch, path = "/api/v1/plans/{id}", tag = "plans", request_body = PatchPlan,
    params(("id" = Uuid, Path, description = "Plan id")),
    responses((status = 200, description = "Updated (online subscribers get the new rate at their next CoA or login)", body = Plan)))]
async fn patch_plan(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Path(id): Path<Uuid>,
    Json(p): Json<PatchPlan>,
) -> ApiResult<Json<Plan>> {
    let cur = s
        .store()
        .tenant(t.0.id)
        .plan(PlanId(id))
        .await?
        .ok_or_else(|| Problem::not_found("plan not found"))?;
    if p.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(Problem::validation("name", "must not be empty"));
    }
    let new = NewPlan {
        name: p.name.clone().unwrap_or(cur.name.clone()),
        download_kbps: p.download_kbps.unwrap_or(cur.download_kbps),
        upload_kbps: p.upload_kbps.unwrap_or(cur.upload_kbps),
        burst_download_kbps: merge(&cur.burst_download_kbps, &p.burst_download_kbps),
        burst_upload_kbps: merge(&cur.burst_upload_kbps, &p.burst_upload_kbps),
        burst_threshold_kbps: merge(&cur.burst_threshold_kbps, &p.burst_threshold_kbps),
        burst_time_s: merge(&cur.burst_time_s, &p.burst_time_s),
        quota_bytes: merge(&cur.quota_bytes, &p.quota_bytes),
        fup_download_kbps: merge(&cur.fup_download_kbps, &p.fup_download_kbps),
        fup_upload_kbps: merge(&cur.fup_upload_kbps, &p.fup_upload_kbps),
        validity_days: merge(&cur.validity_days, &p.validity_days),
        price_cents: p.price_cents.unwrap_or(cur.price_cents),
        ip_pool: merge(&cur.ip_pool, &p.ip_pool),
        ipv6_pool: merge(&cur.ipv6_pool, &p.ipv6_pool),
        delegated_ipv6_pool: merge(&cur.delegated_ipv6_pool, &p.delegated_ipv6_pool),
        session_timeout_s: merge(&cur.session_timeout_s, &p.session_timeout_s),
        sim_use: Some(p.sim_use.unwrap_or(cur.sim_use)),
    };
    let o = ops(&s, &t, &a, ip);
    let plan = o
        .scope()
        .update_plan(cur.id, &new)
        .await?
        .ok_or_else(|| Problem::not_found("plan not found"))?;
    let fields = set_fields(&[
        ("name", p.name.is_some()),
        (
            "rates",
            p.download_kbps.is_some() || p.upload_kbps.is_some(),
        ),
        (
            "burst",
            p.burst_download_kbps.is_some()
                || p.burst_upload_kbps.is_some()
                || p.burst_threshold_kbps.is_some()
                || p.burst_time_s.is_some(),
        ),
        (
            "quota",
            p.quota_bytes.is_some() || p.fup_download_kbps.is_some() || p.fup_upload_kbps.is_some(),
        ),
        ("validity_days", p.validity_days.is_some()),
        ("price_cents", p.price_cents.is_some()),
        (
            "pools",
            p.ip_pool.is_some() || p.ipv6_pool.is_some() || p.delegated_ipv6_pool.is_some(),
        ),
        ("session_timeout_s", p.session_timeout_s.is_some()),
        ("sim_use", p.sim_use.is_some()),
    ]);
    audited(
        &s,
        &o,
        "plan.update",
        &plan.name,
        &fields,
        Some((kinds::PLAN_CHANGED, json!({"plan": plan.id}))),
    )
    .await?;
    Ok(Json(plan))
}

#[utoipa::path(delete, path = "/api/v1/plans/{id}", tag = "plans",
    params(("id" = Uuid, Path, description = "Plan id")),
    responses((status = 204, description = "Deleted"),
        (status = 409, description = "Subscribers still use the plan", body = crate::problem::ProblemDocument, content_type = "application/problem+json")))]
async fn delete_plan(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let cur = s
        .store()
        .tenant(t.0.id)
        .plan(PlanId(id))
        .await?
        .ok_or_else(|| Problem::not_found("plan not found"))?;
    let o = ops(&s, &t, &a, ip);
    if !o.scope().delete_plan(cur.id).await? {
        return Err(Problem::not_found("plan not found"));
    }
    audited(
        &s,
        &o,
        "plan.delete",
        &cur.name,
        &[],
        Some((
            kinds::PLAN_CHANGED,
            json!({"plan": cur.id, "deleted": true}),
        )),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// NAS change; `null` clears the API login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchNas {
    /// Name.
    pub name: Option<String>,
    /// mikrotik or generic.
    pub vendor: Option<NasVendor>,
    /// New source address of a direct NAS (a tunnel NAS has none: delete and add it again to
    /// change how it is reached).
    #[schema(value_type = Option<String>)]
    pub ip: Option<std::net::IpAddr>,
    /// New RADIUS secret.
    pub secret: Option<String>,
    /// Message-Authenticator policy.
    pub message_auth: Option<MessageAuthPolicy>,
    /// CoA port.
    pub coa_port: Option<u16>,
    /// RouterOS API user.
    #[serde(default, deserialize_with = "double")]
    pub api_user: Option<Option<String>>,
    /// RouterOS API password.
    #[serde(default, deserialize_with = "double")]
    pub api_password: Option<Option<String>>,
    /// Use API-SSL.
    pub use_ssl: Option<bool>,
}

#[utoipa::path(patch, path = "/api/v1/nas/{id}", tag = "nas", request_body = PatchNas,
    params(("id" = Uuid, Path, description = "NAS id")),
    responses((status = 200, description = "Updated", body = Nas)))]
async fn patch_nas(
    State(s): State<AppState>,
    t: TenantHost,
    ip: ClientIp,
    a: Auth<CanSettings>,
    Path(id): Path<Uuid>,
    Json(p): Json<PatchNas>,
) -> ApiResult<Json<Nas>> {
    let cur = find_nas(&s, &t, id).await?;
    if p.ip.is_some() && cur.ip.is_none() {
        return Err(Problem::validation(
            "ip",
            "this NAS is reached through a WireGuard peer; delete it and add it again with an address to make it direct",
        ));
    }
    if p.coa_port == Some(0) {
        return Err(Problem::validation("coa_port", "must be 1 to 65535"));
    }
    let patch = NasPatch {
        name: p.name.clone(),
        vendor: p.vendor,
        ip: p.ip,
        secret: p.secret.clone(),
        message_auth: p.message_auth,
        coa_port: p.coa_port,
        api_user: p.api_user.clone(),
        api_password: p.api_password.clone(),
        use_ssl: p.use_ssl,
    };
    let o = ops(&s, &t, &a, ip);
    let nas = o
        .scope()
        .update_nas(cur.id, &patch)
        .await?
        .ok_or_else(|| Problem::not_found("NAS not found"))?;
    let fields = set_fields(&[
        ("name", p.name.is_some()),
        ("vendor", p.vendor.is_some()),
        ("ip", p.ip.is_some()),
        ("secret", p.secret.is_some()),
        ("message_auth", p.message_auth.is_some()),
        ("coa_port", p.coa_port.is_some()),
        ("api_user", p.api_user.is_some()),
        ("api_password", p.api_password.is_some()),
        ("use_ssl", p.use_ssl.is_some()),
    ]);
    audited(
        &s,
        &o,
        "nas.update",
        &nas.name,
        &fields,
        Some((kinds::NAS_CHANGED, json!({"nas": nas.id}))),
    )
    .await?;
    Ok(Json(nas))
}

/// What the role matrix test enumerates (and the OpenAPI test checks are documented):
/// (method, path, permission).
pub const ENDPOINTS: &[(&str, &str, crate::roles::Perm)] = {
    use crate::roles::Perm::*;
    &[
        ("GET", "/api/v1/me", Read),
        ("POST", "/api/v1/me/verify-email", Read),
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

/// The tenant host's operations (served at `/api/v1/openapi.json` on tenant hosts).
#[derive(OpenApi)]
#[openapi(paths(
    login,
    refresh,
    logout,
    me,
    resend_verification,
    settings,
    patch_settings,
    users,
    create_user,
    user,
    patch_user,
    delete_user,
    api_tokens,
    create_api_token,
    revoke_api_token,
    plans,
    create_plan,
    plan,
    patch_plan,
    delete_plan,
    subscribers,
    create_subscriber,
    subscriber,
    patch_subscriber,
    delete_subscriber,
    renew_subscriber,
    subscriber_usage,
    nas_list,
    create_nas,
    nas,
    patch_nas,
    delete_nas,
    check_nas,
    peers,
    create_peer,
    peer,
    delete_peer,
    sessions,
    session,
    disconnect_session,
    auth_log,
    audit_log,
))]
pub struct TenantDoc;
