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
use crate::kafka::Replication;

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
    /// The partitions of this service's statement topics and of Kafka's
    /// transaction log that lack replicas: `under_replicated` ones still
    /// take writes (one more broker lost may stop them); a `not_writable`
    /// one makes readiness fail.
    pub kafka_replication: Replication,
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

/// Readiness: PostgreSQL answers a query, Kafka a metadata request, every
/// partition the service writes to has its `min.insync.replicas` in sync,
/// and the imports asked lately are loaded (so the first ask after a
/// restart is not a cold one); otherwise 503 naming the failing part in
/// `fields`. Partitions short of replicas but still writable are reported,
/// ready.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready to serve", body = Data<Readiness>),
        (status = 503, description = "A dependency is unavailable or the start's loads \
            are running; `fields` names it (`{\"postgres\": \"unavailable\", \"kafka\": \"ok\", \
            \"insights\": \"ok\"}`), `kafka` is `not_writable` when a partition has fewer \
            in-sync replicas than its `min.insync.replicas`, and `kafka_replication` lists \
            them; `insights` is `loading` while the start's loads run", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "readyz", skip_all)]
pub(super) async fn readyz(state: State) -> Result<Response, ApiError> {
    let prefix = &state.config.topic_prefix;
    let (postgres, kafka) = tokio::join!(
        within_ready_timeout(db::ping(&state.pool)),
        within_ready_timeout(state.kafka.replication(prefix, READY_TIMEOUT)),
    );
    let kafka_replication = kafka.as_ref().ok().cloned().unwrap_or_default();
    let kafka = match kafka {
        Ok(replication) if !replication.writable() => Err("not_writable"),
        Ok(_) => Ok(()),
        Err(reason) => {
            tracing::warn!(dependency = "kafka", %reason, "not ready");
            Err("unavailable")
        }
    };
    let postgres = postgres.map_err(|reason| {
        tracing::warn!(dependency = "postgres", %reason, "not ready");
        "unavailable"
    });
    let mut checks = Map::new();
    let mut failing = Vec::new();
    for (name, result) in [("postgres", postgres), ("kafka", kafka)] {
        let status = match result {
            Ok(()) => "ok",
            Err(status) => {
                failing.push(name);
                status
            }
        };
        checks.insert(name.to_owned(), Value::String(status.to_owned()));
    }
    if !kafka_replication.writable() {
        tracing::warn!(partitions = ?kafka_replication.not_writable, "not ready: too few in-sync replicas");
    } else if !kafka_replication.under_replicated.is_empty() {
        tracing::info!(partitions = ?kafka_replication.under_replicated, "under-replicated partitions");
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
                kafka_replication,
                insights: {
                    let (loaded, planned) = state.insights.warm_up();
                    WarmUp { loaded, planned }
                },
            },
        ))
    } else {
        if !kafka_replication.writable() {
            checks.insert(
                "kafka_replication".to_owned(),
                serde_json::to_value(&kafka_replication).unwrap_or_default(),
            );
        }
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

/// `check`'s answer within [`READY_TIMEOUT`], its error as text.
async fn within_ready_timeout<T, E: std::fmt::Display>(
    check: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}
