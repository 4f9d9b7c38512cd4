//! The OpenAPI mirror of the insights' answers: the rows serialise with just
//! the keys named in `by`, so the real rows are dynamic maps these schema-only
//! types describe for the document.

use crate::insights::rates::Totals;

/// The keys a row carries: those named in `by`, and `new_course` with `course`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct KeysSchema {
    #[schema(nullable = false)]
    town: Option<String>,
    /// e.g. `25-34`.
    #[schema(nullable = false)]
    age_group: Option<String>,
    /// `female` or `male`.
    #[schema(nullable = false)]
    gender: Option<String>,
    /// The resident's channel (`unknown` when unset).
    #[schema(nullable = false)]
    channel: Option<String>,
    #[schema(nullable = false)]
    course: Option<String>,
    /// Present with `course`: not offered by the catalogue.
    #[schema(nullable = false)]
    new_course: Option<bool>,
}

/// One group of the rates.
#[derive(utoipa::ToSchema)]
#[schema(as = RateRow)]
#[allow(dead_code)]
pub(super) struct RateRowSchema {
    #[schema(nullable = false)]
    town: Option<String>,
    #[schema(nullable = false)]
    age_group: Option<String>,
    #[schema(nullable = false)]
    gender: Option<String>,
    #[schema(nullable = false)]
    channel: Option<String>,
    #[schema(nullable = false)]
    course: Option<String>,
    #[schema(nullable = false)]
    new_course: Option<bool>,
    /// Residents in the group.
    population: u64,
    /// Residents with at least one counted statement (for the course).
    askers: u64,
    statements: u64,
    /// askers / population.
    rate: Option<f64>,
    /// Wilson 95 % interval of the rate.
    rate_low: Option<f64>,
    rate_high: Option<f64>,
    /// Askers expected at the import's age-specific rates.
    expected: Option<f64>,
    /// askers / expected, with its exact Poisson (Garwood) 95 % interval.
    ratio: Option<f64>,
    ratio_low: Option<f64>,
    ratio_high: Option<f64>,
    /// Two-sided exact Poisson p.
    p: Option<f64>,
    /// Benjamini–Hochberg q over all the answer's groups.
    q: Option<f64>,
}

#[derive(utoipa::ToSchema)]
#[schema(as = Rates)]
#[allow(dead_code)]
pub(super) struct RatesBody {
    /// The keys, in their fixed order.
    by: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    as_of: String,
    /// Rows before `limit`.
    groups: u64,
    rows: Vec<RateRowSchema>,
    /// The whole import under the same filters.
    totals: Totals,
}

/// One group's series, aligned with `buckets`.
#[derive(utoipa::ToSchema)]
#[schema(as = TrendSeries)]
#[allow(dead_code)]
pub(super) struct SeriesSchema {
    #[schema(nullable = false)]
    town: Option<String>,
    #[schema(nullable = false)]
    age_group: Option<String>,
    #[schema(nullable = false)]
    gender: Option<String>,
    #[schema(nullable = false)]
    channel: Option<String>,
    #[schema(nullable = false)]
    course: Option<String>,
    #[schema(nullable = false)]
    new_course: Option<bool>,
    statements: Vec<u64>,
    /// Distinct askers per bucket.
    askers: Vec<u64>,
}

#[derive(utoipa::ToSchema)]
#[schema(as = Trend)]
#[allow(dead_code)]
pub(super) struct TrendBody {
    by: Vec<String>,
    /// `day`, `week` or `month`.
    interval: String,
    /// Each bucket's start (UTC).
    buckets: Vec<String>,
    /// Groups before `limit`.
    groups: u64,
    series: Vec<SeriesSchema>,
}

/// One tested group.
#[derive(utoipa::ToSchema)]
#[schema(as = EmergingRow)]
#[allow(dead_code)]
pub(super) struct EmergingRowSchema {
    #[schema(nullable = false)]
    town: Option<String>,
    #[schema(nullable = false)]
    age_group: Option<String>,
    #[schema(nullable = false)]
    gender: Option<String>,
    #[schema(nullable = false)]
    channel: Option<String>,
    #[schema(nullable = false)]
    course: Option<String>,
    #[schema(nullable = false)]
    new_course: Option<bool>,
    /// Distinct askers in the current window (x1).
    current: u64,
    /// Distinct askers in the previous window (x0).
    previous: u64,
    /// (x1/T1)/(x0/T0); `null` when previous is 0.
    ratio: Option<f64>,
    ratio_low: Option<f64>,
    ratio_high: Option<f64>,
    /// Nobody asked in the previous window.
    new: bool,
    /// One-sided exact binomial p.
    p: f64,
    /// Benjamini–Hochberg q over the tested groups.
    q: f64,
}

#[derive(utoipa::ToSchema)]
#[schema(as = Emerging)]
#[allow(dead_code)]
pub(super) struct EmergingBody {
    by: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    as_of: String,
    window: String,
    /// Askers in the current window, summed over all groups.
    #[schema(rename = "T1")]
    t1: u64,
    #[schema(rename = "T0")]
    t0: u64,
    /// Groups with an asker in either window.
    groups: u64,
    /// Groups with at least `min_count` askers now.
    tested: u64,
    rows: Vec<EmergingRowSchema>,
}
