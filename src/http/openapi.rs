//! The OpenAPI 3 document, generated from the code: every handler carries a
//! `#[utoipa::path]` annotation; each resource lists its handlers in its own
//! `Api` (merged by `Resources`), the rest are in [`ApiDoc`]'s `paths(...)`.
//! A route added to the table but not here fails `tests/observability.rs`.
//! This module only assembles: the handler modules never import it (the
//! types their annotations share are in [`super::schema`]).
//!
//! To document a new resource: annotate its handlers (path, params, request
//! body, responses with [`ErrorBody`] for errors and [`Data`](super::schema::Data)
//! for success), list them in the resource's `#[derive(OpenApi)] struct Api`
//! (`paths(...)`, body types in `components(schemas(...))`) and add that `Api`
//! to `Resources`.

use std::sync::LazyLock;

use utoipa::openapi::security::{HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::routes::{Access, ROUTES};
use super::schema::ErrorBody;
use super::{
    airports, archives, audit, citizens, console, courses, demand, docs, erasure, insights, jobs,
    observability, ops, places, statements, towns,
};
use crate::access::Scope;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "insikt",
        description = "Where the demand for new courses is: by city (and nearby airport), \
                       age group and advertising channel.\n\n\
                       Success bodies are `{\"data\": …}`; every error is \
                       `{\"error\":{\"code\",\"message\",\"fields\"?}}` (schema `Error`). \
                       Every route also answers `OPTIONS` with an `Allow` header, \
                       and 405 for a method it does not serve.\n\n\
                       Each operation names the token scope it needs (`read_token`, \
                       `write_token`, `admin_token`: one bearer token each, `admin` \
                       including `write` including `read`). A service configured \
                       without read or write tokens runs open: `read` and `write` \
                       operations then need no token (`/readyz` says which).",
        license(name = "MIT"),
    ),
    paths(
        ops::healthz,
        ops::readyz,
        observability::metrics,
        observability::profile,
        observability::heap,
        docs::openapi_json,
        docs::swagger_ui,
        docs::swagger_ui_slash,
        docs::swagger_asset,
        console::console_page,
        console::console_asset,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Resources, &Scopes),
    tags(
        (name = "ops", description = "Liveness and readiness"),
        (name = "observability", description = "Metrics, CPU and heap profiles"),
        (name = "docs", description = "This document and its Swagger UI"),
        (name = "console", description = "The operators' web console (HTML for browsers)"),
    )
)]
pub struct ApiDoc;

/// The document as served, built once.
pub static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
});

/// Each resource documents its routes in its own `#[derive(OpenApi)] struct Api`
/// (in `src/http/<resource>.rs`), merged here.
struct Resources;

impl Modify for Resources {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let resources = [
            airports::Api::openapi(),
            archives::Api::openapi(),
            audit::Api::openapi(),
            citizens::Api::openapi(),
            courses::Api::openapi(),
            demand::Api::openapi(),
            erasure::Api::openapi(),
            insights::Api::openapi(),
            insights::OpportunitiesApi::openapi(),
            jobs::Api::openapi(),
            places::Api::openapi(),
            statements::Api::openapi(),
            towns::Api::openapi(),
        ];
        for resource in resources {
            openapi.merge(resource);
        }
    }
}

/// The security of every operation, from the route table (the one place
/// access is declared): its scope's bearer scheme, and its 401 and 403.
struct Scopes;

/// The bearer scheme of a scope in the document.
pub fn scheme_name(scope: Scope) -> String {
    format!("{scope}_token")
}

impl Modify for Scopes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::Http;
        let components = openapi.components.get_or_insert_with(Default::default);
        for scope in Scope::ALL {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(format!(
                "A token with the `{scope}` scope or a higher one (`insikt token new NAME \
                 --scope {scope}`)."
            ));
            components.add_security_scheme(scheme_name(scope), SecurityScheme::Http(http));
        }
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Error")))
                            .build(),
                    )
                    .build(),
            )
        };
        for route in ROUTES {
            let Some(item) = openapi.paths.paths.get_mut(route.pattern) else {
                continue;
            };
            for (method, access) in route.methods {
                let Access::Token(scope) = access else {
                    continue;
                };
                let operation = match *method {
                    warp::http::Method::GET => item.get.as_mut(),
                    warp::http::Method::POST => item.post.as_mut(),
                    warp::http::Method::PUT => item.put.as_mut(),
                    warp::http::Method::PATCH => item.patch.as_mut(),
                    warp::http::Method::DELETE => item.delete.as_mut(),
                    _ => None,
                };
                let Some(operation) = operation else {
                    continue;
                };
                operation.security = Some(vec![SecurityRequirement::new(
                    scheme_name(*scope),
                    Vec::<String>::new(),
                )]);
                let responses = &mut operation.responses.responses;
                responses
                    .entry("401".to_owned())
                    .or_insert_with(|| error("No token given (`WWW-Authenticate: Bearer`)"));
                responses.entry("403".to_owned()).or_insert_with(|| {
                    error(&format!(
                        "An unknown token, one without the `{scope}` scope, or a \
                         cross-site change"
                    ))
                });
            }
        }
    }
}
