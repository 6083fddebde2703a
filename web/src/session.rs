//! Cookie sessions and CSRF.
//!
//! A session is a host-only `__Host-` cookie (HttpOnly, Secure, SameSite=Lax, Path=/, no
//! Domain) holding a JWT of type `panel`, signed with the host's key ring (tenant or operator)
//! and bound to a refresh family in the store: every request checks that the family is still
//! live, so logout (which revokes it) holds across restarts and nodes. The JWT of a tenant
//! session names its tenant; another tenant's host refuses it.
//!
//! Every request that is not GET/HEAD must carry the CSRF token (form field `_csrf` or header
//! `X-CSRF-Token`): a synchronizer token derived from the session's secret `jti` (or, before
//! sign-in, from a random pre-session cookie), so it changes with each sign-in.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use saas_core::ids::{OperatorId, UserId};
use tenant_api::auth::{self, Claims, Principal, PrincipalKind, TokenType};
use tenant_api::host::HostKind;
use tenant_api::problem::Problem;
use tenant_api::roles::ApiRole;
use uuid::Uuid;

use crate::WebState;
use crate::view::WebError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "__Host-pp_session";
/// Name of the pre-session cookie (CSRF of the sign-in and signup forms).
pub const PRE_COOKIE: &str = "__Host-pp_pre";
/// Name of the CSRF form field.
pub const CSRF_FIELD: &str = "_csrf";

/// What the session layer found; every panel handler can extract it.
#[derive(Clone, Debug)]
pub struct Visit {
    /// The signed-in user or operator.
    pub principal: Option<Principal>,
    /// The CSRF token to put in forms.
    pub csrf: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Visit>()
            .cloned()
            .ok_or_else(|| Problem::internal(&"session layer not installed").into())
    }
}

/// The `Set-Cookie` value of a session cookie.
pub fn session_cookie(value: &str, ttl: Duration) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        ttl.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax")
}

fn pre_cookie(value: &str) -> String {
    format!("{PRE_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax")
}

/// A cookie's value from the request headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The CSRF token bound to a secret (the session's `jti`, or the pre-session cookie).
fn csrf_token(kind: &str, secret: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"proxpanel-csrf\0");
    ctx.update(kind.as_bytes());
    ctx.update(b"\0");
    ctx.update(secret.as_bytes());
    hex::encode(&ctx.finish().as_ref()[..16])
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The session middleware: finds the principal, checks CSRF on unsafe methods, hands the
/// [`Visit`] (and the [`Principal`] that `tenant_api::auth::Auth` understands) to handlers.
pub async fn layer(State(ws): State<WebState>, req: Request, next: Next) -> Response {
    match run(ws, req, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(ws: WebState, mut req: Request, next: Next) -> Result<Response, WebError> {
    let host = req.extensions().get::<HostKind>().cloned();
    let token = cookie(req.headers(), SESSION_COOKIE).map(str::to_owned);
    let principal = match (&host, &token) {
        (Some(h), Some(t)) => principal(&ws, h, t).await?,
        _ => None,
    };
    let stale_cookie = token.is_some() && principal.is_none();
    let mut new_pre = None;
    let csrf = match principal.as_ref().and_then(|p| p.claims.as_ref()) {
        Some(c) => csrf_token("session", &c.jti),
        None => {
            let pre = match cookie(req.headers(), PRE_COOKIE) {
                Some(v) => v.to_owned(),
                None => {
                    let v = saas_core::crypto::random_token(24);
                    new_pre = Some(v.clone());
                    v
                }
            };
            csrf_token("pre", &pre)
        }
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let (parts, body) = req.into_parts();
        let limit = ws.api().config().body_limit;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Form too large",
            )
            .detail(format!("a form may carry at most {limit} bytes"))
        })?;
        let given = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| form_field(&bytes, CSRF_FIELD));
        if !given.is_some_and(|g| same(&g, &csrf)) {
            tracing::info!(path = %parts.uri.path(), "CSRF token missing or wrong");
            return Err(Problem::forbidden(
                "this form has expired or did not come from this site; go back, reload the page and send it again",
            )
            .into());
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    if let Some(p) = &principal {
        req.extensions_mut().insert(p.clone());
    }
    req.extensions_mut().insert(Visit { principal, csrf });
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Some(v) = new_pre
        && let Ok(v) = HeaderValue::from_str(&pre_cookie(&v))
    {
        h.append(header::SET_COOKIE, v);
    }
    // A cookie that no longer opens a session is removed, unless the handler set a new one.
    let sets_session = h
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(SESSION_COOKIE.as_bytes()));
    if stale_cookie
        && !sets_session
        && let Ok(v) = HeaderValue::from_str(&clear_session_cookie())
    {
        h.append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(body);
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

async fn principal(
    ws: &WebState,
    host: &HostKind,
    token: &str,
) -> Result<Option<Principal>, WebError> {
    let api = ws.api();
    match host {
        HostKind::Tenant(t) => {
            let Ok(c) = api.tenant_keys().verify(token).await else {
                return Ok(None);
            };
            if c.typ != TokenType::Panel || c.tid != Some(t.id.0) {
                return Ok(None);
            }
            let Some(fam) = c.fam else {
                // An operator acting as this tenant: short-lived, no family; logout revokes it.
                if c.role != ApiRole::Operator {
                    return Ok(None);
                }
                let revoked = api
                    .store()
                    .platform()
                    .access_token_refused(&c.jti, c.sub, c.issued())
                    .await
                    .map_err(Problem::from)?;
                if revoked {
                    return Ok(None);
                }
                return Ok(Some(Principal {
                    kind: PrincipalKind::ActAs(OperatorId(c.sub)),
                    role: ApiRole::Operator,
                    name: c.email.clone(),
                    tenant: Some(t.id),
                    claims: Some(c),
                }));
            };
            let scope = api.store().tenant(t.id);
            if !scope.refresh_is_live(fam).await.map_err(Problem::from)? {
                return Ok(None);
            }
            let Some(user) = scope.user(UserId(c.sub)).await.map_err(Problem::from)? else {
                return Ok(None);
            };
            if user.disabled {
                return Ok(None);
            }
            Ok(Some(Principal {
                kind: PrincipalKind::User(user.id),
                // The role as it is now, not as it was at sign-in.
                role: ApiRole::from_user(user.role),
                name: user.email.as_str().to_owned(),
                tenant: Some(t.id),
                claims: Some(c),
            }))
        }
        HostKind::Operator => {
            let Ok(c) = api.operator_keys().verify(token).await else {
                return Ok(None);
            };
            if c.typ != TokenType::Panel || c.tid.is_some() {
                return Ok(None);
            }
            let Some(fam) = c.fam else { return Ok(None) };
            let live = api
                .store()
                .platform()
                .operator_refresh_is_live(fam)
                .await
                .map_err(Problem::from)?;
            if !live {
                return Ok(None);
            }
            Ok(Some(Principal {
                kind: PrincipalKind::Operator(OperatorId(c.sub)),
                role: ApiRole::Operator,
                name: c.email.clone(),
                tenant: None,
                claims: Some(c),
            }))
        }
        HostKind::Apex => Ok(None),
    }
}

/// Signs a panel session's JWT (typ `panel`, bound to the refresh family `fam`).
pub fn sign(
    keys: &auth::KeyRing,
    sub: Uuid,
    tenant: Option<saas_core::ids::TenantId>,
    role: ApiRole,
    email: &str,
    fam: Uuid,
    ttl: Duration,
) -> Result<String, Problem> {
    let c: Claims = auth::claims(sub, TokenType::Panel, tenant, role, email, Some(fam), ttl);
    keys.sign(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_attributes_are_host_only_and_strict() {
        let c = session_cookie("x", Duration::from_secs(60));
        assert!(c.starts_with("__Host-"));
        for a in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=60"] {
            assert!(c.contains(a), "{c} lacks {a}");
        }
        assert!(!c.to_ascii_lowercase().contains("domain="));
    }

    #[test]
    fn csrf_tokens_differ_by_secret_and_compare_exactly() {
        let a = csrf_token("session", "one");
        assert_ne!(a, csrf_token("session", "two"));
        assert_ne!(a, csrf_token("pre", "one"));
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &a[1..]));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; __Host-pp_session=tok; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, PRE_COOKIE), None);
    }
}
