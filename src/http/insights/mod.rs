//! Insights routes: rates, trend and emerging demand of an import, as JSON
//! or CSV (`format=csv`). Thin: parse, ask `crate::insights`, render.

use chrono::Utc;
use serde::{Deserialize, Serialize};
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
use crate::insights::rates::Totals;
mod opportunities;
mod schema;

pub(super) use opportunities::Api as OpportunitiesApi;

use crate::insights::{
    self, csv, EmergingQuery, InsightsError, ParamError, RatesQuery, Raw, TrendQuery,
};
use schema::{EmergingBody, EmergingRowSchema, RateRowSchema, RatesBody, SeriesSchema, TrendBody};

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let rates = route("/imports/{id}/insights/rates", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(rates)
        .map(respond);
    let trend = route("/imports/{id}/insights/trend", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(trend)
        .map(respond);
    let emerging = route("/imports/{id}/insights/emerging", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(emerging)
        .map(respond);
    rates
        .or(trend)
        .unify()
        .or(emerging)
        .unify()
        .or(opportunities::routes(state))
        .unify()
        .boxed()
}

/// Documents this file's routes; merged into the document by `openapi.rs`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(rates, trend, emerging),
    components(schemas(RatesBody, RateRowSchema, Totals, TrendBody, SeriesSchema, EmergingBody, EmergingRowSchema, Suppressed<RatesBody>, Suppressed<TrendBody>, Suppressed<EmergingBody>)),
    tags((name = "insights", description = "Demand rates against the population, trends and emerging demand"))
)]
pub(super) struct Api;

impl From<ParamError> for ApiError {
    fn from(error: ParamError) -> Self {
        ApiError::bad_request(error.to_string()).with_field(error.parameter(), error.to_string())
    }
}

impl From<InsightsError> for ApiError {
    fn from(error: InsightsError) -> Self {
        match error {
            InsightsError::Param(e) => e.into(),
            InsightsError::Db(e) => e.into(),
            InsightsError::Busy => ApiError::unavailable("busy", error.to_string())
                .with_header(warp::http::header::RETRY_AFTER, "1"),
            other => ApiError::internal(&other),
        }
    }
}

/// What all three routes take; each refuses the parameters it does not.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RatesParams {
    /// Comma-separated grouping keys among `town`, `age_group`, `gender`,
    /// `channel`, `course`, each at most once (default `course`).
    #[param(example = "town,course")]
    by: Option<String>,
    /// Only statements for this course (1 to 256 characters).
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    course: Option<String>,
    /// Only statements scored at least this (a statement without a score then does not count).
    min_score: Option<String>,
    /// Only statements at or after this time (RFC 3339, or a date: its midnight UTC).
    from: Option<String>,
    /// Only statements before this time; after `from`.
    to: Option<String>,
    /// 1 to 20 strictly increasing ages bounding the age groups.
    #[param(default = "18,25,35,45,55,65")]
    age_bins: Option<String>,
    /// The day ages are taken on (default now, UTC).
    as_of: Option<String>,
    /// `lower` (by rate_low, default), `rate`, `ratio` or `askers`, largest first.
    sort: Option<String>,
    /// Rows to return, 1 to 10,000 (default 100); `groups` says how many there are.
    limit: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TrendParams {
    /// Comma-separated grouping keys among `town`, `age_group`, `gender`,
    /// `channel`, `course` (default `course`).
    #[param(example = "course")]
    by: Option<String>,
    /// `day`, `week` (default; weeks start on Monday) or `month`, in UTC.
    interval: Option<String>,
    /// Start of the range (default: the bucket of the first statement that counts).
    from: Option<String>,
    /// End of the range, exclusive (default: past the last statement that counts).
    to: Option<String>,
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    course: Option<String>,
    min_score: Option<String>,
    #[param(default = "18,25,35,45,55,65")]
    age_bins: Option<String>,
    as_of: Option<String>,
    /// Series to return, 1 to 1,000 (default 100), the most statements first.
    limit: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EmergingParams {
    /// Comma-separated grouping keys (default `course`).
    #[param(example = "course,town")]
    by: Option<String>,
    /// Each window's length: `28d` (default), `12h`…, at most `366d`.
    window: Option<String>,
    /// End of the current window (default now).
    as_of: Option<String>,
    /// Fewest askers in the current window for a group to be tested (default 5).
    min_count: Option<String>,
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    course: Option<String>,
    min_score: Option<String>,
    #[param(default = "18,25,35,45,55,65")]
    age_bins: Option<String>,
    /// Rows to return, 1 to 10,000 (default 100).
    limit: Option<String>,
    format: Option<String>,
}

/// Whether the answer is wanted as CSV.
fn csv_wanted(format: Option<&str>) -> Result<bool, ApiError> {
    match format.map(str::trim) {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ParamError::Format.into()),
    }
}

/// A CSV attachment named after the import and the route.
fn csv_reply(import_id: i64, route: &str, body: Vec<u8>) -> Response {
    let reply = warp::reply::with_header(body, CONTENT_TYPE, "text/csv; charset=utf-8");
    let name = format!("attachment; filename=\"import-{import_id}-{route}.csv\"");
    warp::reply::with_header(reply, CONTENT_DISPOSITION, name).into_response()
}

fn not_found(import_id: i64) -> ApiError {
    ApiError::not_found(format!("import {import_id} does not exist"))
}

#[derive(Serialize)]
struct RatesAnswer<'a> {
    by: Vec<&'static str>,
    as_of: chrono::DateTime<Utc>,
    groups: usize,
    rows: &'a [insights::RateRow],
    totals: &'a insights::Totals,
}

/// Per group: population, askers, rate with its Wilson interval, the
/// age-standardised ratio with its Garwood interval, exact Poisson p and
/// BH q (SPEC section 5). The best `limit` rows by `sort`.
#[utoipa::path(
    get,
    path = "/imports/{id}/insights/rates",
    tag = "insights",
    params(("id" = i64, Path, description = "The import"), RatesParams),
    responses(
        (status = 200, description = "The rates (with `format=csv`: the rows as CSV)", content(
            (Suppressed<RatesBody> = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter that does not parse; `fields` names it", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn rates(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let p: RatesParams = query(&raw)?;
    let import_id: i64 = params.get("id")?;
    let csv_out = csv_wanted(p.format.as_deref())?;
    let rates_query = RatesQuery::parse(
        &Raw {
            by: p.by,
            course: p.course,
            min_score: p.min_score,
            from: p.from,
            to: p.to,
            age_bins: p.age_bins,
            as_of: p.as_of,
            sort: p.sort,
            limit: p.limit,
            ..Raw::default()
        },
        Utc::now(),
    )?;
    let mut rates_query = rates_query;
    rates_query.common.min_group = state.config.min_group_size();
    let keys = rates_query.common.keys.clone();
    let as_of = rates_query.common.as_of;
    let answer = state
        .insights
        .rates(import_id, rates_query)
        .await?
        .ok_or_else(|| not_found(import_id))?;
    if csv_out {
        let mut response = csv_reply(import_id, "rates", csv::rates(&keys, &answer));
        suppressed::mark(&mut response, answer.suppressed);
        return Ok(response);
    }
    Ok(suppressed::json(
        &RatesAnswer {
            by: keys.iter().map(|k| k.name()).collect(),
            as_of,
            groups: answer.groups,
            rows: &answer.rows,
            totals: &answer.totals,
        },
        answer.suppressed,
    ))
}

#[derive(Serialize)]
struct TrendAnswer<'a> {
    by: Vec<&'static str>,
    interval: &'static str,
    buckets: &'a [chrono::DateTime<Utc>],
    groups: usize,
    series: &'a [insights::Series],
}

/// Per group, statements and distinct askers per UTC bucket, zero-filled;
/// the `limit` groups with the most statements.
#[utoipa::path(
    get,
    path = "/imports/{id}/insights/trend",
    tag = "insights",
    params(("id" = i64, Path, description = "The import"), TrendParams),
    responses(
        (status = 200, description = "The series (with `format=csv`: one row per group and bucket)",
            content((Suppressed<TrendBody> = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter that does not parse, or more than 400 buckets \
            (`fields.interval`)", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn trend(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let p: TrendParams = query(&raw)?;
    let import_id: i64 = params.get("id")?;
    let csv_out = csv_wanted(p.format.as_deref())?;
    let trend_query = TrendQuery::parse(
        &Raw {
            by: p.by,
            interval: p.interval,
            from: p.from,
            to: p.to,
            course: p.course,
            min_score: p.min_score,
            age_bins: p.age_bins,
            as_of: p.as_of,
            limit: p.limit,
            ..Raw::default()
        },
        Utc::now(),
    )?;
    let mut trend_query = trend_query;
    trend_query.common.min_group = state.config.min_group_size();
    let keys = trend_query.common.keys.clone();
    let answer = state
        .insights
        .trend(import_id, trend_query)
        .await?
        .ok_or_else(|| not_found(import_id))?;
    if csv_out {
        let mut response = csv_reply(import_id, "trend", csv::trend(&keys, &answer));
        suppressed::mark(&mut response, answer.suppressed);
        return Ok(response);
    }
    Ok(suppressed::json(
        &TrendAnswer {
            by: keys.iter().map(|k| k.name()).collect(),
            interval: answer.interval.name(),
            buckets: &answer.buckets,
            groups: answer.groups,
            series: &answer.series,
        },
        answer.suppressed,
    ))
}

#[derive(Serialize)]
struct EmergingAnswer<'a> {
    by: Vec<&'static str>,
    as_of: chrono::DateTime<Utc>,
    window: &'a str,
    #[serde(rename = "T1")]
    t1: u64,
    #[serde(rename = "T0")]
    t0: u64,
    groups: usize,
    tested: usize,
    rows: &'a [insights::EmergingRow],
}

/// Groups whose share of distinct askers rose from the previous window to
/// the current one, most significant first (one-sided conditional binomial
/// test, Clopper–Pearson ratio interval, BH q over the tested groups).
#[utoipa::path(
    get,
    path = "/imports/{id}/insights/emerging",
    tag = "insights",
    params(("id" = i64, Path, description = "The import"), EmergingParams),
    responses(
        (status = 200, description = "The tested groups (with `format=csv`: the rows as CSV)",
            content((Suppressed<EmergingBody> = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter that does not parse; `fields` names it", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn emerging(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let p: EmergingParams = query(&raw)?;
    let import_id: i64 = params.get("id")?;
    let csv_out = csv_wanted(p.format.as_deref())?;
    let emerging_query = EmergingQuery::parse(
        &Raw {
            by: p.by,
            window: p.window,
            as_of: p.as_of,
            min_count: p.min_count,
            course: p.course,
            min_score: p.min_score,
            age_bins: p.age_bins,
            limit: p.limit,
            ..Raw::default()
        },
        Utc::now(),
    )?;
    let mut emerging_query = emerging_query;
    emerging_query.common.min_group = state.config.min_group_size();
    let keys = emerging_query.common.keys.clone();
    let as_of = emerging_query.common.as_of;
    let window = emerging_query.window_text.clone();
    let answer = state
        .insights
        .emerging(import_id, emerging_query)
        .await?
        .ok_or_else(|| not_found(import_id))?;
    if csv_out {
        let mut response = csv_reply(import_id, "emerging", csv::emerging(&keys, &answer));
        suppressed::mark(&mut response, answer.suppressed);
        return Ok(response);
    }
    Ok(suppressed::json(
        &EmergingAnswer {
            by: keys.iter().map(|k| k.name()).collect(),
            as_of,
            window: &window,
            t1: answer.t1,
            t0: answer.t0,
            groups: answer.groups,
            tested: answer.tested,
            rows: &answer.rows,
        },
        answer.suppressed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_json_or_csv() {
        assert!(csv_wanted(Some("csv")).unwrap());
        assert!(!csv_wanted(None).unwrap());
        assert_eq!(
            csv_wanted(Some("xml")).unwrap_err().fields.unwrap()["format"],
            ParamError::Format.to_string()
        );
    }
}
