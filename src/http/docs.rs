//! The OpenAPI document and the Swagger UI, whose files are compiled into
//! the binary (utoipa-swagger-ui's `vendored` feature: nothing is fetched at
//! build or run time).

use std::sync::{Arc, LazyLock};

use warp::filters::BoxedFilter;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::routes::{route, PathParams};
use super::schema::{Binary, ErrorBody};

/// Where the UI lives; its assets are `/docs/{file}`.
const UI_PREFIX: &str = "/docs/";

static UI_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
    LazyLock::new(|| Arc::new(utoipa_swagger_ui::Config::new(["/openapi.json"])));

/// `document` is the served OpenAPI document, built on first use; handed in
/// by the router, as the document is assembled from this module among others.
pub fn routes(document: &'static LazyLock<String>) -> BoxedFilter<(Response,)> {
    let document = route("/openapi.json", Method::GET).map(move |_| openapi_json(document));
    let ui = route("/docs", Method::GET).map(|_| respond(swagger_ui()));
    let ui_slash = route("/docs/", Method::GET).map(|_| respond(swagger_ui_slash()));
    let asset = route("/docs/{file}", Method::GET).map(|params| respond(swagger_asset(&params)));
    document
        .or(ui)
        .unify()
        .or(ui_slash)
        .unify()
        .or(asset)
        .unify()
        .boxed()
}

/// This API's OpenAPI 3 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "docs",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub(super) fn openapi_json(document: &'static str) -> Response {
    warp::reply::with_header(document, CONTENT_TYPE, "application/json").into_response()
}

/// The Swagger UI page for this document.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "docs",
    responses((status = 200, description = "Swagger UI", content_type = "text/html", body = String))
)]
pub(super) fn swagger_ui() -> Result<Response, ApiError> {
    let page = file("index.html")?;
    // The page links its assets relatively (`./swagger-ui.css`); served at
    // `/docs` (no trailing slash) they must resolve under `/docs/`.
    let html = String::from_utf8_lossy(&page.bytes).replacen(
        "<head>",
        &format!("<head>\n    <base href=\"{UI_PREFIX}\" />"),
        1,
    );
    Ok(warp::reply::with_header(html, CONTENT_TYPE, page.content_type).into_response())
}

/// The same Swagger UI page, at the address most Swagger UIs live at.
#[utoipa::path(
    get,
    path = "/docs/",
    tag = "docs",
    responses((status = 200, description = "Swagger UI", content_type = "text/html", body = String))
)]
pub(super) fn swagger_ui_slash() -> Result<Response, ApiError> {
    swagger_ui()
}

/// A file of the bundled Swagger UI (scripts, styles, icons).
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "docs",
    params(("file" = String, Path, description = "File name, e.g. `swagger-ui.css`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"), (String = "text/css"), (String = "text/html"),
            (Binary = "image/png"),
        )),
        (status = 404, description = "No such file", body = ErrorBody),
    )
)]
pub(super) fn swagger_asset(params: &PathParams) -> Result<Response, ApiError> {
    let name: String = params.get("file")?;
    let page = file(&name)?;
    let reply = warp::reply::with_header(page.bytes.into_owned(), CONTENT_TYPE, page.content_type);
    // The files change only with the binary.
    Ok(warp::reply::with_header(reply, CACHE_CONTROL, "public, max-age=3600").into_response())
}

fn file(name: &str) -> Result<utoipa_swagger_ui::SwaggerFile<'static>, ApiError> {
    match utoipa_swagger_ui::serve(name, Arc::clone(&UI_CONFIG)) {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(ApiError::not_found(format!(
            "no file {name} in the Swagger UI"
        ))),
        Err(error) => Err(ApiError::internal(&error)),
    }
}
