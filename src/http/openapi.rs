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

use utoipa::openapi::security::{HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::schema::{ErrorBody, ADMIN_TOKEN};
use super::{
    airports, archives, citizens, console, courses, demand, docs, insights, jobs, observability,
    ops, places, statements, towns,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "insikt",
        description = "Where the demand for new courses is: by city (and nearby airport), \
                       age group and advertising channel.\n\n\
                       Success bodies are `{\"data\": …}`; every error is \
                       `{\"error\":{\"code\",\"message\",\"fields\"?}}` (schema `Error`). \
                       Every route also answers `OPTIONS` with an `Allow` header, \
                       and 405 for a method it does not serve.",
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
    modifiers(&AdminToken, &Resources),
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

struct AdminToken;

/// Each resource documents its routes in its own `#[derive(OpenApi)] struct Api`
/// (in `src/http/<resource>.rs`), merged here.
struct Resources;

impl Modify for Resources {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let resources = [
            airports::Api::openapi(),
            archives::Api::openapi(),
            citizens::Api::openapi(),
            courses::Api::openapi(),
            demand::Api::openapi(),
            insights::Api::openapi(),
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

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(utoipa::openapi::security::Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
