//! The apex host: `GET /api/v1/signup/check?slug=` and `POST /api/v1/signup` (the provisioning
//! pipeline). A retried signup with the same owner e-mail and password answers like the
//! first; of two racing signups for one slug exactly one creates the tenant, the other is 409.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use saas_core::ids::{Email, Slug};
use saas_core::model::Tenant;
use saas_core::model::TenantStatus;
use saas_core::platform::{Actor, MIN_PASSWORD_LEN, PlatformError, ProvisionRequest};
use saas_core::store::Verification;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::host::ClientIp;
use crate::mail::Message;
use crate::problem::{ApiResult, Json, Problem, Query};
use crate::{AppState, limit, verify_password};

/// A slug left in `provisioning` longer than this is a crashed run that a retry may finish.
const STALE_PROVISIONING_S: i64 = 60;

/// The apex host's routes.
pub fn router(state: &AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/api/v1/signup", post(signup))
        .route_layer(from_fn_with_state((state.clone(), "signup"), limit::guard));
    Router::new()
        .merge(guarded)
        .route("/api/v1/signup/check", get(check))
        .route("/api/v1/signup/verify", get(verify))
}

/// `?slug=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// Wanted subdomain.
    pub slug: String,
}

/// Availability answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Availability {
    /// Whether the slug can be taken.
    pub available: bool,
    /// Why not.
    pub reason: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/signup/check", tag = "signup", params(CheckQuery),
    responses((status = 200, description = "Whether the slug can be taken (always 200)", body = Availability)))]
async fn check(
    State(s): State<AppState>,
    Query(q): Query<CheckQuery>,
) -> ApiResult<Json<Availability>> {
    let slug = match Slug::parse(&q.slug.to_ascii_lowercase()) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Json(Availability {
                available: false,
                reason: Some(e.to_string()),
            }));
        }
    };
    let taken = s.store().system().tenant_by_slug(&slug).await?.is_some();
    Ok(Json(Availability {
        available: !taken,
        reason: taken.then(|| "this name is already taken".to_owned()),
    }))
}

/// Signup body (DESIGN §8).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// Subdomain.
    pub slug: String,
    /// ISP name.
    pub name: String,
    /// Owner e-mail.
    pub email: String,
    /// Owner password.
    pub password: String,
}

/// A created (or, for a retry, existing) ISP account.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignupAnswer {
    /// The tenant.
    pub tenant: Tenant,
    /// Its panel URL.
    pub panel_url: String,
    /// The owner's login.
    pub owner_email: String,
}

#[utoipa::path(post, path = "/api/v1/signup", tag = "signup", request_body = SignupRequest,
    responses((status = 201, description = "Created; a verification link was mailed to the owner", body = SignupAnswer),
        (status = 200, description = "A retry of the same signup", body = SignupAnswer)))]
async fn signup(
    State(s): State<AppState>,
    ip: ClientIp,
    Json(r): Json<SignupRequest>,
) -> ApiResult<(StatusCode, Json<SignupAnswer>)> {
    let (status, v) = perform(&s, ip, r).await?;
    Ok((status, Json(v)))
}

/// The signup pipeline (the JSON endpoint and the web form share it): validates, provisions,
/// mails the owner a verification link; answers with 201 (or 200 for a retry of the same
/// signup). Validation problems name their field.
pub async fn perform(
    s: &AppState,
    ip: ClientIp,
    r: SignupRequest,
) -> ApiResult<(StatusCode, SignupAnswer)> {
    let slug = Slug::parse(&r.slug.to_ascii_lowercase())
        .map_err(|e| Problem::validation("slug", e.to_string()))?;
    let email = Email::parse(&r.email).map_err(|e| Problem::validation("email", e.to_string()))?;
    if r.password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Problem::validation(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if r.name.trim().is_empty() {
        return Err(Problem::validation("name", "must not be empty"));
    }
    let taken = || {
        Problem::conflict(format!(
            "the name {:?} is already taken; choose another (GET /api/v1/signup/check?slug=…)",
            slug.as_str()
        ))
        .field("slug", "this name is already taken; choose another")
    };
    let answer = |t: &saas_core::model::Tenant, status| {
        (
            status,
            SignupAnswer {
                tenant: t.clone(),
                panel_url: s.config().panel_url(t.slug.as_str()),
                owner_email: email.as_str().to_owned(),
            },
        )
    };
    let mut existing_stale = false;
    if let Some(t) = s.store().system().tenant_by_slug(&slug).await? {
        match t.status {
            TenantStatus::Active | TenantStatus::Suspended => {
                // A retry of our own signup answers the same; anybody else gets 409.
                let scope = s.store().tenant(t.id);
                if let Some((u, hash)) = scope.user_by_email(&email).await?
                    && u.role == saas_core::model::Role::Owner
                    && verify_password(r.password.clone(), hash).await
                {
                    return Ok(answer(&t, StatusCode::OK));
                }
                return Err(taken());
            }
            TenantStatus::Provisioning
                if (saas_core::store::now() - t.created_at).num_seconds()
                    < STALE_PROVISIONING_S =>
            {
                return Err(taken().detail(format!(
                    "the name {:?} is being created by another signup right now",
                    slug.as_str()
                )));
            }
            TenantStatus::Provisioning => existing_stale = true,
            TenantStatus::Deleted => return Err(taken()),
        }
    }
    let req = ProvisionRequest {
        slug: slug.clone(),
        name: r.name.trim().to_owned(),
        owner_email: email.clone(),
        owner_password: r.password,
        timezone: "UTC".into(),
        limits: None,
    };
    let p = s.platform().with_client_ip(ip.0.to_string());
    let actor = Actor(format!("signup:{}", email.as_str()));
    // Only a crashed run's stale slug is resumed; otherwise the slug must be free.
    let resume = existing_stale;
    let run = if resume {
        p.provision_tenant(&req, &actor).await
    } else {
        p.provision_new_tenant(&req, &actor).await
    };
    let t = match run {
        Ok(t) => t,
        Err(PlatformError::Conflict(_))
        | Err(PlatformError::Store(saas_core::StoreError::Conflict(_))) => {
            return Err(taken());
        }
        Err(e) => return Err(e.into()),
    };
    s.tenants().invalidate(Some(slug.as_str()));
    send_verification(s, &t, &email).await;
    Ok(answer(&t, StatusCode::CREATED))
}

/// Mails the owner a single-use verification link. A failure is logged (never the link) and
/// does not undo the signup.
pub(crate) async fn send_verification(s: &AppState, t: &Tenant, email: &Email) {
    let scope = s.store().tenant(t.id);
    let user = match scope.user_by_email(email).await {
        Ok(Some((u, _))) => u,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, tenant = %t.slug.as_str(), "cannot look up the owner for e-mail verification");
            return;
        }
    };
    let token = format!(
        "{VERIFY_PREFIX}{}.{}",
        t.id.0.simple(),
        saas_core::crypto::random_token(32)
    );
    let ttl =
        chrono::Duration::from_std(s.config().verify_ttl).unwrap_or(chrono::Duration::days(2));
    if let Err(e) = scope
        .create_email_verification(
            user.id,
            &crate::auth::sha256_hex(&token),
            saas_core::store::now() + ttl,
        )
        .await
    {
        tracing::warn!(error = %e, tenant = %t.slug.as_str(), "cannot store the e-mail verification");
        return;
    }
    let link = format!(
        "{}api/v1/signup/verify?token={token}",
        s.config().apex_url()
    );
    let msg = Message {
        to: email.as_str().to_owned(),
        subject: format!("Your ProxPanel account {} is ready", t.slug.as_str()),
        body: format!(
            "Welcome to ProxPanel.\n\nConfirm your e-mail address (the link works once, for {} hours):\n{link}\n\nYour panel: {}\nSign in with {}.\n",
            ttl.num_hours(),
            s.config().panel_url(t.slug.as_str()),
            email.as_str()
        ),
    };
    if let Err(e) = s.mailer().send(&msg).await {
        tracing::warn!(error = %e, tenant = %t.slug.as_str(), "cannot send the signup e-mail");
    }
}

/// Prefix of e-mail verification tokens: `ev_<tenant id>.<random>` (the tenant id lets the
/// apex check the token inside that tenant's scope only).
pub const VERIFY_PREFIX: &str = "ev_";

/// `?token=` of a verification link.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// The token from the e-mail.
    pub token: String,
}

/// A verified address.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verified {
    /// Always true.
    pub verified: bool,
    /// The tenant's panel URL (sign in there).
    pub panel_url: String,
}

#[utoipa::path(get, path = "/api/v1/signup/verify", tag = "signup", params(VerifyQuery),
    responses((status = 200, description = "The owner's e-mail address is verified", body = Verified)))]
async fn verify(
    State(s): State<AppState>,
    Query(q): Query<VerifyQuery>,
) -> ApiResult<Json<Verified>> {
    let bad =
        || Problem::not_found("this verification link is not valid; sign in and ask for a new one");
    let rest = q.token.strip_prefix(VERIFY_PREFIX).ok_or_else(bad)?;
    let (tid, _) = rest.split_once('.').ok_or_else(bad)?;
    let tid = uuid::Uuid::parse_str(tid).map_err(|_| bad())?;
    let Some(t) = s
        .store()
        .system()
        .tenant_by_id(saas_core::ids::TenantId(tid))
        .await?
    else {
        return Err(bad());
    };
    let scope = s.store().tenant(t.id);
    match scope
        .use_email_verification(&crate::auth::sha256_hex(&q.token))
        .await?
    {
        Verification::Verified(user) => {
            scope
                .audit(&format!("user:{user}"), "user.email_verified", None, None)
                .await?;
            Ok(Json(Verified {
                verified: true,
                panel_url: s.config().panel_url(t.slug.as_str()),
            }))
        }
        Verification::Used => {
            Err(
                Problem::new(StatusCode::GONE, "verification-used", "Link already used")
                    .detail("this verification link was already used; the address is verified"),
            )
        }
        Verification::Expired => {
            Err(
                Problem::new(StatusCode::GONE, "verification-expired", "Link expired")
                    .detail("this verification link has expired; sign in and ask for a new one"),
            )
        }
        Verification::Unknown => Err(bad()),
    }
}

/// The apex host's operations.
#[derive(OpenApi)]
#[openapi(paths(check, signup, verify))]
pub struct SignupDoc;
