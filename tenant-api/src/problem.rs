//! RFC 7807 `application/problem+json` errors, and the extractors that turn every rejection
//! (malformed JSON, bad path or query) into one.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use saas_core::StoreError;
use saas_core::platform::PlatformError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field-level validation message.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON field name (or query parameter).
    pub field: String,
    /// What is wrong and what to send instead.
    pub message: String,
}

/// An RFC 7807 problem.
#[derive(Clone, Debug)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Short machine-readable kind (the `type` URI ends with it).
    pub kind: &'static str,
    /// Human title.
    pub title: String,
    /// Human explanation of this occurrence.
    pub detail: Option<String>,
    /// Field errors.
    pub errors: Vec<FieldError>,
    /// Seconds before retrying (429).
    pub retry_after: Option<u64>,
}

/// The body of every error answer (RFC 7807 `application/problem+json`), as documented.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDocument {
    /// `urn:proxpanel:problem:<kind>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short human title.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened and what to do next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Field-level validation messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl Problem {
    /// A problem with a status, kind and title.
    pub fn new(status: StatusCode, kind: &'static str, title: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            title: title.into(),
            detail: None,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// Adds the detail text.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    /// Adds a field error.
    pub fn field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// 400 with a detail.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").detail(detail)
    }

    /// 422: the body parsed but a field is not acceptable.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "A field is not valid",
        )
        .detail(format!("{field}: {message}"))
        .field(field, message)
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Not signed in").detail(detail)
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed").detail(detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(detail)
    }

    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(detail)
    }

    /// 500 with a generic body; the cause is logged here, once, and never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
        .detail("the server could not complete the request; it has been logged — try again later")
    }

    /// 429 with Retry-After.
    pub fn too_many(detail: impl Into<String>, retry_after: u64) -> Self {
        let mut p = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
        )
        .detail(detail);
        p.retry_after = Some(retry_after.max(1));
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            type_: format!("urn:proxpanel:problem:{}", self.kind),
            title: &self.title,
            status: self.status.as_u16(),
            detail: self.detail.as_deref(),
            errors: &self.errors,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut r = (self.status, bytes).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Problem::not_found(format!("{what} not found")),
            StoreError::Conflict(m) => Problem::conflict(m),
            StoreError::Invalid(m) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Not valid").detail(m)
            }
            StoreError::LimitReached(m) => Problem::new(
                StatusCode::CONFLICT,
                "limit-reached",
                "Tenant limit reached",
            )
            .detail(format!(
                "{m}; delete some first or ask the platform operator to raise the limit"
            )),
            e => Problem::internal(&e),
        }
    }
}

impl From<PlatformError> for Problem {
    fn from(e: PlatformError) -> Self {
        match e {
            PlatformError::Store(e) => e.into(),
            PlatformError::Invalid(m) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Not valid").detail(m)
            }
            PlatformError::Conflict(m) => Problem::conflict(m),
            PlatformError::NotFound(m) => Problem::not_found(format!("{m} not found")),
            e => Problem::internal(&e),
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, Problem>;

/// A JSON body whose rejections are problems: malformed JSON → 400 naming the problem, a
/// missing or mistyped field → 422 naming the field, wrong content type → 415, too large → 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

fn field_of(msg: &str) -> Option<String> {
    // serde_json names the field in backticks for missing/unknown fields.
    for marker in ["missing field `", "unknown field `"] {
        if let Some(i) = msg.find(marker) {
            let rest = &msg[i + marker.len()..];
            return rest.split('`').next().map(str::to_owned);
        }
    }
    // axum prefixes data errors with the path, e.g. "email: invalid type ...".
    let body = msg
        .split("Failed to deserialize the JSON body into the target type: ")
        .nth(1)?;
    let (path, _) = body.split_once(": ")?;
    (!path.contains(' ')).then(|| path.to_owned())
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Self {
        let text = r.body_text();
        match r {
            JsonRejection::JsonSyntaxError(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON")
                    .detail(format!("the request body is not valid JSON: {text}"))
            }
            JsonRejection::JsonDataError(_) => {
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "The JSON body does not have the expected fields",
                )
                .detail(text.clone());
                if let Some(f) = field_of(&text) {
                    p = p.field(f, text);
                }
                p
            }
            JsonRejection::MissingJsonContentType(_) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Expected a JSON body",
            )
            .detail("send the body with Content-Type: application/json"),
            JsonRejection::BytesRejection(_) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
            )
            .detail(text),
            _ => Problem::bad_request(text),
        }
    }
}

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(req.headers()) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Expected a JSON body",
            )
            .detail("send the body with Content-Type: application/json"));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "Request body too large",
                )
                .detail(e.body_text())
            })?;
        // No stored text may hold NUL (PostgreSQL refuses it): say so instead of failing later.
        if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Text with a NUL character",
            )
            .detail("text fields must not contain NUL (\\u0000) characters"));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(e) => Err(e.into()),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Path parameters whose rejections are problems (e.g. an id that is not a UUID → 404).
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            // An id that cannot exist is simply not found (no hint about formats of others).
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(Problem::not_found(
                format!("no such resource ({})", e.body_text()),
            )),
            Err(e) => Err(Problem::internal(&e.body_text())),
        }
    }
}

/// Query parameters whose rejections are 400 problems naming the parameter.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts
            .uri
            .query()
            .is_some_and(|q| q.to_ascii_lowercase().contains("%00"))
        {
            return Err(Problem::bad_request(
                "query parameters must not contain NUL (%00) characters",
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let mut p = Problem::bad_request(text.clone());
                if let Some(f) = field_of(&text) {
                    p = p.field(f, text);
                }
                Err(p)
            }
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_come_out_of_serde_messages() {
        assert_eq!(
            field_of("Failed to deserialize the JSON body into the target type: missing field `email` at line 1 column 2").as_deref(),
            Some("email")
        );
        assert_eq!(
            field_of("Failed to deserialize the JSON body into the target type: password: invalid type: integer `3`, expected a string at line 1 column 15").as_deref(),
            Some("password")
        );
    }
}
