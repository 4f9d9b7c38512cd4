//! Operator routes: Prometheus metrics, CPU and heap profiles (admin token).

use std::time::Duration;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::routes::route;
use super::schema::{Binary, ErrorBody};
use super::{extract, with_state, State};
use crate::telemetry::heap::{self, HeapError};
use crate::telemetry::metrics::{self, PoolUsage};
use crate::telemetry::profile::{self, Format, ProfileError};

/// Longest CPU profile one request may take, in seconds.
const MAX_PROFILE_SECONDS: u64 = 60;
const DEFAULT_PROFILE_SECONDS: u64 = 10;

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let metrics = route("/metrics", Method::GET)
        .and(with_state(state))
        .map(|_, state: State| metrics(&state));
    let profile = route("/debug/pprof/profile", Method::GET)
        .and(extract::raw_query())
        .then(|_, raw: String| profile(raw))
        .map(respond);
    let heap = route("/debug/pprof/heap", Method::GET)
        .then(|_| heap())
        .map(respond);
    metrics.or(profile).unify().or(heap).unify().boxed()
}

/// Prometheus metrics in the text exposition format: HTTP requests and
/// latencies by route pattern and status, database pool usage, per-job
/// statements, dead letters, lag and state, Kafka producer errors.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "observability",
    responses((
        status = 200,
        description = "Prometheus text exposition format 0.0.4",
        content_type = "text/plain; version=0.0.4",
        body = String,
        example = "insikt_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 3"
    ))
)]
pub(super) fn metrics(state: &State) -> Response {
    let status = state.pool.status();
    let body = metrics::render(PoolUsage {
        max_size: status.max_size,
        size: status.size,
        idle: status.available,
        waiting: status.waiting,
    });
    warp::reply::with_header(body, CONTENT_TYPE, metrics::CONTENT_TYPE).into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ProfileQuery {
    /// How long to sample, in seconds (1 to 60).
    #[param(minimum = 1, maximum = 60, default = 10)]
    seconds: Option<u64>,
    /// `svg` for a flame graph, `pb` for a pprof protobuf (`go tool pprof`).
    #[param(inline, default = "svg")]
    format: Option<ProfileFormat>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum ProfileFormat {
    Svg,
    Pb,
}

/// A CPU profile of the whole service over the next `seconds`, as a flame
/// graph SVG or a pprof protobuf. One profile at a time.
#[utoipa::path(
    get,
    path = "/debug/pprof/profile",
    tag = "observability",
    params(ProfileQuery),
    responses(
        (status = 200, description = "The profile", content(
            (String = "image/svg+xml"),
            (Binary = "application/octet-stream"),
        )),
        (status = 400, description = "`seconds` out of 1..=60 or unknown `format`", body = ErrorBody),
        (status = 409, description = "Another profile is being taken", body = ErrorBody),
    )
)]
pub(super) async fn profile(raw_query: String) -> Result<Response, ApiError> {
    let query: ProfileQuery = extract::query(&raw_query)?;
    let seconds = query.seconds.unwrap_or(DEFAULT_PROFILE_SECONDS);
    if !(1..=MAX_PROFILE_SECONDS).contains(&seconds) {
        return Err(
            ApiError::bad_request(format!("seconds must be 1 to {MAX_PROFILE_SECONDS}"))
                .with_field("seconds", seconds),
        );
    }
    let (format, content_type) = match query.format.unwrap_or(ProfileFormat::Svg) {
        ProfileFormat::Svg => (Format::Svg, "image/svg+xml"),
        ProfileFormat::Pb => (Format::Pprof, "application/octet-stream"),
    };
    tracing::info!(seconds, ?format, "taking a CPU profile");
    let bytes = profile::cpu_profile(Duration::from_secs(seconds), format)
        .await
        .map_err(|error| match error {
            ProfileError::Busy => ApiError::conflict(error.to_string()),
            ProfileError::Failed(_) => ApiError::internal(&error),
        })?;
    let reply = warp::reply::with_status(bytes, StatusCode::OK);
    Ok(warp::reply::with_header(reply, CONTENT_TYPE, content_type).into_response())
}

/// What the heap holds now (jemalloc's sampled allocations, one sample per
/// 512 KiB on average), as a gzipped pprof protobuf: `go tool pprof -top
/// BINARY heap.pb.gz` (the binary symbolises the addresses).
#[utoipa::path(
    get,
    path = "/debug/pprof/heap",
    tag = "observability",
    responses(
        (status = 200, description = "The heap profile (gzipped pprof, sample type `inuse_space`)",
            content_type = "application/octet-stream", body = Binary),
        (status = 503, description = "Heap profiling is off (`MALLOC_CONF` turned it off)", body = ErrorBody),
    )
)]
pub(super) async fn heap() -> Result<Response, ApiError> {
    let bytes = heap::heap_profile().await.map_err(|error| match error {
        HeapError::Off => ApiError::unavailable("heap_profiling_off", error.to_string()),
        HeapError::Failed(_) => ApiError::internal(&error),
    })?;
    let reply = warp::reply::with_header(bytes, CONTENT_TYPE, "application/octet-stream");
    Ok(warp::reply::with_header(
        reply,
        CONTENT_DISPOSITION,
        "attachment; filename=\"heap.pb.gz\"",
    )
    .into_response())
}
