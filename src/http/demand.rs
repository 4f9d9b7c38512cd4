//! Demand routes: the numbers as JSON and as an SVG chart.

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::header::CONTENT_TYPE;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::extract::{query, raw_query};
use super::routes::{route, PathParams};
use super::{data, with_state, State};
use crate::demand::{self, chart, DemandParamError, DemandQuery, DemandRow};

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let json = route("/imports/{id}/demand", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(demand_json)
        .map(respond);
    let svg = route("/imports/{id}/demand.svg", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(demand_svg)
        .map(respond);
    json.or(svg).unify().boxed()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemandParams {
    by: Option<String>,
    age_bins: Option<String>,
    course: Option<String>,
    channel: Option<String>,
}

impl From<DemandParamError> for ApiError {
    fn from(error: DemandParamError) -> Self {
        ApiError::bad_request(error.to_string()).with_field(error.parameter(), error.to_string())
    }
}

fn parse(raw: &str) -> Result<DemandQuery, ApiError> {
    let params: DemandParams = query(raw)?;
    Ok(DemandQuery::parse(
        params.by.as_deref().unwrap_or(""),
        params.age_bins.as_deref(),
        params.course.as_deref(),
        params.channel.as_deref(),
    )?)
}

async fn load(
    params: &PathParams,
    demand_query: &DemandQuery,
    state: &State,
) -> Result<Vec<DemandRow>, ApiError> {
    let import_id: i64 = params.get("id")?;
    demand::demand(&state.pool, import_id, demand_query)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("import {import_id} does not exist")))
}

async fn demand_json(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let demand_query = parse(&raw)?;
    let rows = load(&params, &demand_query, &state).await?;
    Ok(data(StatusCode::OK, &rows))
}

async fn demand_svg(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let demand_query = parse(&raw)?.for_chart()?;
    let rows = load(&params, &demand_query, &state).await?;
    let keys: Vec<&str> = demand_query.keys().iter().map(|k| k.name()).collect();
    let title = format!("Demand by {}", keys.join(" and "));
    let svg =
        chart::render(&title, demand_query.keys(), &rows).map_err(|e| ApiError::internal(&e))?;
    Ok(warp::reply::with_header(svg, CONTENT_TYPE, "image/svg+xml; charset=utf-8").into_response())
}
