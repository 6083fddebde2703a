//! The operator host: login with TOTP, tenants (create through the provisioning pipeline,
//! suspend, resume, delete, limits), the audited act-as-tenant token exchange, relay status,
//! DNS records and platform stats.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use saas_core::ids::{Email, Slug};
use saas_core::model::{DnsRecord, Tenant};
use saas_core::model::{TenantLimits, TenantStatus, TenantSummary};
use saas_core::platform::{Platform, ProvisionRequest};
use saas_core::store::{Page, Rotation};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::auth::{self, Auth, TokenPair, TokenType};
use crate::host::ClientIp;
use crate::problem::{ApiResult, Json, Path, Problem};
use crate::roles::{ApiRole, CanPlatform};
use crate::tenant::{LoginRequest, RefreshRequest};
use crate::{AppState, limit, verify_password};

/// The operator host's routes.
pub fn router(state: &AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route_layer(from_fn_with_state(
            (state.clone(), "operator-login"),
            limit::guard,
        ));
    Router::new()
        .merge(guarded)
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/operator/me", get(me))
        .route("/api/v1/operator/tenants", get(tenants).post(create_tenant))
        .route(
            "/api/v1/operator/tenants/{slug}",
            get(tenant).patch(patch_tenant).delete(delete_tenant),
        )
        .route("/api/v1/operator/tenants/{slug}/suspend", post(suspend))
        .route("/api/v1/operator/tenants/{slug}/resume", post(resume))
        .route("/api/v1/operator/tenants/{slug}/act-as", post(act_as))
        .route("/api/v1/operator/relays", get(relays))
        .route(
            "/api/v1/operator/dns_records",
            get(dns_records).post(add_dns_record),
        )
        .route(
            "/api/v1/operator/dns_records/{id}",
            axum::routing::delete(remove_dns_record),
        )
        .route("/api/v1/operator/stats", get(stats))
}

fn platform(s: &AppState, ip: ClientIp) -> Platform {
    s.platform().with_client_ip(ip.0.to_string())
}

fn now_unix() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "Signed in (TOTP required)", body = TokenPair)))]
async fn login(
    State(s): State<AppState>,
    ip: ClientIp,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<TokenPair>> {
    let refused = || Problem::unauthorized("wrong e-mail, password or TOTP code");
    let account = operator_account(&req.email);
    let (op, secret) = verify_operator(&s, &req.email, req.password).await?;
    let Some(code) = req.totp.as_deref() else {
        return Err(Problem::unauthorized(
            "a TOTP code is required: add \"totp\" (enrol your authenticator with the URI printed by `proxpanel operator create`)",
        ));
    };
    if !saas_core::crypto::totp::verify(&secret, now_unix(), code) {
        limit::account_failed(&s, &account).await;
        return Err(refused());
    }
    limit::account_succeeded(&s, &account).await;
    if !op.totp_enrolled {
        s.store().platform().set_operator_enrolled(op.id).await?;
    }
    let fam = Uuid::new_v4();
    let rt = auth::new_refresh_token(fam);
    let expires = saas_core::store::now()
        + chrono::Duration::from_std(auth::REFRESH_TTL).unwrap_or(chrono::Duration::days(30));
    s.store()
        .platform()
        .create_operator_refresh_family(fam, op.id, &auth::sha256_hex(&rt), expires)
        .await?;
    s.store()
        .platform()
        .audit_from(
            &format!("operator:{}", op.email),
            "auth.login",
            Some(op.email.as_str()),
            None,
            Some(&ip.0.to_string()),
        )
        .await?;
    let ttl = s.config().access_ttl;
    let c = auth::claims(
        op.id.0,
        TokenType::Operator,
        None,
        ApiRole::Operator,
        op.email.as_str(),
        Some(fam),
        ttl,
    );
    Ok(Json(TokenPair {
        access_token: s.operator_keys().sign(&c)?,
        refresh_token: Some(rt),
        expires_in: ttl.as_secs(),
        token_type: "Bearer",
    }))
}

/// Checks an operator's e-mail and password (the same work whether or not the e-mail exists);
/// answers the operator and its TOTP secret. The caller checks the TOTP code.
pub async fn verify_operator(
    s: &AppState,
    email: &str,
    password: String,
) -> ApiResult<(saas_core::model::Operator, Vec<u8>)> {
    let refused = || Problem::unauthorized("wrong e-mail, password or TOTP code");
    let account = operator_account(email);
    if let Some(p) = limit::account_locked(s, &account).await {
        return Err(p);
    }
    let found = match Email::parse(email) {
        Ok(e) => s.store().platform().operator_by_email(&e).await?,
        Err(_) => None,
    };
    let Some((op, hash, secret)) = found else {
        verify_password(password, s.dummy_hash().to_owned()).await;
        limit::account_failed(s, &account).await;
        return Err(refused());
    };
    if !verify_password(password, hash).await {
        limit::account_failed(s, &account).await;
        return Err(refused());
    }
    Ok((op, secret))
}

/// The lockout key of an operator login (per account, whatever the address).
pub fn operator_account(email: &str) -> String {
    format!("operator:{}", email.trim().to_lowercase())
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, description = "A new token pair", body = TokenPair)))]
async fn refresh(
    State(s): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Json<TokenPair>> {
    let fam = auth::refresh_family(&req.refresh_token)
        .ok_or_else(|| Problem::unauthorized("this is not a refresh token; sign in again"))?;
    let next = auth::new_refresh_token(fam);
    let r = s
        .store()
        .platform()
        .rotate_operator_refresh(
            fam,
            &auth::sha256_hex(&req.refresh_token),
            &auth::sha256_hex(&next),
        )
        .await?;
    let Rotation::Rotated(oid) = r else {
        return Err(auth::rotation_problem(&r));
    };
    let op = s
        .store()
        .platform()
        .operator(oid)
        .await?
        .ok_or_else(|| Problem::unauthorized("this operator no longer exists"))?;
    let ttl = s.config().access_ttl;
    let c = auth::claims(
        op.id.0,
        TokenType::Operator,
        None,
        ApiRole::Operator,
        op.email.as_str(),
        Some(fam),
        ttl,
    );
    Ok(Json(TokenPair {
        access_token: s.operator_keys().sign(&c)?,
        refresh_token: Some(next),
        expires_in: ttl.as_secs(),
        token_type: "Bearer",
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out")))]
async fn logout(State(s): State<AppState>, a: Auth<CanPlatform>) -> ApiResult<StatusCode> {
    crate::tenant::revoke_session(&s, &a).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/operator/me", tag = "operator",
    responses((status = 200, description = "The operator", body = OperatorMe)))]
async fn me(a: Auth<CanPlatform>) -> Json<OperatorMe> {
    Json(OperatorMe {
        email: a.name.clone(),
        role: a.role,
    })
}

/// The signed-in operator.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorMe {
    /// Login.
    pub email: String,
    /// Always `operator`.
    pub role: ApiRole,
}

#[utoipa::path(get, path = "/api/v1/operator/tenants", tag = "operator",
    responses((status = 200, description = "Tenants with counts", body = Page<TenantSummary>)))]
async fn tenants(
    State(s): State<AppState>,
    _a: Auth<CanPlatform>,
) -> ApiResult<Json<Page<TenantSummary>>> {
    let items = s
        .platform()
        .tenants()
        .await?
        .into_iter()
        .filter(|t| t.tenant.status != TenantStatus::Deleted)
        .collect();
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

/// New tenant from the operator console.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Subdomain.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Owner login.
    pub email: String,
    /// Owner password.
    pub password: String,
    /// IANA timezone (default UTC).
    pub timezone: Option<String>,
    /// Limits (defaults when absent).
    pub limits: Option<TenantLimits>,
}

#[utoipa::path(post, path = "/api/v1/operator/tenants", tag = "operator", request_body = CreateTenant,
    responses((status = 201, description = "Provisioned", body = TenantCreated)))]
async fn create_tenant(
    State(s): State<AppState>,
    ip: ClientIp,
    a: Auth<CanPlatform>,
    Json(c): Json<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantCreated>)> {
    let slug = Slug::parse(&c.slug.to_ascii_lowercase())
        .map_err(|e| Problem::validation("slug", e.to_string()))?;
    let email = Email::parse(&c.email).map_err(|e| Problem::validation("email", e.to_string()))?;
    if let Some(l) = c.limits {
        check_limits(&l)?;
    }
    let req = ProvisionRequest {
        slug,
        name: c.name,
        owner_email: email,
        owner_password: c.password,
        timezone: c.timezone.unwrap_or_else(|| "UTC".into()),
        limits: c.limits,
    };
    let t = platform(&s, ip).provision_tenant(&req, &a.actor()).await?;
    s.tenants().invalidate(Some(t.slug.as_str()));
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            panel_url: s.config().panel_url(t.slug.as_str()),
            tenant: t,
        }),
    ))
}

/// A provisioned tenant and where its panel is.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantCreated {
    /// The tenant.
    pub tenant: Tenant,
    /// Its panel URL.
    pub panel_url: String,
}

fn check_limits(l: &TenantLimits) -> ApiResult<()> {
    if l.max_subscribers < 0 {
        return Err(Problem::validation(
            "limits.max_subscribers",
            "must be 0 or more",
        ));
    }
    if l.max_nas < 0 {
        return Err(Problem::validation("limits.max_nas", "must be 0 or more"));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/operator/tenants/{slug}", tag = "operator",
    params(("slug" = String, Path, description = "Tenant slug")),
    responses((status = 200, description = "The tenant with counts", body = TenantSummary)))]
async fn tenant(
    State(s): State<AppState>,
    _a: Auth<CanPlatform>,
    Path(slug): Path<String>,
) -> ApiResult<Json<TenantSummary>> {
    let t = s.platform().tenant_by_slug(&slug).await?;
    let summary = s
        .platform()
        .tenants()
        .await?
        .into_iter()
        .find(|x| x.tenant.id == t.id);
    Ok(Json(summary.ok_or_else(|| {
        Problem::not_found(format!("tenant {slug:?} not found"))
    })?))
}

/// Operator change of a tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenant {
    /// Display name.
    pub name: Option<String>,
    /// Limits.
    pub limits: Option<TenantLimits>,
    /// QuotaSync interval in seconds (10–3600); `null` returns to the platform default.
    #[serde(default, deserialize_with = "crate::tenant::double")]
    pub quota_sync_s: Option<Option<u32>>,
}

#[utoipa::path(patch, path = "/api/v1/operator/tenants/{slug}", tag = "operator", request_body = PatchTenant,
    params(("slug" = String, Path, description = "Tenant slug")),
    responses((status = 200, description = "Updated", body = Tenant)))]
async fn patch_tenant(
    State(s): State<AppState>,
    ip: ClientIp,
    a: Auth<CanPlatform>,
    Path(slug): Path<String>,
    Json(p): Json<PatchTenant>,
) -> ApiResult<Json<Tenant>> {
    if let Some(l) = &p.limits {
        check_limits(l)?;
    }
    // The same audited, announced change as `proxpanel tenant update`.
    let change = saas_core::platform::TenantChange {
        name: p.name,
        max_subscribers: p.limits.map(|l| l.max_subscribers),
        max_nas: p.limits.map(|l| l.max_nas),
        quota_sync_s: p.quota_sync_s,
        ..Default::default()
    };
    let t = platform(&s, ip)
        .update_tenant(&slug, &change, &a.actor())
        .await?;
    s.tenants().invalidate(Some(t.slug.as_str()));
    Ok(Json(t))
}

async fn set_status(
    s: &AppState,
    ip: ClientIp,
    a: &auth::Principal,
    slug: &str,
    status: TenantStatus,
) -> ApiResult<Json<Tenant>> {
    let t = platform(s, ip)
        .set_tenant_status(slug, status, &a.actor())
        .await?;
    s.tenants().invalidate(Some(t.slug.as_str()));
    Ok(Json(t))
}

#[utoipa::path(post, path = "/api/v1/operator/tenants/{slug}/suspend", tag = "operator",
    params(("slug" = String, Path, description = "Tenant slug")),
    responses((status = 200, description = "Suspended", body = Tenant)))]
async fn suspend(
    State(s): State<AppState>,
    ip: ClientIp,
    a: Auth<CanPlatform>,
    Path(slug): Path<String>,
) -> ApiResult<Json<Tenant>> {
    set_status(&s, ip, &a, &slug, TenantStatus::Suspended).await
}

#[utoipa::path(post, path = "/api/v1/operator/tenants/{slug}/resume", tag = "operator",
    params(("slug" = String, Path, description = "Tenant slug")),
    responses((status = 200, description = "Active again", body = Tenant)))]
async fn resume(
    State(s): State<AppState>,
    ip: ClientIp,
    a: Auth<CanPlatform>,
    Path(slug): Path<String>,
) -> ApiResult<Json<Tenant>> {
    set_status(&s, ip, &a, &slug, TenantStatus::Active).await
}

#[utoipa::path(delete, path = "/api/v1/operator/tenants/{slug}", tag = "operator",
    params(("slug" = String, Path, description = "Tenant slug")),
    responses((status = 204, description = "Marked deleted (purged after the grace period)")))]
async fn delete_tenant(
    State(s): State<AppState>,
    ip: ClientIp,
    a: Auth<CanPlatform>,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    set_status(&s, ip, &a, &slug, TenantStatus::Deleted).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/operator/tenants/{slug}/act-as", tag = "operator",
    params(("slug" = String, Path, description = "Tenant slug")),
    responses((status = 200, description = "A short-lived tenant token (audited)", body = ActAsToken)))]
async fn act_as(
    State(s): State<AppState>,
    ip: ClientIp,
    a: Auth<CanPlatform>,
    Path(slug): Path<String>,
) -> ApiResult<Json<ActAsToken>> {
    let t = s.platform().tenant_by_slug(&slug).await?;
    if t.status != TenantStatus::Active {
        return Err(Problem::conflict(format!(
            "tenant {slug:?} is {}; resume it before acting on it",
            t.status
        )));
    }
    let auth::PrincipalKind::Operator(op) = a.kind else {
        return Err(Problem::forbidden("only an operator may act as a tenant"));
    };
    let ipt = ip.0.to_string();
    let actor = a.actor().0;
    s.store()
        .tenant(t.id)
        .audit_from(
            &actor,
            "operator.act_as",
            Some(t.slug.as_str()),
            None,
            Some(&ipt),
        )
        .await?;
    s.store()
        .platform()
        .audit_from(
            &actor,
            "operator.act_as",
            Some(t.slug.as_str()),
            None,
            Some(&ipt),
        )
        .await?;
    let c = auth::claims(
        op.0,
        TokenType::ActAs,
        Some(t.id),
        ApiRole::Operator,
        &a.name,
        None,
        auth::ACT_AS_TTL,
    );
    Ok(Json(ActAsToken {
        access_token: s.tenant_keys().sign(&c)?,
        expires_in: auth::ACT_AS_TTL.as_secs(),
        token_type: "Bearer".into(),
        panel_url: s.config().panel_url(t.slug.as_str()),
        tenant: t.slug,
    }))
}

/// An operator's short-lived token on one tenant's host.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActAsToken {
    /// JWT valid on the tenant's host only.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Always `Bearer`.
    pub token_type: String,
    /// The tenant's slug.
    pub tenant: Slug,
    /// The tenant's panel URL.
    pub panel_url: String,
}

#[utoipa::path(get, path = "/api/v1/operator/relays", tag = "operator",
    responses((status = 200, description = "Relay nodes with peer counts", body = Page<RelayStatus>)))]
async fn relays(
    State(s): State<AppState>,
    _a: Auth<CanPlatform>,
) -> ApiResult<Json<Page<RelayStatus>>> {
    let peers = s.store().system().relay_peers().await?;
    let mut nodes: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for p in &peers {
        let e = nodes
            .entry(p.relay_node.clone().unwrap_or_else(|| "-".into()))
            .or_default();
        e.0 += 1;
        if p.handshake_tai64.is_some() {
            e.1 += 1;
        }
    }
    let items = nodes
        .into_iter()
        .map(|(node, (peers, seen))| RelayStatus {
            node,
            peers,
            peers_with_handshake: seen,
        })
        .collect();
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

/// One relay node.
#[derive(Debug, Serialize, ToSchema)]
pub struct RelayStatus {
    /// Node name (`-` for peers of no node).
    pub node: String,
    /// Peers it holds.
    pub peers: u64,
    /// Of those, peers that have completed a handshake.
    pub peers_with_handshake: u64,
}

#[utoipa::path(get, path = "/api/v1/operator/dns_records", tag = "dns",
    responses((status = 200, description = "Managed DNS records", body = Page<DnsRecord>)))]
async fn dns_records(
    State(s): State<AppState>,
    _a: Auth<CanPlatform>,
) -> ApiResult<Json<Page<DnsRecord>>> {
    Ok(Json(Page {
        items: s.platform().dns_records().await?,
        next_cursor: None,
    }))
}

/// An extra DNS record of the SaaS zone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDnsRecord {
    /// Owner name, absolute (e.g. `www.saas.example.com`).
    pub name: String,
    /// TXT, A, AAAA, CAA, CNAME or MX.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Value in presentation format.
    pub value: String,
    /// TTL in seconds (default 60).
    pub ttl: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/operator/dns_records", tag = "dns", request_body = NewDnsRecord,
    responses((status = 201, description = "Added (or already there); the DNS role serves it within a second", body = DnsRecord)))]
async fn add_dns_record(
    State(s): State<AppState>,
    ip: ClientIp,
    a: Auth<CanPlatform>,
    Json(r): Json<NewDnsRecord>,
) -> ApiResult<(StatusCode, Json<DnsRecord>)> {
    let rec = platform(&s, ip)
        .add_dns_record(&r.name, &r.rtype, &r.value, r.ttl, &a.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

#[utoipa::path(delete, path = "/api/v1/operator/dns_records/{id}", tag = "dns",
    params(("id" = Uuid, Path, description = "Record id")),
    responses((status = 204, description = "Removed; the DNS role stops serving it within a second")))]
async fn remove_dns_record(
    State(s): State<AppState>,
    ip: ClientIp,
    a: Auth<CanPlatform>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let rec = s
        .platform()
        .dns_records()
        .await?
        .into_iter()
        .find(|r| r.id.0 == id)
        .ok_or_else(|| Problem::not_found("DNS record not found"))?;
    // (name, type, value) is unique: adding the same record again is a no-op.
    platform(&s, ip)
        .remove_dns_records(&rec.name, &rec.rtype, Some(&rec.value), &a.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Platform counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Tenants by status.
    pub tenants: TenantCounts,
    /// Subscribers of every tenant.
    pub subscribers: i64,
    /// Open sessions.
    pub online: i64,
    /// NAS devices.
    pub nas: i64,
}

/// Tenants by status.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantCounts {
    /// Active.
    pub active: usize,
    /// Suspended.
    pub suspended: usize,
    /// Provisioning.
    pub provisioning: usize,
    /// Deleted (not purged yet).
    pub deleted: usize,
}

#[utoipa::path(get, path = "/api/v1/operator/stats", tag = "operator",
    responses((status = 200, description = "Platform counts", body = Stats)))]
async fn stats(State(s): State<AppState>, _a: Auth<CanPlatform>) -> ApiResult<Json<Stats>> {
    let ts = s.platform().tenants().await?;
    let by = |st: TenantStatus| ts.iter().filter(|t| t.tenant.status == st).count();
    Ok(Json(Stats {
        tenants: TenantCounts {
            active: by(TenantStatus::Active),
            suspended: by(TenantStatus::Suspended),
            provisioning: by(TenantStatus::Provisioning),
            deleted: by(TenantStatus::Deleted),
        },
        subscribers: ts.iter().map(|t| t.subscribers).sum::<i64>(),
        online: ts.iter().map(|t| t.online).sum::<i64>(),
        nas: ts.iter().map(|t| t.nas).sum::<i64>(),
    }))
}

/// The operator host's operations.
#[derive(OpenApi)]
#[openapi(paths(
    login,
    refresh,
    logout,
    me,
    tenants,
    create_tenant,
    tenant,
    patch_tenant,
    suspend,
    resume,
    delete_tenant,
    act_as,
    relays,
    dns_records,
    add_dns_record,
    remove_dns_record,
    stats,
))]
pub struct OperatorDoc;
