//! The insights that need places: `GET /imports/{id}/insights/near` (JSON
//! or CSV) and `GET /imports/{id}/insights/map.svg`. Thin: parse, ask
//! `crate::places`, render.

use chrono::Utc;
use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::extract::{query, raw_query};
use super::routes::{route, PathParams};
use super::schema::ErrorBody;
use super::suppressed::{self, Suppressed};
use super::{with_state, State};
use crate::places::near::{CenterAirport, NearCenter, NearRaw, NearTotals, NearTown, NotPlaced};
use crate::places::{self, MapQuery, Near, NearQuery, PlacesError};

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let near = route("/imports/{id}/insights/near", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(near)
        .map(respond);
    let map = route("/imports/{id}/insights/map.svg", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(map)
        .map(respond);
    near.or(map).unify().boxed()
}

/// Documents this file's routes; merged into the document by `openapi.rs`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(near, map),
    components(schemas(Suppressed<Near>, Near, NearCenter, CenterAirport, NearTown, NearTotals, NotPlaced)),
    tags((name = "insights", description = "Demand rates against the population, trends and emerging demand"))
)]
pub(super) struct Api;

impl From<PlacesError> for ApiError {
    fn from(error: PlacesError) -> Self {
        match error {
            PlacesError::Invalid { field, reason } => {
                ApiError::validation(format!("{field}: {reason}")).with_field(field, reason)
            }
            PlacesError::NotFound { field, reason } => {
                ApiError::not_found(reason.clone()).with_field(field, reason)
            }
            PlacesError::NoImport(id) => ApiError::not_found(format!("import {id} does not exist")),
            PlacesError::Param(e) => e.into(),
            PlacesError::Insights(e) => e.into(),
            PlacesError::Db(e) => e.into(),
            other => ApiError::internal(&other),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct NearParams {
    /// The IATA code of a live airport to measure from (or give `lat` and `lon`).
    #[param(example = "MAD", pattern = "^[A-Za-z0-9]{3}$")]
    airport: Option<String>,
    /// Latitude of the point to measure from, -90 to 90.
    #[param(minimum = -90, maximum = 90)]
    lat: Option<String>,
    /// Longitude of the point, -180 to 180.
    #[param(minimum = -180, maximum = 180)]
    lon: Option<String>,
    /// The radius, km: above 0, at most 20,000 (required).
    #[param(exclusive_minimum = 0, maximum = 20000)]
    radius_km: Option<String>,
    /// Only statements for this course (1 to 256 characters).
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    course: Option<String>,
    /// Only statements scored at least this.
    min_score: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MapParams {
    /// Only statements for this course (1 to 256 characters).
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    course: Option<String>,
    /// Only statements scored at least this.
    min_score: Option<String>,
}

/// The import's placed towns within `radius_km` of a live airport or a
/// point (great-circle, on the WGS84 spheroid), nearest first, each with
/// distance, population, askers, rate and its Wilson interval; totals; the
/// towns that cannot be placed (`ambiguous`, `unplaced`) listed apart.
#[utoipa::path(
    get,
    path = "/imports/{id}/insights/near",
    tag = "insights",
    params(("id" = i64, Path, description = "The import"), NearParams),
    responses(
        (status = 200, description = "The towns near the point (with `format=csv`: one row \
            per town, the unplaced last)",
            content((Suppressed<Near> = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter that does not parse; `fields` names it", body = ErrorBody),
        (status = 404, description = "No such import, or no live airport with that IATA code \
            (`fields.airport`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn near(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let p: NearParams = query(&raw)?;
    let import_id: i64 = params.get("id")?;
    let csv_out = match p.format.as_deref().map(str::trim) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(crate::insights::ParamError::Format.into()),
    };
    let mut near_query = NearQuery::parse(
        &NearRaw {
            airport: p.airport,
            lat: p.lat,
            lon: p.lon,
            radius_km: p.radius_km,
            course: p.course,
            min_score: p.min_score,
        },
        Utc::now(),
    )?;
    near_query.rates.common.min_group = state.config.min_group_size();
    let answer = places::near::near(&state.pool, &state.insights, import_id, near_query).await?;
    if !csv_out {
        return Ok(suppressed::json(&answer, answer.suppressed));
    }
    let body = places::csv::near(&answer);
    let reply = warp::reply::with_header(body, CONTENT_TYPE, "text/csv; charset=utf-8");
    let name = format!("attachment; filename=\"import-{import_id}-near.csv\"");
    let mut response = warp::reply::with_header(reply, CONTENT_DISPOSITION, name).into_response();
    suppressed::mark(&mut response, answer.suppressed);
    Ok(response)
}

/// The import's placed towns on a map (equirectangular, fitted to them; no
/// tiles): circle area by askers, colour by the age-standardised ratio
/// (askers ÷ expected, diverging around 1), labels that never overlap, the
/// airports as small marks; the towns without a place named in a footnote.
#[utoipa::path(
    get,
    path = "/imports/{id}/insights/map.svg",
    tag = "insights",
    params(("id" = i64, Path, description = "The import"), MapParams),
    responses(
        (status = 200, description = "An SVG map", content_type = "image/svg+xml", body = String),
        (status = 400, description = "A parameter that does not parse; `fields` names it", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn map(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let p: MapParams = query(&raw)?;
    let import_id: i64 = params.get("id")?;
    let map_query = MapQuery::parse(p.course, p.min_score, Utc::now())?
        .with_min_group(state.config.min_group_size());
    let (svg, left_out) =
        places::map::map_svg(&state.pool, &state.insights, import_id, map_query).await?;
    let mut response =
        warp::reply::with_header(svg, CONTENT_TYPE, "image/svg+xml; charset=utf-8").into_response();
    suppressed::mark(&mut response, left_out);
    Ok(response)
}
