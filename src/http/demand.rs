//! Demand routes: the numbers as JSON or CSV, and as an SVG chart. Groups
//! of fewer residents than `INSIKT_MIN_GROUP_SIZE` are left out of all
//! three and counted (see `crate::privacy`, `super::suppressed`).

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::extract::{query, raw_query};
use super::routes::{route, PathParams};
use super::schema::ErrorBody;
use super::suppressed::{self, Suppressed};
use super::{with_state, State};
use crate::demand::{self, chart, DemandKey, DemandParamError, DemandQuery, DemandRow};
use crate::privacy::Kept;

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
    components(schemas(DemandRowSchema, Suppressed<Vec<DemandRowSchema>>)),
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
    /// `json` (default) or `csv` for `/demand`; the chart takes none (or `svg`).
    #[param(pattern = "^(json|csv|svg)$")]
    format: Option<String>,
}

/// How an answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Svg,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Svg => "svg",
        }
    }
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

fn parse(raw: &str, allowed: &[Format]) -> Result<(DemandQuery, Format), ApiError> {
    let params: DemandParams = query(raw)?;
    let format = match params.format.as_deref() {
        None => Some(allowed[0]),
        Some("json") => Some(Format::Json),
        Some("csv") => Some(Format::Csv),
        Some("svg") => Some(Format::Svg),
        Some(_) => None,
    }
    .filter(|format| allowed.contains(format));
    let Some(format) = format else {
        let names: Vec<&str> = allowed.iter().map(|f| f.name()).collect();
        return Err(ApiError::bad_request("invalid format")
            .with_field("format", format!("must be {}", names.join(" or "))));
    };
    let demand_query = DemandQuery::parse(
        params.by.as_deref().unwrap_or(""),
        params.age_bins.as_deref(),
        params.course.as_deref(),
        params.channel.as_deref(),
    )?;
    Ok((demand_query, format))
}

/// The import's demand rows, without the groups too small to show.
async fn load(
    params: &PathParams,
    demand_query: &DemandQuery,
    state: &State,
) -> Result<(i64, Kept<DemandRow>), ApiError> {
    let import_id: i64 = params.get("id")?;
    let rows = demand::demand(
        &state.pool,
        import_id,
        demand_query,
        &state.config.demand_work_mem,
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("import {import_id} does not exist")))?;
    // A group is as small as the residents behind it.
    let kept = state
        .config
        .min_group_size()
        .apply(rows, |row| row.residents);
    Ok((import_id, kept))
}

/// Demand of one import grouped by the keys of `by`, most statements first;
/// as JSON, or with `format=csv` as CSV (one header row, the same rows).
#[utoipa::path(
    get,
    path = "/imports/{id}/demand",
    tag = "demand",
    params(("id" = i64, Path, description = "The import"), DemandParams),
    responses(
        (status = 200, description = "One row per group; `suppressed` counts the groups of \
            fewer residents than `INSIKT_MIN_GROUP_SIZE` left out (CSV: the \
            `Insikt-Suppressed` header)", content(
            (Suppressed<Vec<DemandRowSchema>> = "application/json"),
            (String = "text/csv"),
        ),
        headers(("Insikt-Suppressed" = usize, description = "CSV only: groups left out"))),
        (status = 400, description = "Bad `id`, unknown parameter, or a parameter that \
            does not parse (`fields` names it)", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
    )
)]
async fn demand_json(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let (demand_query, format) = parse(&raw, &[Format::Json, Format::Csv])?;
    let (import_id, kept) = load(&params, &demand_query, &state).await?;
    if format == Format::Json {
        return Ok(suppressed::json(&kept.rows, kept.suppressed));
    }
    let csv = tokio::task::spawn_blocking(move || {
        let csv = to_csv(demand_query.keys(), &kept.rows);
        (csv, kept.suppressed)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let (body, left_out) = csv;
    let body = body.map_err(|e| ApiError::internal(&e))?;
    let mut response =
        warp::reply::with_header(body, CONTENT_TYPE, "text/csv; charset=utf-8").into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"import-{import_id}-demand.csv\""
    )) {
        response.headers_mut().insert(CONTENT_DISPOSITION, value);
    }
    suppressed::mark(&mut response, left_out);
    Ok(response)
}

/// RFC 4180 CSV of the rows: the keys, then `statements` and `residents`.
/// A text cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, a
/// tab or a carriage return first) is prefixed with `'`.
fn to_csv(keys: &[DemandKey], rows: &[DemandRow]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 48 + 64));
    let mut header: Vec<&str> = keys.iter().map(|k| k.name()).collect();
    header.extend(["statements", "residents"]);
    writer.write_record(&header)?;
    for row in rows {
        let mut record: Vec<String> = row
            .keys
            .iter()
            .map(|(_, value)| {
                if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                    format!("'{value}")
                } else {
                    value.clone()
                }
            })
            .collect();
        record.push(row.statements.to_string());
        record.push(row.residents.to_string());
        writer.write_record(&record)?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}

/// The same demand as a bar chart (one key) or a heat map (two), drawn off
/// the threads that serve requests; an axis shows its 40 largest values.
#[utoipa::path(
    get,
    path = "/imports/{id}/demand.svg",
    tag = "demand",
    params(("id" = i64, Path, description = "The import"), DemandParams),
    responses(
        (status = 200, description = "An SVG chart; groups of fewer residents than \
            `INSIKT_MIN_GROUP_SIZE` are left out (counted in `Insikt-Suppressed`)",
            content_type = "image/svg+xml", body = String,
            headers(("Insikt-Suppressed" = usize, description = "Groups left out"))),
        (status = 400, description = "As for `/demand`, or `by` names more than two keys", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
    )
)]
async fn demand_svg(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let (demand_query, _) = parse(&raw, &[Format::Svg])?;
    let demand_query = demand_query.for_chart()?;
    let (_, kept) = load(&params, &demand_query, &state).await?;
    let keys: Vec<&str> = demand_query.keys().iter().map(|k| k.name()).collect();
    let mut title = format!("Demand by {}", keys.join(" and "));
    if kept.suppressed > 0 {
        title.push_str(&format!(" ({} small groups left out)", kept.suppressed));
    }
    let left_out = kept.suppressed;
    let svg =
        tokio::task::spawn_blocking(move || chart::render(&title, demand_query.keys(), &kept.rows))
            .await
            .map_err(|e| ApiError::internal(&e))?
            .map_err(|e| ApiError::internal(&e))?;
    let mut response =
        warp::reply::with_header(svg, CONTENT_TYPE, "image/svg+xml; charset=utf-8").into_response();
    suppressed::mark(&mut response, left_out);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_neutralises_formulas_and_quotes_what_needs_it() {
        let rows = vec![
            DemandRow {
                keys: vec![
                    (DemandKey::Town, "=HYPERLINK(\"x\")".into()),
                    (DemandKey::Course, "a,b".into()),
                ],
                statements: 3,
                residents: 2,
            },
            DemandRow {
                keys: vec![
                    (DemandKey::Town, "Madrid".into()),
                    (DemandKey::Course, "-1".into()),
                ],
                statements: 1,
                residents: 1,
            },
        ];
        let csv = String::from_utf8(to_csv(&[DemandKey::Town, DemandKey::Course], &rows).unwrap())
            .unwrap();
        assert_eq!(
            csv,
            "town,course,statements,residents\n\"'=HYPERLINK(\"\"x\"\")\",\"a,b\",3,2\nMadrid,'-1,1,1\n"
        );
    }

    #[test]
    fn formats_are_checked_per_route() {
        assert_eq!(
            parse("by=town", &[Format::Json, Format::Csv]).unwrap().1,
            Format::Json
        );
        assert_eq!(
            parse("by=town&format=csv", &[Format::Json, Format::Csv])
                .unwrap()
                .1,
            Format::Csv
        );
        for bad in ["by=town&format=svg", "by=town&format=xml"] {
            let error = parse(bad, &[Format::Json, Format::Csv]).unwrap_err();
            assert!(error.fields.unwrap().contains_key("format"), "{bad}");
        }
        assert!(parse("by=town&format=csv", &[Format::Svg]).is_err());
        assert!(parse("by=town&format=svg", &[Format::Svg]).is_ok());
    }
}
