//! `GET /imports/{id}/insights/opportunities`: the cells worth opening a
//! course for, ranked, as JSON or CSV. Thin: parse, ask
//! `Insights::opportunities` (airports from `crate::places`), render.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use super::super::error::{respond, ApiError};
use super::super::extract::{query, raw_query};
use super::super::routes::{route, PathParams};
use super::super::schema::ErrorBody;
use super::super::suppressed::{self, Suppressed};
use super::super::{with_state, State};
use super::{csv_reply, csv_wanted, not_found};
use crate::insights::opportunities::Airport;
use crate::insights::{csv, OpportunitiesQuery, OpportunitiesRaw, Opportunity};
use crate::places::PlacedAirports;

pub(super) fn routes(state: &State) -> BoxedFilter<(Response,)> {
    route("/imports/{id}/insights/opportunities", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(opportunities)
        .map(respond)
        .boxed()
}

/// Documents this file's route; merged into the document by `openapi.rs`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(opportunities),
    components(schemas(Suppressed<OpportunitiesBody>, OpportunitiesBody, OpportunitySchema, Airport)),
    tags((name = "insights", description = "Demand rates against the population, trends and emerging demand"))
)]
pub(in crate::http) struct Api;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct OpportunitiesParams {
    /// Rows to return, 1 to 100 (default 10); `cells` says how many were ranked.
    limit: Option<String>,
    /// The emerging window's length: `28d` (default), `12h`…, at most `366d`.
    window: Option<String>,
    /// End of the emerging window, and the day ages are taken on (default now).
    as_of: Option<String>,
    /// Only statements scored at least this (as on every insights route).
    min_score: Option<String>,
    /// Fewest residents of a ranked cell, 1 to 10,000,000 (default 20).
    #[param(default = 20)]
    min_population: Option<String>,
    /// Leave out cells whose `score` is below this.
    min_opportunity: Option<String>,
    /// Only this course (1 to 256 characters).
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    course: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

#[derive(Serialize)]
struct OpportunitiesAnswer<'a> {
    import_id: i64,
    as_of: chrono::DateTime<Utc>,
    window: &'a str,
    min_population: u64,
    cells: usize,
    rows: &'a [Opportunity],
}

/// The cells (course, town, age group, channel) worth opening a course for,
/// best first: `score` = rate_low × ratio_low × 1.5 if rising × 1.25 if the
/// course is new, over cells of at least `min_population` residents; each
/// with the facts of /rates and /emerging for the same keys, the town's
/// nearest airport and a sentence saying why.
#[utoipa::path(
    get,
    path = "/imports/{id}/insights/opportunities",
    tag = "insights",
    params(("id" = i64, Path, description = "The import"), OpportunitiesParams),
    responses(
        (status = 200, description = "The ranked cells (with `format=csv`: the rows as CSV, \
            the airport in three columns)",
            content((Suppressed<OpportunitiesBody> = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter that does not parse; `fields` names it", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn opportunities(
    params: PathParams,
    raw: String,
    state: State,
) -> Result<Response, ApiError> {
    let p: OpportunitiesParams = query(&raw)?;
    let import_id: i64 = params.get("id")?;
    let csv_out = csv_wanted(p.format.as_deref())?;
    let wanted = OpportunitiesQuery::parse(
        &OpportunitiesRaw {
            limit: p.limit,
            window: p.window,
            as_of: p.as_of,
            min_score: p.min_score,
            min_population: p.min_population,
            min_opportunity: p.min_opportunity,
            course: p.course,
        },
        Utc::now(),
    )?
    .with_min_group(state.config.min_group_size());
    let (as_of, window, min_population) = (
        wanted.as_of(),
        wanted.window().to_owned(),
        wanted.min_population,
    );
    let answer = state
        .insights
        .opportunities(import_id, wanted, &PlacedAirports(&state.pool))
        .await?
        .ok_or_else(|| not_found(import_id))?;
    if csv_out {
        let mut response = csv_reply(import_id, "opportunities", csv::opportunities(&answer));
        suppressed::mark(&mut response, answer.suppressed);
        return Ok(response);
    }
    Ok(suppressed::json(
        &OpportunitiesAnswer {
            import_id,
            as_of,
            window: &window,
            min_population,
            cells: answer.cells,
            rows: &answer.rows,
        },
        answer.suppressed,
    ))
}

/// One ranked cell (see `crate::insights::opportunities`).
#[derive(utoipa::ToSchema)]
#[schema(as = Opportunity)]
#[allow(dead_code)]
struct OpportunitySchema {
    /// 1 for the best.
    rank: u64,
    course: String,
    town: String,
    age_group: String,
    /// The residents' channel (`unknown` when unset).
    channel: String,
    /// rate_low × ratio_low, × 1.5 when rising, × 1.25 for a new course.
    score: f64,
    population: u64,
    askers: u64,
    statements: u64,
    /// askers / population, with its Wilson 95 % interval (as /rates).
    rate: f64,
    rate_low: f64,
    rate_high: f64,
    /// Askers expected at the import's rate for the course (as /rates with age_group a key).
    expected: f64,
    /// askers / expected with its Garwood 95 % interval, exact Poisson p, BH q (as /rates).
    ratio: f64,
    ratio_low: f64,
    ratio_high: f64,
    p: f64,
    q: f64,
    /// Distinct askers in [as_of − window, as_of) and the window before, as
    /// /emerging; `null` when it did not test the cell (fewer than 5 now).
    current: Option<u64>,
    previous: Option<u64>,
    /// /emerging's share ratio, its interval and q; `null` when not tested
    /// (and `growth` when nobody asked before).
    growth: Option<f64>,
    growth_low: Option<f64>,
    growth_high: Option<f64>,
    growth_q: Option<f64>,
    /// growth_q < 0.05 and growing (or new in the window).
    rising: bool,
    /// The course is not offered by the catalogue.
    new_course: bool,
    /// The town's nearest live airport; `null` when the town is not placed.
    airport: Option<Airport>,
    /// One plain sentence built from the facts above.
    why: String,
}

#[derive(utoipa::ToSchema)]
#[schema(as = Opportunities)]
#[allow(dead_code)]
struct OpportunitiesBody {
    import_id: i64,
    /// The emerging window's end.
    #[schema(value_type = String, format = DateTime)]
    as_of: String,
    window: String,
    /// The smallest population ranked.
    min_population: u64,
    /// Cells ranked (with askers, at least `min_population` residents, not suppressed).
    cells: u64,
    rows: Vec<OpportunitySchema>,
}
