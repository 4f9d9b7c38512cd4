//! Towns and their places: `GET /towns`, `PUT`/`DELETE /towns/{name}`,
//! and an import's towns with their airports
//! (`GET /imports/{id}/towns/airports`). Thin: parse, ask
//! `crate::places`, render.

use bytes::Bytes;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::auth;
use super::error::{respond, ApiError};
use super::extract::{json, json_body, query, raw_query};
use super::routes::{route, PathParams};
use super::schema::{Data, ErrorBody};
use super::{data, with_state, State};
use crate::audit::Origin;
use crate::places::towns::{PlaceView, UsedAirport};
use crate::places::{
    self, fixes, Candidate, Fix, FixBody, How, Status, TownAirport, TownAirports, TownEntry,
    TownName, TownPage, TownsQuery,
};

/// A fix is a country or two numbers.
const BODY_LIMIT: u64 = 4 * 1024;

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let airports = route("/imports/{id}/towns/airports", Method::GET)
        .and(with_state(state))
        .then(town_airports)
        .map(respond);
    let list = route("/towns", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(|_: PathParams, raw: String, state: State| list(raw, state))
        .map(respond);
    let put = route("/towns/{name}", Method::PUT)
        .and(json_body(BODY_LIMIT))
        .and(auth::origin(state))
        .and(with_state(state))
        .then(put)
        .map(respond);
    let delete = route("/towns/{name}", Method::DELETE)
        .and(auth::origin(state))
        .and(with_state(state))
        .then(delete)
        .map(respond);
    airports
        .or(list)
        .unify()
        .or(put)
        .unify()
        .or(delete)
        .unify()
        .boxed()
}

/// Documents this file's routes; merged into the document by `openapi.rs`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(town_airports, list, put, delete),
    components(schemas(TownAirports, TownAirport, TownEntry, TownPage, PlaceView, UsedAirport,
        Candidate, Fix, FixBody, Status, How)),
    tags((name = "towns", description = "Towns, where they are (placed by the airports of \
        their name, or fixed), and their airports"))
)]
pub(super) struct Api;

/// The path's town name, checked as imports check towns.
fn town(params: &PathParams) -> Result<TownName, ApiError> {
    let raw = params
        .raw("name")
        .ok_or_else(|| ApiError::internal(&"route has no parameter name"))?;
    Ok(TownName::parse(raw, "name")?)
}

/// Every town of the import, by name, with its place (the same rule as
/// `/towns`, `near` and the map) and every live airport whose `city` is
/// its name (case-insensitive), `chosen` when it places the town.
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
    let towns = places::towns::town_airports(&state.pool, import_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("import {import_id} does not exist")))?;
    Ok(data(StatusCode::OK, &towns))
}

/// Every town name of every import (and every fixed name) with its place:
/// `placed` (how: `airports`, `country` or `coordinates`, and the airports
/// used), `ambiguous` (the candidate countries) or `unplaced`; by name,
/// a page at a time.
#[utoipa::path(
    get,
    path = "/towns",
    tag = "towns",
    params(TownsQuery),
    responses(
        (status = 200, description = "A page of towns", body = Data<TownPage>),
        (status = 400, description = "A parameter that does not parse; `fields` names it", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn list(raw: String, state: State) -> Result<Response, ApiError> {
    let filter: TownsQuery = query(&raw)?;
    Ok(data(
        StatusCode::OK,
        &places::towns::list(&state.pool, &filter).await?,
    ))
}

/// Fixes a town's place: `{"country": …}` places it among that country's
/// live airports of its name (400 when there is none), `{"latitude": …,
/// "longitude": …}` places it there. Names match case-insensitively. The
/// answer is the town's place now.
#[utoipa::path(
    put,
    path = "/towns/{name}",
    tag = "towns",
    params(("name" = String, Path, description = "The town (1 to 256 characters)")),
    request_body = FixBody,
    responses(
        (status = 201, description = "Fixed; the town had no fix before", body = Data<PlaceView>,
            headers(("Location" = String, description = "`/towns/{name}`"))),
        (status = 200, description = "The fix replaced", body = Data<PlaceView>),
        (status = 400, description = "A name, country or coordinates that break the rules, \
            or a country without a live airport of that name; `fields` names it; nothing is written",
            body = ErrorBody),
        (status = 413, description = "A body over 4 KiB", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json`", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn put(
    params: PathParams,
    body: Bytes,
    origin: Origin,
    state: State,
) -> Result<Response, ApiError> {
    let name = town(&params)?;
    let fix = fixes::parse_fix(&json(&body)?)?;
    let (place, created) = fixes::put(&state.pool, &name, &fix, &origin).await?;
    let view = PlaceView::from(&place);
    if !created {
        return Ok(data(StatusCode::OK, &view));
    }
    Ok(super::created("/towns", name.as_str(), &view))
}

/// Removes a town's fix: the rule places it again.
#[utoipa::path(
    delete,
    path = "/towns/{name}",
    tag = "towns",
    params(("name" = String, Path, description = "The town")),
    responses(
        (status = 204, description = "The fix is gone"),
        (status = 400, description = "Not a valid town name", body = ErrorBody),
        (status = 404, description = "The town has no fix", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn delete(params: PathParams, origin: Origin, state: State) -> Result<Response, ApiError> {
    let name = town(&params)?;
    if fixes::delete(&state.pool, &name, &origin).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(
            ApiError::not_found(format!("town {:?} has no fixed place", name.as_str()))
                .with_field("name", "has no fixed place"),
        )
    }
}
