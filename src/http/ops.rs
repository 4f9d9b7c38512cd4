//! Operational routes: liveness and readiness.

use std::time::Duration;

use serde_json::{json, Map, Value};
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::{respond, ApiError};
use super::routes::route;
use super::{data, with_state, State};
use crate::db;

/// How long readiness waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let healthz =
        route("/healthz", Method::GET).map(|_| data(StatusCode::OK, &json!({ "status": "up" })));
    let readyz = route("/readyz", Method::GET)
        .and(with_state(state))
        .then(|_, state| readyz(state))
        .map(respond);
    healthz.or(readyz).unify().boxed()
}

/// Ready when PostgreSQL answers a query and Kafka answers a metadata request;
/// otherwise 503 naming the failing part in `fields`.
async fn readyz(state: State) -> Result<Response, ApiError> {
    let (postgres, kafka) = tokio::join!(
        async {
            match tokio::time::timeout(READY_TIMEOUT, db::ping(&state.pool)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("timed out".to_owned()),
            }
        },
        async {
            state
                .kafka
                .ping(READY_TIMEOUT)
                .await
                .map_err(|e| e.to_string())
        }
    );
    let mut checks = Map::new();
    let mut failing = Vec::new();
    for (name, result) in [("postgres", postgres), ("kafka", kafka)] {
        let status = match result {
            Ok(()) => "ok".to_owned(),
            Err(reason) => {
                tracing::warn!(dependency = name, %reason, "not ready");
                failing.push(name);
                "unavailable".to_owned()
            }
        };
        checks.insert(name.to_owned(), Value::String(status));
    }
    if failing.is_empty() {
        Ok(data(
            StatusCode::OK,
            &json!({ "status": "ready", "checks": checks }),
        ))
    } else {
        Err(ApiError::unavailable(
            "not_ready",
            format!("not ready: {} unavailable", failing.join(" and ")),
        )
        .with_fields(checks))
    }
}
