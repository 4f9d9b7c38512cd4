//! The HTTP API: warp filters per resource, the route table, and the one
//! place where errors become JSON. Handlers are thin: parse the request, call
//! the domain, map the result.

mod airports;
mod citizens;
mod demand;
pub mod error;
pub mod extract;
mod jobs;
mod ops;
pub mod routes;
mod statements;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use warp::filters::BoxedFilter;
use warp::http::header::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::config::Config;
use crate::db::Pool;
use crate::jobs::SupervisorHandle;
use crate::kafka::{Cluster, Producer};

pub use error::ApiError;

/// What handlers share; cheap to clone.
#[derive(Clone)]
pub struct State {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub kafka: Cluster,
    /// The one idempotent producer of the service.
    pub producer: Producer,
    pub supervisor: SupervisorHandle,
}

/// Hands the shared state to a handler.
pub fn with_state(state: &State) -> impl Filter<Extract = (State,), Error = Infallible> + Clone {
    let state = state.clone();
    warp::any().map(move || state.clone())
}

/// `{"data": value}` with `status`: the success envelope of every route.
pub fn data<T: serde::Serialize>(status: warp::http::StatusCode, value: &T) -> Response {
    let body = serde_json::json!({ "data": value });
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

const REQUEST_ID: &str = "x-request-id";

/// The whole API: every resource's routes, then the table's OPTIONS/405/404
/// answers, then rejection recovery; each request gets an id and a span.
pub fn router(state: &State) -> BoxedFilter<(Response,)> {
    let api = ops::routes(state)
        .or(jobs::routes(state))
        .unify()
        .or(statements::routes(state))
        .unify()
        .or(airports::routes(state))
        .unify()
        .or(demand::routes(state))
        .unify()
        .or(citizens::routes(state))
        .unify()
        .or(routes::fallback())
        .unify()
        .recover(error::recover)
        .unify();

    request_id()
        .and(api)
        .map(|(id, started): (String, Instant), mut response: Response| {
            let status = response.status().as_u16();
            let span = tracing::Span::current();
            span.record("status", status);
            tracing::info!(
                status,
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "request finished"
            );
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            response
        })
        .with(warp::trace(|info| {
            tracing::info_span!(
                "http_request",
                method = %info.method(),
                path = %info.path(),
                request_id = tracing::field::Empty,
                status = tracing::field::Empty,
            )
        }))
        .map(Reply::into_response)
        .boxed()
}

/// The caller's `X-Request-Id` when it is sane, a fresh UUID otherwise;
/// recorded on the request span and echoed in the response.
fn request_id() -> impl Filter<Extract = ((String, Instant),), Error = Infallible> + Clone {
    warp::header::headers_cloned().map(|headers: warp::http::HeaderMap| {
        let id = headers
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .filter(|id| {
                !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
            })
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        tracing::Span::current().record("request_id", id.as_str());
        (id, Instant::now())
    })
}
