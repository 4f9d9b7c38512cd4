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
use super::schema::{Data, ErrorBody};
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

/// Documents this file's routes; merged into the document by `openapi.rs`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(demand_json, demand_svg),
    components(schemas(DemandRowSchema)),
    modifiers(&Lists),
    tags((name = "demand", description = "Course demand by town, age group, channel and course"))
)]
pub(super) struct Api;

/// `by` and `age_bins` are comma-separated lists: documented as arrays in
/// the `form` style without `explode` (`by=town,age_group`), which the
/// derive cannot write. That `age_bins` must also increase, no schema can say.
struct Lists;

impl utoipa::Modify for Lists {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterStyle;
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        use utoipa::openapi::Required;
        let keys: Vec<&str> = demand::DemandKey::ALL.iter().map(|k| k.name()).collect();
        for (path, most_keys) in [
            ("/imports/{id}/demand", keys.len()),
            ("/imports/{id}/demand.svg", 2),
        ] {
            let Some(operation) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.get.as_mut())
            else {
                continue;
            };
            for parameter in operation.parameters.iter_mut().flatten() {
                let items = match parameter.name.as_str() {
                    "by" => {
                        parameter.required = Required::True;
                        ArrayBuilder::new()
                            .items(
                                ObjectBuilder::new()
                                    .schema_type(Type::String)
                                    .enum_values(Some(keys.clone())),
                            )
                            .min_items(Some(1))
                            .max_items(Some(most_keys))
                    }
                    "age_bins" => ArrayBuilder::new()
                        .items(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(1))
                                .maximum(Some(demand::MAX_AGE)),
                        )
                        .min_items(Some(1))
                        .max_items(Some(demand::MAX_AGE_BINS))
                        .default(Some(serde_json::json!(demand::DEFAULT_AGE_BINS))),
                    _ => continue,
                };
                parameter.style = Some(ParameterStyle::Form);
                parameter.explode = Some(false);
                parameter.schema = Some(items.unique_items(true).into());
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DemandParams {
    /// Required: comma-separated grouping keys among `town`, `age_group`,
    /// `channel`, `course`, each at most once (the chart takes one or two).
    #[param(example = json!(["town", "age_group"]))]
    by: Option<String>,
    /// 1 to 20 strictly increasing ages between 1 and 150 that bound the age groups.
    #[param(default = "18,25,35,45,55,65")]
    age_bins: Option<String>,
    /// Only statements for this course (1 to 256 characters).
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    course: Option<String>,
    /// Only this advertising channel (1 to 256 characters; `unknown` for none).
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    channel: Option<String>,
}

// Schema-only: a row serialises with just the keys named in `by`, so the real
// `DemandRow` is a dynamic map this struct mirrors for the document.
/// One group of the demand: the keys named in `by`, then its counts.
#[derive(utoipa::ToSchema)]
#[schema(as = DemandRow)]
#[allow(dead_code)]
struct DemandRowSchema {
    /// Present when `by` names `town`.
    #[schema(nullable = false)]
    town: Option<String>,
    /// Present when `by` names `age_group`, e.g. `18-24`.
    #[schema(nullable = false)]
    age_group: Option<String>,
    /// Present when `by` names `channel` (`unknown` for none).
    #[schema(nullable = false)]
    channel: Option<String>,
    /// Present when `by` names `course`.
    #[schema(nullable = false)]
    course: Option<String>,
    /// Statements in the group.
    statements: i64,
    /// Distinct citizens who made them.
    residents: i64,
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
    demand::demand(
        &state.pool,
        import_id,
        demand_query,
        &state.config.demand_work_mem,
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("import {import_id} does not exist")))
}

/// Demand of one import grouped by the keys of `by`, most statements first.
#[utoipa::path(
    get,
    path = "/imports/{id}/demand",
    tag = "demand",
    params(("id" = i64, Path, description = "The import"), DemandParams),
    responses(
        (status = 200, description = "One row per group", body = Data<Vec<DemandRowSchema>>),
        (status = 400, description = "Bad `id`, unknown parameter, or a parameter that \
            does not parse (`fields` names it)", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
    )
)]
async fn demand_json(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let demand_query = parse(&raw)?;
    let rows = load(&params, &demand_query, &state).await?;
    Ok(data(StatusCode::OK, &rows))
}

/// The same demand as a bar chart; `by` names one or two keys.
#[utoipa::path(
    get,
    path = "/imports/{id}/demand.svg",
    tag = "demand",
    params(("id" = i64, Path, description = "The import"), DemandParams),
    responses(
        (status = 200, description = "An SVG chart", content_type = "image/svg+xml", body = String),
        (status = 400, description = "As for `/demand`, or `by` names more than two keys", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
    )
)]
async fn demand_svg(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let demand_query = parse(&raw)?.for_chart()?;
    let rows = load(&params, &demand_query, &state).await?;
    let keys: Vec<&str> = demand_query.keys().iter().map(|k| k.name()).collect();
    let title = format!("Demand by {}", keys.join(" and "));
    let svg =
        chart::render(&title, demand_query.keys(), &rows).map_err(|e| ApiError::internal(&e))?;
    Ok(warp::reply::with_header(svg, CONTENT_TYPE, "image/svg+xml; charset=utf-8").into_response())
}
