//! `GET /audit` (admin): the audit trail, oldest first, paged by id.

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::{respond, ApiError};
use super::extract;
use super::routes::route;
use super::schema::{Data, ErrorBody};
use super::{data, with_state, State};
use crate::audit::{self, AuditRow};

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    route("/audit", Method::GET)
        .and(extract::raw_query())
        .and(with_state(state))
        .then(|_, raw: String, state| list(raw, state))
        .map(respond)
        .boxed()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list),
    components(schemas(AuditRow)),
    tags((name = "audit", description = "Who changed what, when (admin)"))
)]
pub(super) struct Api;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only rows with an id above this (for paging: the last id seen).
    #[param(default = 0)]
    after: Option<i64>,
    /// How many at most (1 to 1000).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// Every accepted change (who by token name, when, the route, the import,
/// citizen, airport or job it touched, the outcome), oldest first. No row
/// holds a personal field's value.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "The rows", body = Data<Vec<AuditRow>>),
        (status = 400, description = "Bad `after` or `limit`, or an unknown parameter", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn list(raw: String, state: State) -> Result<Response, ApiError> {
    let query: AuditQuery = extract::query(&raw)?;
    let (after, limit) = extract::page(query.after, query.limit)?;
    let rows = audit::page(&state.pool, after, limit).await?;
    Ok(data(StatusCode::OK, &rows))
}
