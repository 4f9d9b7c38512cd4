//! Jobs: list, show, stop and start (the last two need the admin scope,
//! and are audited).

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::{respond, ApiError};
use super::routes::{route, PathParams};
use super::schema::{Data, ErrorBody};
use super::{auth, data, extract, with_state, State};
use crate::audit::Origin;
use crate::jobs::{JobFilter, JobView, JobsError};

const STATES: [&str; 5] = ["pending", "running", "stopped", "expired", "failed"];

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let list = route("/jobs", Method::GET)
        .and(extract::raw_query())
        .and(with_state(state))
        .then(|_, query: String, state| list(state, query))
        .map(respond);
    let show = route("/jobs/{name}", Method::GET)
        .and(with_state(state))
        .then(|params, state| show(state, params))
        .map(respond);
    let stop = route("/jobs/{name}/stop", Method::POST)
        .and(auth::origin(state))
        .and(with_state(state))
        .then(|params, origin, state| stop(state, params, origin))
        .map(respond);
    let start = route("/jobs/{name}/start", Method::POST)
        .and(auth::origin(state))
        .and(with_state(state))
        .then(|params, origin, state| start(state, params, origin))
        .map(respond);
    list.or(show)
        .unify()
        .or(stop)
        .unify()
        .or(start)
        .unify()
        .boxed()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, show, stop, start),
    components(schemas(JobView)),
    tags((name = "jobs", description = "The per-import jobs that store statements from Kafka"))
)]
pub(super) struct Api;

impl From<JobsError> for ApiError {
    fn from(error: JobsError) -> Self {
        match error {
            JobsError::Db(e) => e.into(),
            JobsError::NotFound(name) => ApiError::not_found(format!("no job {name}")),
            JobsError::NoImport(id) => ApiError::not_found(format!("no import {id}")),
            JobsError::Expired(name) => {
                ApiError::conflict(format!("job {name} has expired; it cannot run again"))
            }
            JobsError::Kafka(e) => {
                tracing::warn!(error = %e, "kafka unavailable");
                ApiError::unavailable("kafka_unavailable", "Kafka is unavailable")
            }
            JobsError::NoArchive(name) => ApiError::not_found(format!("job {name} has no archive")),
            JobsError::ArchiveStore(crate::archive::ArchiveError::Store(e)) => {
                tracing::warn!(error = %e, "archive store unavailable");
                ApiError::unavailable("archive_unavailable", "The archive store is unavailable")
            }
            other => ApiError::internal(&other),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only jobs in this state.
    #[param(pattern = "^(pending|running|stopped|expired|failed)$")]
    state: Option<String>,
    /// Only the job of this import.
    import: Option<i64>,
}

/// The jobs, optionally filtered by state or import.
#[utoipa::path(
    get,
    path = "/jobs",
    tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "The jobs", body = Data<Vec<JobView>>),
        (status = 400, description = "Unknown filter, bad `import` or `state` not a job state (named in `fields`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn list(state: State, raw: String) -> Result<Response, ApiError> {
    let query: ListQuery = extract::query(&raw)?;
    if let Some(s) = &query.state {
        if !STATES.contains(&s.as_str()) {
            return Err(ApiError::bad_request("invalid state filter")
                .with_field("state", format!("must be one of {}", STATES.join(", "))));
        }
    }
    let filter = JobFilter {
        name: None,
        state: query.state,
        import: query.import,
    };
    let jobs = state.supervisor.list(&filter).await?;
    Ok(data(StatusCode::OK, &jobs))
}

const NAME: &str = "The job's name (as in `GET /jobs`)";

/// The path's job name (one holding NUL is a 400, see `PathParams::get`).
fn job_name(params: &PathParams) -> Result<String, ApiError> {
    params.get("name")
}

/// One job, with its offsets, lag and counts.
#[utoipa::path(
    get,
    path = "/jobs/{name}",
    tag = "jobs",
    params(("name" = String, Path, description = NAME)),
    responses(
        (status = 200, description = "The job", body = Data<JobView>),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn show(state: State, params: PathParams) -> Result<Response, ApiError> {
    let name = job_name(&params)?;
    match state.supervisor.get(&name).await? {
        Some(job) => Ok(data(StatusCode::OK, &job)),
        None => Err(ApiError::not_found(format!("no job {name}"))),
    }
}

/// Stops the job after its current batch; it stays stopped across restarts
/// until started again. Stopping a stopped job is a no-op.
#[utoipa::path(
    post,
    path = "/jobs/{name}/stop",
    tag = "jobs",
    params(("name" = String, Path, description = NAME)),
    responses(
        (status = 200, description = "The job, now stopped", body = Data<JobView>),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has expired", body = ErrorBody),
        (status = 503, description = "The database or Kafka is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn stop(
    state: State,
    params: PathParams,
    origin: Origin,
) -> Result<Response, ApiError> {
    let name = job_name(&params)?;
    let job = state.supervisor.stop(&name).await?;
    audit_job(&state, &origin, "stopped", &job).await;
    Ok(data(StatusCode::OK, &job))
}

/// Job control is done by the supervisor, not in a transaction of ours: its
/// row is written once the change is made (a failure is logged).
async fn audit_job(state: &State, origin: &Origin, outcome: &'static str, job: &JobView) {
    let entry = origin.entry(outcome).import(job.import).job(&job.name);
    if let Err(error) = entry.record_alone(&state.pool).await {
        tracing::error!(%error, job = %job.name, outcome, "audit row not written");
    }
}

/// Starts a stopped (or failed) job again from its committed offset.
/// Starting a running job is a no-op.
#[utoipa::path(
    post,
    path = "/jobs/{name}/start",
    tag = "jobs",
    params(("name" = String, Path, description = NAME)),
    responses(
        (status = 200, description = "The job, now running (or pending until Kafka answers)", body = Data<JobView>),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has expired; it cannot run again", body = ErrorBody),
        (status = 503, description = "The database or Kafka is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn start(
    state: State,
    params: PathParams,
    origin: Origin,
) -> Result<Response, ApiError> {
    let name = job_name(&params)?;
    let job = state.supervisor.resume(&name).await?;
    audit_job(&state, &origin, "started", &job).await;
    Ok(data(StatusCode::OK, &job))
}
