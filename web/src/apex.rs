//! The public apex `<base>`: landing page and signup (the API's pipeline, with field errors
//! next to their fields and a live availability check of the subdomain).

use askama::Template;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::get;
use saas_core::ids::{Email, Slug};
use saas_core::platform::MIN_PASSWORD_LEN;
use serde::Deserialize;
use tenant_api::host::ClientIp;
use tenant_api::limit;
use tenant_api::signup::{SignupRequest, perform};

use crate::WebState;
use crate::session::Visit;
use crate::view::{Errors, Field, Layout, WebResult, problem_errors, render, render_status};

/// Routes of the apex host.
pub fn router(ws: &WebState) -> Router<WebState> {
    let guarded = Router::new()
        .route("/signup", get(signup_form).post(signup))
        .route_layer(from_fn_with_state(
            (ws.api().clone(), "signup"),
            limit::guard,
        ));
    Router::new().route("/", get(home)).merge(guarded)
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    l: Layout,
    base: String,
}

async fn home(State(ws): State<WebState>, v: Visit) -> Response {
    render(&Home {
        l: Layout::bare("Subscriber management for ISPs", "ProxPanel", &v.csrf),
        base: ws.api().config().base_domain.clone(),
    })
}

/// What the signup form sends.
#[derive(Debug, Default, Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    l: Layout,
    base: String,
    error: Option<String>,
    fields: Vec<Field>,
}

fn signup_page(
    ws: &WebState,
    v: &Visit,
    f: &SignupForm,
    e: &Errors,
    top: Option<String>,
) -> SignupPage {
    let base = ws.api().config().base_domain.clone();
    SignupPage {
        l: Layout::bare("Create your ISP account", "ProxPanel", &v.csrf),
        fields: vec![
            Field::new("name", "ISP name", "text")
                .value(&f.name)
                .required()
                .auto("organization")
                .hint("Shown at the top of your panel.")
                .errors(e),
            Field::new("email", "Your e-mail", "email")
                .value(&f.email)
                .required()
                .auto("email")
                .hint("You sign in with it; you become the account's owner.")
                .errors(e),
            Field::new("password", "Password", "password")
                .required()
                .auto("new-password")
                .hint("At least 8 characters.")
                .errors(e),
        ],
        base,
        error: top,
    }
}

async fn signup_form(State(ws): State<WebState>, v: Visit) -> Response {
    render(&signup_page(&ws, &v, &SignupForm::default(), &Errors::default(), None).with_slug(""))
}

impl SignupPage {
    /// The subdomain field comes first and carries the live check.
    fn with_slug(mut self, slug: &str) -> Self {
        self.fields.insert(
            0,
            Field::new("slug", "Subdomain", "text")
                .value(slug)
                .required(),
        );
        self
    }
}

#[derive(Template)]
#[template(path = "signup_done.html")]
struct Done {
    l: Layout,
    panel_url: String,
    email: String,
    existed: bool,
}

async fn signup(
    State(ws): State<WebState>,
    v: Visit,
    ip: ClientIp,
    Form(f): Form<SignupForm>,
) -> WebResult {
    let mut e = Errors::default();
    let slug = f.slug.trim().to_ascii_lowercase();
    if let Err(err) = Slug::parse(&slug) {
        e.add("slug", err.to_string());
    }
    if f.name.trim().is_empty() {
        e.add("name", "enter the name of your ISP");
    }
    if let Err(err) = Email::parse(f.email.trim()) {
        e.add("email", err.to_string());
    }
    if f.password.chars().count() < MIN_PASSWORD_LEN {
        e.add(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        );
    }
    let fail = |e: &Errors, top: Option<String>, status: StatusCode| {
        let mut page = signup_page(&ws, &v, &f, e, top).with_slug(&f.slug);
        let slug_err = e.get("slug").map(str::to_owned);
        page.fields[0].error = slug_err;
        Ok(render_status(status, &page))
    };
    if !e.is_empty() {
        return fail(&e, None, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let req = SignupRequest {
        slug,
        name: f.name.trim().to_owned(),
        email: f.email.trim().to_owned(),
        password: f.password.clone(),
    };
    match perform(ws.api(), ip, req).await {
        Ok((status, body)) => Ok(render(&Done {
            l: Layout::bare("Your account is ready", "ProxPanel", &v.csrf),
            panel_url: body.panel_url,
            email: body.owner_email,
            existed: status == StatusCode::OK,
        })),
        Err(p) => {
            let (e, top) = problem_errors(&p);
            fail(&e, top, p.status)
        }
    }
}
