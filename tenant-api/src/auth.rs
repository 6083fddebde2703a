//! Authentication: JWT access tokens (15 min, `kid` names a signing key kept sealed in the
//! store), rotating refresh tokens whose families live in the store (reuse revokes the family),
//! revocation of access tokens by `jti`, API tokens (`pp_…`, stored hashed) and the `Auth<P>`
//! extractor that checks the permission table.
//!
//! The web panel plugs its cookie session in by inserting a [`Principal`] into the request
//! extensions (after its own CSRF check); `Auth<P>` then uses it instead of a Bearer token.

use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use saas_core::ids::*;
use saas_core::store::{Rotation, Store, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::host::HostKind;
use crate::problem::Problem;
use crate::roles::{ApiRole, Permission, allows};

/// Lifetime of an access token.
pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// Lifetime of a refresh family (a login).
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Lifetime of an operator's act-as-tenant token.
pub const ACT_AS_TTL: Duration = Duration::from_secs(10 * 60);
/// Prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "pp_";

/// Kind of access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    /// A tenant user's token.
    Tenant,
    /// An operator's token (operator host).
    Operator,
    /// An operator acting on one tenant (short-lived, audited).
    ActAs,
    /// A web panel session cookie (tenant or operator host; never accepted as a Bearer token).
    Panel,
}

/// JWT claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User or operator id.
    pub sub: Uuid,
    /// Token kind.
    pub typ: TokenType,
    /// Tenant the token is bound to (tenant and act-as tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<Uuid>,
    /// Role.
    pub role: ApiRole,
    /// Login e-mail (for audit lines).
    pub email: String,
    /// Refresh family (logout revokes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<Uuid>,
    /// Token id (revocation).
    pub jti: String,
    /// Issued at.
    pub iat: i64,
    /// Issued at, in milliseconds: a user's cutoff (disabled, new role or password) compares
    /// with it, so a token refreshed in the same second as the change is not refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
    /// Expiry.
    pub exp: i64,
}

/// How a principal authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A tenant user.
    User(UserId),
    /// An operator on the operator host.
    Operator(OperatorId),
    /// An operator acting as a tenant.
    ActAs(OperatorId),
    /// An API token.
    ApiToken(Uuid),
}

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// How.
    pub kind: PrincipalKind,
    /// Role.
    pub role: ApiRole,
    /// E-mail or token name.
    pub name: String,
    /// Tenant bound to (None for operators on the operator host).
    pub tenant: Option<TenantId>,
    /// Access-token claims, when a JWT was used.
    pub claims: Option<Claims>,
}

impl Principal {
    /// The audit actor text.
    pub fn actor(&self) -> saas_core::platform::Actor {
        let a = match &self.kind {
            PrincipalKind::User(_) => format!("user:{}", self.name),
            PrincipalKind::Operator(_) => format!("operator:{}", self.name),
            PrincipalKind::ActAs(_) => format!("operator:{} (acting as tenant)", self.name),
            PrincipalKind::ApiToken(id) => format!("api-token:{}:{id}", self.name),
        };
        saas_core::platform::Actor(a)
    }
}

/// Extractor: an authenticated caller allowed `P`.
#[derive(Debug)]
pub struct Auth<P: Permission>(pub Principal, PhantomData<P>);

impl<P: Permission> std::ops::Deref for Auth<P> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S, P> FromRequestParts<S> for Auth<P>
where
    AppState: FromRef<S>,
    S: Send + Sync,
    P: Permission,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let principal = match parts.extensions.get::<Principal>() {
            Some(p) => p.clone(),
            None => {
                let p = authenticate(&app, parts).await?;
                parts.extensions.insert(p.clone());
                p
            }
        };
        if !allows(principal.role, P::PERM) {
            return Err(Problem::forbidden(format!(
                "the role {} may not do this ({:?} permission needed)",
                principal.role.as_str(),
                P::PERM
            )));
        }
        Ok(Auth(principal, PhantomData))
    }
}

fn bearer(parts: &Parts) -> Result<&str, Problem> {
    let v = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Problem::unauthorized(
                "send Authorization: Bearer <access token> (POST /api/v1/auth/login gives one)",
            )
        })?;
    let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Problem::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

async fn authenticate(app: &AppState, parts: &Parts) -> Result<Principal, Problem> {
    let token = bearer(parts)?;
    let host = parts
        .extensions
        .get::<HostKind>()
        .cloned()
        .ok_or_else(|| Problem::internal(&"host layer not installed"))?;
    match host {
        HostKind::Tenant(t) => {
            if let Some(rest) = token.strip_prefix(API_TOKEN_PREFIX) {
                return api_token(app, t.id, rest, token).await;
            }
            let c = app.tenant_keys().verify(token).await?;
            if !matches!(c.typ, TokenType::Tenant | TokenType::ActAs) {
                return Err(Problem::unauthorized("this token is not a tenant token"));
            }
            if c.tid != Some(t.id.0) {
                return Err(Problem::unauthorized(
                    "this token belongs to another tenant; sign in on this tenant's address",
                ));
            }
            check_revoked(app.store(), &c).await?;
            let kind = match c.typ {
                TokenType::ActAs => PrincipalKind::ActAs(OperatorId(c.sub)),
                _ => PrincipalKind::User(UserId(c.sub)),
            };
            Ok(Principal {
                kind,
                role: c.role,
                name: c.email.clone(),
                tenant: Some(t.id),
                claims: Some(c),
            })
        }
        HostKind::Operator => {
            let c = app.operator_keys().verify(token).await?;
            if c.typ != TokenType::Operator {
                return Err(Problem::unauthorized("this token is not an operator token"));
            }
            check_revoked(app.store(), &c).await?;
            Ok(Principal {
                kind: PrincipalKind::Operator(OperatorId(c.sub)),
                role: ApiRole::Operator,
                name: c.email.clone(),
                tenant: None,
                claims: Some(c),
            })
        }
        HostKind::Apex => Err(Problem::unauthorized(
            "the public site has no signed-in endpoints; use your tenant's address",
        )),
    }
}

async fn check_revoked(store: &Store, c: &Claims) -> Result<(), Problem> {
    if store
        .platform()
        .access_token_refused(&c.jti, c.sub, c.issued())
        .await?
    {
        return Err(Problem::unauthorized(
            "this token was revoked (signed out, or the account's access, role or password changed since it was issued); refresh it or sign in again",
        ));
    }
    Ok(())
}

impl Claims {
    /// When the token was issued, as precisely as it says.
    pub fn issued(&self) -> chrono::DateTime<chrono::Utc> {
        self.iat_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .or_else(|| chrono::DateTime::from_timestamp(self.iat, 0))
            .unwrap_or_default()
    }
}

async fn api_token(
    app: &AppState,
    t: TenantId,
    _rest: &str,
    full: &str,
) -> Result<Principal, Problem> {
    let scope = app.store().tenant(t);
    match scope.api_token_by_hash(&sha256_hex(full)).await? {
        Some(row) if row.revoked_at.is_none() => Ok(Principal {
            kind: PrincipalKind::ApiToken(row.id),
            role: if row.scope == "write" {
                ApiRole::Admin
            } else {
                ApiRole::Viewer
            },
            name: row.name,
            tenant: Some(t),
            claims: None,
        }),
        Some(_) => Err(Problem::unauthorized("this API token was revoked")),
        None => Err(Problem::unauthorized("unknown API token for this tenant")),
    }
}

/// SHA-256 of a token's text, hex (what the store keeps of refresh and API tokens).
pub fn sha256_hex(s: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

/// Signing keys of one purpose, loaded from the store (sealed there) and created on first use.
#[derive(Debug)]
pub struct KeyRing {
    purpose: &'static str,
    store: Store,
    keys: RwLock<Vec<(String, Vec<u8>, bool)>>,
    last_reload: std::sync::Mutex<Instant>,
    leeway: u64,
}

impl KeyRing {
    /// Loads the keys of `purpose`, creating one when there is none that signs.
    pub async fn load(store: Store, purpose: &'static str) -> Result<Self, StoreError> {
        let ring = KeyRing {
            purpose,
            store,
            keys: RwLock::new(Vec::new()),
            last_reload: std::sync::Mutex::new(Instant::now()),
            leeway: 5,
        };
        ring.reload().await?;
        let has_signing = ring.read().iter().any(|(_, _, retired)| !retired);
        if !has_signing {
            ring.rotate().await?;
        }
        Ok(ring)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(String, Vec<u8>, bool)>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let rows = self.store.platform().signing_keys(self.purpose).await?;
        let mut keys = Vec::with_capacity(rows.len());
        for r in rows {
            let secret = self.store.secrets().open(&r.sealed)?;
            keys.push((r.kid, secret, r.retired_at.is_some()));
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(())
    }

    /// Adds a new signing key; older ones keep verifying until retired and expired.
    pub async fn rotate(&self) -> Result<String, StoreError> {
        let mut secret = vec![0u8; 32];
        saas_core::crypto::fill_random(&mut secret);
        let kid = format!("{}-{}", self.purpose, saas_core::crypto::random_token(8));
        self.store
            .platform()
            .add_signing_key(&kid, self.purpose, &secret)
            .await?;
        self.reload().await?;
        Ok(kid)
    }

    /// Sets the clock leeway in seconds (tests use 0).
    pub fn set_leeway(&mut self, s: u64) {
        self.leeway = s;
    }

    /// Signs claims with the newest signing key.
    pub fn sign(&self, claims: &Claims) -> Result<String, Problem> {
        let keys = self.read();
        let (kid, secret, _) = keys
            .iter()
            .rev()
            .find(|(_, _, retired)| !retired)
            .ok_or_else(|| Problem::internal(&"no signing key"))?;
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret))
            .map_err(|e| Problem::internal(&e))
    }

    /// Verifies a token's signature (by `kid`) and expiry.
    pub async fn verify(&self, token: &str) -> Result<Claims, Problem> {
        let bad = || Problem::unauthorized("the access token is not valid; sign in again");
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad())?;
        let kid = header.kid.ok_or_else(bad)?;
        if !self.read().iter().any(|(k, _, _)| *k == kid) {
            // Another node may have rotated; reload at most once a second.
            let due = {
                let mut last = self.last_reload.lock().unwrap_or_else(|p| p.into_inner());
                let due = last.elapsed() > Duration::from_secs(1);
                if due {
                    *last = Instant::now();
                }
                due
            };
            if due {
                self.reload().await?;
            }
        }
        let secret = self
            .read()
            .iter()
            .find(|(k, _, _)| *k == kid)
            .map(|(_, s, _)| s.clone())
            .ok_or_else(bad)?;
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = self.leeway;
        v.set_required_spec_claims(&["exp", "sub"]);
        match jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&secret), &v) {
            Ok(d) => Ok(d.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(Problem::unauthorized(
                    "the access token has expired; get a new one with POST /api/v1/auth/refresh",
                ))
            }
            Err(_) => Err(bad()),
        }
    }
}

/// A refresh token's text: `rt_<family>.<random>`.
pub fn new_refresh_token(family: Uuid) -> String {
    format!(
        "rt_{}.{}",
        family.simple(),
        saas_core::crypto::random_token(32)
    )
}

/// The family id of a refresh token.
pub fn refresh_family(token: &str) -> Option<Uuid> {
    let rest = token.strip_prefix("rt_")?;
    let (fam, _) = rest.split_once('.')?;
    Uuid::parse_str(fam).ok()
}

/// What a token pair answer looks like (DESIGN §8 login).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// JWT.
    pub access_token: String,
    /// Refresh token (absent for act-as tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Always `Bearer`.
    #[schema(value_type = String)]
    pub token_type: &'static str,
}

/// Builds claims valid for `ttl` from now.
#[allow(clippy::too_many_arguments)]
pub fn claims(
    sub: Uuid,
    typ: TokenType,
    tid: Option<TenantId>,
    role: ApiRole,
    email: &str,
    fam: Option<Uuid>,
    ttl: Duration,
) -> Claims {
    let at = chrono::Utc::now();
    let now = at.timestamp();
    Claims {
        sub,
        typ,
        tid: tid.map(|t| t.0),
        role,
        email: email.to_owned(),
        fam,
        jti: Uuid::new_v4().simple().to_string(),
        iat: now,
        iat_ms: Some(at.timestamp_millis()),
        exp: now + ttl.as_secs() as i64,
    }
}

/// Outcome of a refresh in words, for the 401 detail.
pub fn rotation_problem<U>(r: &Rotation<U>) -> Problem {
    match r {
        Rotation::Reused => Problem::unauthorized(
            "this refresh token was already used; every session of this login was signed out — sign in again",
        ),
        Rotation::Revoked => Problem::unauthorized("this login was signed out; sign in again"),
        Rotation::Expired => Problem::unauthorized("this login has expired; sign in again"),
        _ => Problem::unauthorized("unknown refresh token; sign in again"),
    }
}

/// Shared handle type for key rings.
pub type Keys = Arc<KeyRing>;
