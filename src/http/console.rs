//! The operators' console: one page of plain HTML, CSS and JavaScript,
//! compiled into the binary (nothing is fetched at build or run time), that
//! reads and drives the JSON API from the browser. It holds no state of its
//! own: the tokens it asks for stay in the browser's sessionStorage. Served
//! with a Content Security Policy that allows only its own files (no inline
//! script, no other origin) and forbids framing (clickjacking).

use warp::filters::BoxedFilter;
use warp::http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY_HEADER,
    CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::routes::{route, PathParams};
use super::schema::ErrorBody;

const PAGE: &str = include_str!("console/index.html");

/// The page's assets: name, content type, contents.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("console/charts.js"),
    ),
    (
        "insights.js",
        "text/javascript; charset=utf-8",
        include_str!("console/insights.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
];

/// Only the console's own script and style; its API calls to this origin;
/// charts as `blob:` images; never inside a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The console's security headers, on the page and its files.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY_HEADER,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // For browsers that predate `frame-ancestors`.
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

pub fn routes() -> BoxedFilter<(Response,)> {
    let page = route("/console", Method::GET).map(|_| secured(console_page()));
    let asset = route("/console/{file}", Method::GET)
        .map(|params| secured(respond(console_asset(&params))));
    page.or(asset).unify().boxed()
}

/// The jobs console: every job with its state, lag and counts, stop and
/// start (asking for the admin token), a job's dead letters and archives,
/// an import's demand chart, the analyst's page of an import's insights
/// (`#/imports/{id}/insights`), and the process's resident memory over time.
#[utoipa::path(
    get,
    path = "/console",
    tag = "console",
    responses((status = 200, description = "The console page", content_type = "text/html", body = String))
)]
pub(super) fn console_page() -> Response {
    let reply = warp::reply::with_header(PAGE, CONTENT_TYPE, "text/html; charset=utf-8");
    // The page is tiny and changes with the binary: always the current one.
    warp::reply::with_header(reply, CACHE_CONTROL, "no-cache").into_response()
}

/// A script or style sheet of the console.
#[utoipa::path(
    get,
    path = "/console/{file}",
    tag = "console",
    params(("file" = String, Path, description = "`console.js`, `charts.js`, `insights.js` or `console.css`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"), (String = "text/css"),
        )),
        (status = 404, description = "No such file", body = ErrorBody),
    )
)]
pub(super) fn console_asset(params: &PathParams) -> Result<Response, ApiError> {
    let name: String = params.get("file")?;
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(file, _, _)| *file == name)
        .ok_or_else(|| ApiError::not_found(format!("no file {name} in the console")))?;
    let reply = warp::reply::with_header(*body, CONTENT_TYPE, *content_type);
    Ok(warp::reply::with_header(reply, CACHE_CONTROL, "no-cache").into_response())
}
