//! What every page shares: the layout, form fields with their errors, the error type of the
//! handlers (rendered as an HTML page) and the security headers.

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use saas_core::StoreError;
use saas_core::platform::PlatformError;
use tenant_api::problem::Problem;

use crate::assets::ASSETS;

/// Content-Security-Policy of every page: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One link of the navigation bar.
#[derive(Clone, Debug)]
pub struct Nav {
    /// Target.
    pub href: &'static str,
    /// Text.
    pub label: &'static str,
    /// Whether it is the current section.
    pub current: bool,
}

/// The frame of every page.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Page title.
    pub title: String,
    /// Name shown at the top left.
    pub brand: String,
    /// Style sheet path.
    pub css: &'static str,
    /// Script path.
    pub js: &'static str,
    /// Navigation.
    pub nav: Vec<Nav>,
    /// Who is signed in.
    pub user: Option<String>,
    /// CSRF token for the forms of the page.
    pub csrf: String,
    /// A one-line confirmation of the last action.
    pub flash: Option<String>,
}

impl Layout {
    /// A layout with no navigation.
    pub fn bare(title: impl Into<String>, brand: impl Into<String>, csrf: &str) -> Self {
        Self {
            title: title.into(),
            brand: brand.into(),
            css: ASSETS.css.path.as_str(),
            js: ASSETS.js.path.as_str(),
            nav: Vec::new(),
            user: None,
            csrf: csrf.to_owned(),
            flash: None,
        }
    }
}

/// Field-level validation errors.
#[derive(Clone, Debug, Default)]
pub struct Errors(pub Vec<(String, String)>);

impl Errors {
    /// Adds one.
    pub fn add(&mut self, field: &str, msg: impl Into<String>) {
        self.0.push((field.to_owned(), msg.into()));
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The first message of a field.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

/// One form control, rendered by `field.html` with its label, hint and error.
#[derive(Clone, Debug)]
pub struct Field {
    /// Name (and id).
    pub name: &'static str,
    /// Label text.
    pub label: &'static str,
    /// `text`, `password`, `email`, `number`, `date`, `select`.
    pub kind: &'static str,
    /// Current value.
    pub value: String,
    /// Help text.
    pub hint: &'static str,
    /// Validation message.
    pub error: Option<String>,
    /// Required.
    pub required: bool,
    /// `autocomplete` attribute.
    pub autocomplete: &'static str,
    /// Choices of a select: (value, label).
    pub options: Vec<(String, String)>,
}

impl Field {
    /// A text input.
    pub fn new(name: &'static str, label: &'static str, kind: &'static str) -> Self {
        Self {
            name,
            label,
            kind,
            value: String::new(),
            hint: "",
            error: None,
            required: false,
            autocomplete: "off",
            options: Vec::new(),
        }
    }
    /// Sets the value.
    pub fn value(mut self, v: impl Into<String>) -> Self {
        self.value = v.into();
        self
    }
    /// Sets the hint.
    pub fn hint(mut self, h: &'static str) -> Self {
        self.hint = h;
        self
    }
    /// Marks it required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Sets `autocomplete`.
    pub fn auto(mut self, a: &'static str) -> Self {
        self.autocomplete = a;
        self
    }
    /// Sets the choices of a select.
    pub fn options(mut self, o: Vec<(String, String)>) -> Self {
        self.options = o;
        self
    }
    /// Takes this field's message from `errors`.
    pub fn errors(mut self, e: &Errors) -> Self {
        self.error = e.get(self.name).map(str::to_owned);
        self
    }
    /// Whether this option value is the current one.
    pub fn selected(&self, v: &str) -> bool {
        self.value == v
    }
}

/// Error of a panel handler: an HTML page with the problem's status, or the sign-in redirect.
#[derive(Debug)]
pub enum WebError {
    /// Render the problem.
    Problem(Problem),
    /// Not signed in: go to the sign-in page, then back to this path.
    SignIn(String),
}

impl From<Problem> for WebError {
    fn from(p: Problem) -> Self {
        WebError::Problem(p)
    }
}
impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        WebError::Problem(e.into())
    }
}
impl From<PlatformError> for WebError {
    fn from(e: PlatformError) -> Self {
        WebError::Problem(e.into())
    }
}

/// Result of a panel handler.
pub type WebResult<T = Response> = Result<T, WebError>;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    l: Layout,
    status: u16,
    heading: &'a str,
    detail: &'a str,
    suspended: bool,
}

/// The HTML page of a problem.
pub fn problem_page(p: &Problem) -> Response {
    let suspended = p.kind == "tenant-suspended";
    let heading = if suspended {
        "This account is suspended"
    } else {
        p.title.as_str()
    };
    let detail = p.detail.as_deref().unwrap_or("");
    let page = ErrorPage {
        l: Layout::bare(heading, "ProxPanel", ""),
        status: p.status.as_u16(),
        heading,
        detail,
        suspended,
    };
    let mut r = render_status(p.status, &page);
    if let Some(s) = p.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignIn(next) => {
                Redirect::to(&format!("/login?next={}", pct(&next))).into_response()
            }
            WebError::Problem(p) => problem_page(&p),
        }
    }
}

/// A host that cannot be served (unknown, suspended), as a page with the security headers.
pub fn host_problem(p: &Problem, _req: &Request) -> Response {
    let mut r = problem_page(p);
    add_security_headers(r.headers_mut());
    r
}

/// Renders a template with 200.
pub fn render<T: Template>(t: &T) -> Response {
    render_status(StatusCode::OK, t)
}

/// Renders a template with a status.
pub fn render_status<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// 303 to `to` (after a POST).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Percent-encodes a query value.
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `next` target that stays on this host (a path, not `//host`).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn add_security_headers(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Middleware: the security headers on every panel response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    add_security_headers(r.headers_mut());
    r
}

/// Human size of a byte count.
pub fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", units[i])
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// A time in the tenant's timezone, `YYYY-MM-DD HH:MM`.
pub fn when(t: chrono::DateTime<chrono::Utc>, tz: &str) -> String {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(z) => t.with_timezone(&z).format("%Y-%m-%d %H:%M").to_string(),
        Err(_) => t.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_host() {
        assert_eq!(
            safe_next(Some("/subscribers?page=2")),
            "/subscribers?page=2"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500_000), "1.5 MB");
    }
}

/// A page with one generic form (create/edit screens).
#[derive(Template)]
#[template(path = "form.html")]
pub struct FormPage {
    /// Layout.
    pub l: Layout,
    /// Heading.
    pub heading: String,
    /// A form-level error.
    pub error: Option<String>,
    /// Where it posts.
    pub action: String,
    /// Fields.
    pub fields: Vec<Field>,
    /// Submit text.
    pub submit: &'static str,
    /// Cancel link.
    pub cancel: String,
}

/// "Are you sure?" before a destructive action (works without JavaScript).
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    /// Layout.
    pub l: Layout,
    /// Heading.
    pub heading: String,
    /// What will happen.
    pub text: String,
    /// Where it posts.
    pub action: String,
    /// Button text.
    pub button: &'static str,
    /// Cancel link.
    pub cancel: String,
}

/// Field errors of a problem (its `errors`, or its detail on a form-level line).
pub fn problem_errors(p: &Problem) -> (Errors, Option<String>) {
    let mut e = Errors::default();
    for fe in &p.errors {
        e.add(&fe.field, fe.message.clone());
    }
    let top = if e.is_empty() {
        Some(p.detail.clone().unwrap_or_else(|| p.title.clone()))
    } else {
        None
    };
    (e, top)
}
