//! The apex host: `GET /api/v1/signup/check?slug=` and `POST /api/v1/signup` (the provisioning
//! pipeline). A retried signup with the same owner e-mail and password answers like the
//! first; of two racing signups for one slug exactly one creates the tenant, the other is 409.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use saas_core::ids::{Email, Slug};
use saas_core::model::TenantStatus;
use saas_core::platform::{Actor, MIN_PASSWORD_LEN, PlatformError, ProvisionRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::host::ClientIp;
use crate::mail::{Message, Outbox};
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
}

/// `?slug=`.
#[derive(Debug, Deserialize)]
pub struct CheckQuery {
    /// Wanted subdomain.
    pub slug: String,
}

/// Availability answer.
#[derive(Debug, Serialize)]
pub struct Availability {
    /// Whether the slug can be taken.
    pub available: bool,
    /// Why not.
    pub reason: Option<String>,
}

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
#[derive(Debug, Deserialize)]
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

async fn signup(
    State(s): State<AppState>,
    ip: ClientIp,
    Json(r): Json<SignupRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (status, v) = perform(&s, ip, r).await?;
    Ok((status, Json(v)))
}

/// The signup pipeline (the JSON endpoint and the web form share it): validates, provisions,
/// writes the welcome mail; answers `{tenant, panel_url, owner_email}` with 201 (or 200 for a
/// retry of the same signup). Validation problems name their field.
pub async fn perform(
    s: &AppState,
    ip: ClientIp,
    r: SignupRequest,
) -> ApiResult<(StatusCode, Value)> {
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
            json!({"tenant": t, "panel_url": s.config().panel_url(t.slug.as_str()),
            "owner_email": email.as_str()}),
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
    let outbox = Outbox::in_data_dir(
        &s.config().data_dir,
        format!("noreply@{}", s.config().base_domain),
    );
    let msg = Message {
        to: email.as_str().to_owned(),
        subject: format!("Your ProxPanel account {} is ready", t.slug.as_str()),
        body: format!(
            "Welcome to ProxPanel.\n\nYour panel: {}\nSign in with {}.\n",
            s.config().panel_url(t.slug.as_str()),
            email.as_str()
        ),
    };
    if let Err(e) = outbox.send(&msg).await {
        tracing::warn!(error = %e, "cannot write the signup mail to the outbox");
    }
    Ok(answer(&t, StatusCode::CREATED))
}
