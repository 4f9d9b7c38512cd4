//! Towns of an import and their airports, so demand can be read per airport.

use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::{respond, ApiError};
use super::routes::{route, PathParams};
use super::schema::{Data, ErrorBody};
use super::{data, with_state, State};
use crate::airports::{self, TownAirports};

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    route("/imports/{id}/towns/airports", Method::GET)
        .and(with_state(state))
        .then(town_airports)
        .map(respond)
        .boxed()
}

/// Documents this file's routes; merged into the document by `openapi.rs`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(town_airports),
    components(schemas(TownAirports)),
    tags((name = "towns", description = "The towns of an import and their airports"))
)]
pub(super) struct Api;

/// Every town of the import, by name, with the airports whose `city` is that
/// town (case-insensitive; deleted airports excluded). A town without an
/// airport has an empty list.
#[utoipa::path(
    get,
    path = "/imports/{id}/towns/airports",
    tag = "towns",
    params(("id" = i64, Path, description = "The import")),
    responses(
        (status = 200, description = "One entry per town", body = Data<Vec<TownAirports>>),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn town_airports(params: PathParams, state: State) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("id")?;
    let towns = airports::town_airports(&state.pool, import_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("import {import_id} does not exist")))?;
    Ok(data(StatusCode::OK, &towns))
}
