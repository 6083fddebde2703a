//! `/api/v1/openapi.json` on every host: the OpenAPI 3.1 document generated from the handlers
//! and DTOs with utoipa. Each host serves the operations it answers (tenant, operator or the
//! public apex); every operation also documents the problem+json answer of its errors and, when
//! signed-in, the bearer scheme.

use std::sync::LazyLock;

use axum::extract::Request;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, ResponseBuilder};

use crate::host::HostKind;

/// Operations that need no token.
const PUBLIC: &[&str] = &[
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/signup",
    "/api/v1/signup/check",
    "/api/v1/signup/verify",
    "/api/v1/openapi.json",
];

/// Name of the bearer security scheme.
pub const BEARER: &str = "bearer";

fn finish(mut doc: OpenApi, title: &str) -> OpenApi {
    doc.info.title = title.to_owned();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some(
        "ProxPanel SaaS REST API. Errors are RFC 7807 problems (application/problem+json); \
         lists are {items, next_cursor}."
            .to_owned(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT or pp_ API token")
                .build(),
        ),
    );
    // The problem schema and its FieldError, referenced by every operation's default answer.
    let mut schemas = Vec::new();
    <crate::problem::ProblemDocument as utoipa::ToSchema>::schemas(&mut schemas);
    schemas.push((
        <crate::problem::ProblemDocument as utoipa::ToSchema>::name().into_owned(),
        <crate::problem::ProblemDocument as utoipa::PartialSchema>::schema(),
    ));
    for (name, schema) in schemas {
        components.schemas.insert(name, schema);
    }
    let problem = ResponseBuilder::new()
        .description("An error: an RFC 7807 problem saying what is wrong and what to do next")
        .content(
            crate::problem::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "Problem",
                ))))
                .build(),
        )
        .build();
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = PUBLIC.contains(&path.as_str());
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.put,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("default".to_owned())
                .or_insert_with(|| RefOr::T(problem.clone()));
            if !public {
                op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            }
        }
    }
    doc
}

fn openapi_path() -> OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(document))]
    struct Doc;
    Doc::openapi()
}

/// The document of tenant hosts.
pub fn tenant_document() -> OpenApi {
    let mut d = crate::tenant::TenantDoc::openapi();
    d.merge(openapi_path());
    finish(d, "ProxPanel tenant API")
}

/// The document of the operator host.
pub fn operator_document() -> OpenApi {
    let mut d = crate::operator::OperatorDoc::openapi();
    d.merge(openapi_path());
    finish(d, "ProxPanel operator API")
}

/// The document of the public apex (signup).
pub fn apex_document() -> OpenApi {
    let mut d = crate::signup::SignupDoc::openapi();
    d.merge(openapi_path());
    finish(d, "ProxPanel signup API")
}

static TENANT: LazyLock<String> = LazyLock::new(|| to_json(&tenant_document()));
static OPERATOR: LazyLock<String> = LazyLock::new(|| to_json(&operator_document()));
static APEX: LazyLock<String> = LazyLock::new(|| to_json(&apex_document()));

fn to_json(d: &OpenApi) -> String {
    d.to_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise the OpenAPI document");
        "{}".to_owned()
    })
}

/// The OpenAPI document of this host.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = serde_json::Value)))]
pub async fn document(req: Request) -> impl IntoResponse {
    let body = match req.extensions().get::<HostKind>() {
        Some(HostKind::Operator) => OPERATOR.as_str(),
        Some(HostKind::Apex) => APEX.as_str(),
        _ => TENANT.as_str(),
    };
    ([(header::CONTENT_TYPE, "application/json")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_openapi_3_1_with_problems_and_bearer() {
        for d in [tenant_document(), operator_document(), apex_document()] {
            let v: serde_json::Value = serde_json::from_str(&to_json(&d)).unwrap();
            assert!(
                v["openapi"].as_str().unwrap().starts_with("3.1"),
                "{}",
                v["openapi"]
            );
            assert!(v["components"]["schemas"]["Problem"].is_object());
            for (path, item) in v["paths"].as_object().unwrap() {
                for (m, op) in item.as_object().unwrap() {
                    assert!(
                        op["responses"]["default"]["content"]["application/problem+json"]
                            .is_object(),
                        "{m} {path} lacks the problem answer"
                    );
                    let public = PUBLIC.contains(&path.as_str());
                    assert_eq!(op.get("security").is_some(), !public, "{m} {path}");
                }
            }
        }
    }

    #[test]
    fn every_tenant_endpoint_of_the_role_table_is_documented() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&tenant_document())).unwrap();
        for (m, p, _) in crate::tenant::ENDPOINTS {
            assert!(
                v["paths"][*p][m.to_ascii_lowercase()].is_object(),
                "{m} {p} is not in the OpenAPI document"
            );
        }
        for p in [
            "/api/v1/plans/{id}",
            "/api/v1/nas/{id}",
            "/api/v1/users/{id}",
        ] {
            for m in ["get", "patch", "delete"] {
                assert!(v["paths"][p][m].is_object(), "{m} {p}");
            }
        }
        assert!(v["paths"]["/api/v1/subscribers/{id}/usage"]["get"].is_object());
    }
}
