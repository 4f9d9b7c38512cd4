//! Operational routes: liveness and readiness.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::{respond, ApiError};
use super::routes::route;
use super::schema::{Data, ErrorBody};
use super::{data, with_state, State};
use crate::db;

/// How long readiness waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let healthz = route("/healthz", Method::GET).map(|_| healthz());
    let readyz = route("/readyz", Method::GET)
        .and(with_state(state))
        .then(|_, state| readyz(state))
        .map(respond);
    healthz.or(readyz).unify().boxed()
}

/// `GET /healthz` body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `up`.
    #[schema(example = "up")]
    pub status: &'static str,
}

/// `GET /readyz` body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `ok` per dependency (`postgres`, `kafka`) and for `insights` (the
    /// imports asked lately, loaded at start; `loading` until then, at most
    /// 30 s).
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub checks: Map<String, Value>,
    /// `open` when no read or write token is configured (anyone who reaches
    /// the port reads and changes data: for development only), `tokens`
    /// otherwise.
    #[schema(example = "tokens", pattern = "^(open|tokens)$")]
    pub access: &'static str,
    /// The imports asked lately that this instance loaded at start, of
    /// those it set out to load (readiness waits for them, 30 s at most).
    pub insights: WarmUp,
}

/// The insights' loads at start.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WarmUp {
    /// Imports loaded.
    pub loaded: usize,
    /// Imports to load: asked within 7 days, at most 8, within half of
    /// `INSIKT_INSIGHTS_MEMORY`.
    pub planned: usize,
}

/// Liveness: the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "The process is up", body = Data<Health>))
)]
pub(super) fn healthz() -> Response {
    data(StatusCode::OK, &Health { status: "up" })
}

/// Readiness: PostgreSQL answers a query, Kafka a metadata request, and the
/// imports asked lately are loaded (so the first ask after a restart is not
/// a cold one); otherwise 503 naming the failing part in `fields`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready to serve", body = Data<Readiness>),
        (status = 503, description = "A dependency is unavailable or the start's loads \
            are running; `fields` names it (`{\"postgres\": \"unavailable\", \"kafka\": \"ok\", \
            \"insights\": \"ok\"}`)", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "readyz", skip_all)]
pub(super) async fn readyz(state: State) -> Result<Response, ApiError> {
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
    let loading = state.insights.warming();
    checks.insert(
        "insights".to_owned(),
        Value::String(if loading { "loading" } else { "ok" }.to_owned()),
    );
    if failing.is_empty() && !loading {
        Ok(data(
            StatusCode::OK,
            &Readiness {
                status: "ready",
                checks,
                access: if state.tokens.is_open() {
                    "open"
                } else {
                    "tokens"
                },
                insights: {
                    let (loaded, planned) = state.insights.warm_up();
                    WarmUp { loaded, planned }
                },
            },
        ))
    } else {
        Err(ApiError::unavailable(
            "not_ready",
            if failing.is_empty() {
                "not ready: loading the imports asked lately (at most 30 s)".to_owned()
            } else {
                format!("not ready: {} unavailable", failing.join(" and "))
            },
        )
        .with_fields(checks))
    }
}
