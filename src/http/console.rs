//! The operators' console: one page of plain HTML, CSS and JavaScript,
//! compiled into the binary (nothing is fetched at build or run time), that
//! reads and drives the JSON API from the browser. It holds no state of its
//! own: the admin token it asks for stays in the browser's sessionStorage.

use warp::filters::BoxedFilter;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE};
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
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
];

pub fn routes() -> BoxedFilter<(Response,)> {
    let page = route("/console", Method::GET).map(|_| console_page());
    let asset = route("/console/{file}", Method::GET).map(|params| respond(console_asset(&params)));
    page.or(asset).unify().boxed()
}

/// The jobs console: every job with its state, lag and counts, stop and
/// start (asking for the admin token), a job's dead letters and archives,
/// an import's demand chart, and the process's resident memory over time.
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
    params(("file" = String, Path, description = "`console.js` or `console.css`")),
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
