//! Jobs: list, show, stop and start (the last two need the admin token).

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::{respond, ApiError};
use super::routes::{route, PathParams};
use super::{data, extract, with_state, State};
use crate::jobs::{JobFilter, JobsError};

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
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state(state))
        .then(|params, auth, state| control(state, params, auth, false))
        .map(respond);
    let start = route("/jobs/{name}/start", Method::POST)
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state(state))
        .then(|params, auth, state| control(state, params, auth, true))
        .map(respond);
    list.or(show)
        .unify()
        .or(stop)
        .unify()
        .or(start)
        .unify()
        .boxed()
}

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
            other => ApiError::internal(&other),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    import: Option<i64>,
}

async fn list(state: State, raw: String) -> Result<Response, ApiError> {
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

async fn show(state: State, params: PathParams) -> Result<Response, ApiError> {
    let name: String = params.get("name")?;
    match state.supervisor.get(&name).await? {
        Some(job) => Ok(data(StatusCode::OK, &job)),
        None => Err(ApiError::not_found(format!("no job {name}"))),
    }
}

async fn control(
    state: State,
    params: PathParams,
    authorization: Option<String>,
    run: bool,
) -> Result<Response, ApiError> {
    require_admin(
        state.config.admin_token.as_deref(),
        authorization.as_deref(),
    )?;
    let name: String = params.get("name")?;
    let job = if run {
        state.supervisor.resume(&name).await?
    } else {
        state.supervisor.stop(&name).await?
    };
    Ok(data(StatusCode::OK, &job))
}

/// Missing credentials are 401; wrong ones, or no token configured, 403.
fn require_admin(expected: Option<&str>, authorization: Option<&str>) -> Result<(), ApiError> {
    let Some(authorization) = authorization else {
        return Err(ApiError::unauthorized("the admin bearer token is required"));
    };
    let given = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .unwrap_or("")
        .trim();
    match expected {
        Some(expected) if !expected.is_empty() && constant_time_eq(expected, given) => Ok(()),
        _ => Err(ApiError::forbidden("not allowed")),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_checks() {
        assert_eq!(
            require_admin(Some("t"), None).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            require_admin(Some("t"), Some("Bearer x"))
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            require_admin(None, Some("Bearer t")).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            require_admin(Some("t"), Some("t")).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(require_admin(Some("t"), Some("Bearer t")).is_ok());
    }
}
