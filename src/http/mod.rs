//! The HTTP API: warp filters per resource, the route table, and the one
//! place where errors become JSON. Handlers are thin: parse the request, call
//! the domain, map the result.

mod airports;
mod archives;
mod audit;
pub mod auth;
mod citizens;
mod console;
mod courses;
mod demand;
mod docs;
mod erasure;
pub mod error;
pub mod extract;
mod insights;
mod jobs;
mod observability;
pub mod openapi;
mod ops;
mod places;
pub mod routes;
pub mod schema;
pub mod server;
mod statements;
pub mod suppressed;
mod towns;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::access::Tokens;
use crate::config::Config;
use crate::db::Pool;
use crate::jobs::SupervisorHandle;
use crate::kafka::Cluster;
use crate::telemetry;
use crate::telemetry::metrics::UNMATCHED_ROUTE;

pub use error::ApiError;

/// What handlers share; cheap to clone.
#[derive(Clone)]
pub struct State {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub kafka: Cluster,
    pub supervisor: SupervisorHandle,
    pub insights: Arc<crate::insights::Insights>,
    /// Who may call what (from the configuration, hashed at start).
    pub tokens: Arc<Tokens>,
    /// Answers kept about imports (citizens' reads); erasure drops them.
    pub citizens: Arc<crate::citizens::KeptAnswers>,
}

impl State {
    pub fn new(
        config: Config,
        pool: Pool,
        kafka: Cluster,
        supervisor: SupervisorHandle,
        tokens: Tokens,
        insights: Arc<crate::insights::Insights>,
    ) -> Self {
        Self {
            config: Arc::new(config),
            pool,
            kafka,
            supervisor,
            insights,
            tokens: Arc::new(tokens),
            citizens: Arc::new(crate::citizens::KeptAnswers::new(KEPT_IMPORTS)),
        }
    }
}

/// Imports whose citizens' answers are kept (see `citizens::KeptAnswers`).
const KEPT_IMPORTS: usize = 64;

/// Hands the shared state to a handler.
pub fn with_state(state: &State) -> impl Filter<Extract = (State,), Error = Infallible> + Clone {
    let state = state.clone();
    warp::any().map(move || state.clone())
}

/// `{"data": value}` with `status`: the success envelope of every route.
pub fn data<T: serde::Serialize>(status: warp::http::StatusCode, value: &T) -> Response {
    let body = schema::Data { data: value };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// `201 Created` with `{"data": value}` and a `Location` of `collection`/`name`,
/// the name percent-encoded as one path segment.
pub fn created<T: serde::Serialize>(collection: &str, name: &str, value: &T) -> Response {
    let segment = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    let location = format!("{collection}/{segment}");
    warp::reply::with_header(
        data(warp::http::StatusCode::CREATED, value),
        warp::http::header::LOCATION,
        location,
    )
    .into_response()
}

const REQUEST_ID: &str = "x-request-id";

/// The whole API: every resource's routes, then the table's OPTIONS/405/404
/// answers, then rejection recovery; each request gets an id, a span (which
/// continues the caller's trace when it sends a W3C `traceparent`) and its
/// metrics (by route pattern, never by raw path).
pub fn router(state: &State) -> BoxedFilter<(Response,)> {
    let routes = ops::routes(state)
        .or(jobs::routes(state))
        .unify()
        .or(archives::routes(state))
        .unify()
        .or(statements::routes(state))
        .unify()
        .or(airports::routes(state))
        .unify()
        .or(demand::routes(state))
        .unify()
        .or(insights::routes(state))
        .unify()
        .or(courses::routes(state))
        .unify()
        .or(citizens::routes(state))
        .unify()
        .or(towns::routes(state))
        .unify()
        .or(places::routes(state))
        .unify()
        .or(observability::routes(state))
        .unify()
        .or(docs::routes(&openapi::DOCUMENT))
        .unify()
        .or(console::routes())
        .unify()
        .or(erasure::routes(state))
        .unify()
        .or(audit::routes(state))
        .unify()
        .or(routes::fallback())
        .unify();
    // The route table's access is checked before any handler runs.
    let api = auth::gate(state)
        .and(routes)
        .recover(error::recover)
        .unify();

    request_facts()
        .and(api)
        .map(|facts: RequestFacts, mut response: Response| {
            let status = response.status().as_u16();
            let elapsed = facts.started.elapsed().as_secs_f64();
            let span = tracing::Span::current();
            span.record("status", status);
            if status >= 500 {
                span.record("otel.status_code", "error");
            }
            tracing::info!(status, elapsed_ms = elapsed * 1e3, "request finished");
            telemetry::metrics::http_request(facts.method.as_str(), facts.route, status, elapsed);
            if let Ok(value) = HeaderValue::from_str(&facts.id) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            // No answer is to be read as another type than it says (an
            // echoed value taken for HTML), nor shown inside another site's
            // frame (the console and the docs are pages).
            let headers = response.headers_mut();
            headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            headers
                .entry(X_FRAME_OPTIONS)
                .or_insert(HeaderValue::from_static("DENY"));
            response
        })
        .with(warp::trace(|info| {
            let route = route_label(info.path());
            let span = tracing::info_span!(
                "http_request",
                otel.name = %format_args!("{} {route}", info.method()),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                method = %info.method(),
                path = %info.path(),
                route,
                request_id = tracing::field::Empty,
                status = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            );
            let headers = info.request_headers();
            let parent =
                telemetry::extract_context(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
            telemetry::set_parent(&span, parent);
            if let Some(trace_id) = telemetry::trace_id(&span) {
                span.record("trace_id", trace_id);
            }
            span
        }))
        .map(Reply::into_response)
        .boxed()
}

/// The route-table pattern serving `path`: the only path label metrics and
/// span names use, so their cardinality stays bounded.
fn route_label(path: &str) -> &'static str {
    routes::find(path).map_or(UNMATCHED_ROUTE, |params| params.route().pattern)
}

/// What the router remembers about a request until it is answered.
struct RequestFacts {
    id: String,
    started: Instant,
    method: warp::http::Method,
    route: &'static str,
}

/// The caller's `X-Request-Id` when it is sane, a fresh UUID otherwise
/// (recorded on the request span and echoed in the response), plus the start
/// time, method and route pattern for the metrics.
fn request_facts() -> impl Filter<Extract = (RequestFacts,), Error = Infallible> + Clone {
    warp::header::headers_cloned()
        .and(warp::method())
        .and(warp::path::full())
        .map(
            |headers: warp::http::HeaderMap,
             method: warp::http::Method,
             path: warp::filters::path::FullPath| {
                let id = headers
                    .get(REQUEST_ID)
                    .and_then(|value| value.to_str().ok())
                    .filter(|id| {
                        !id.is_empty()
                            && id.len() <= 128
                            && id.bytes().all(|b| b.is_ascii_graphic())
                    })
                    .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
                tracing::Span::current().record("request_id", id.as_str());
                RequestFacts {
                    id,
                    started: Instant::now(),
                    method,
                    route: route_label(path.as_str()),
                }
            },
        )
}
