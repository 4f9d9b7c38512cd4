//! `GET /imports/{id}/insights/opportunities`: the cells (course, town,
//! age group, channel) worth opening a course for, best first, each with
//! the facts of /rates and /emerging for the same keys, whether the course
//! is new, the town's nearest airport and a sentence saying why.
//!
//! The ranking (README, "What insikt tells you"): a cell of at least
//! `min_population` residents scores
//!
//! ```text
//! score = rate_low × ratio_low × 1.5^rising × 1.25^new_course
//! ```
//!
//! `rate_low` is the Wilson 95 % lower bound of askers/population (how many
//! of them ask, at least), `ratio_low` the Garwood lower bound of askers over
//! those expected at the import's rate for the course (how many times the
//! usual, at least). Both are lower bounds, so a handful of residents who
//! all asked cannot rank on luck; their product favours a cell that is both
//! keen and unusual. A cell is `rising` when /emerging finds its share of
//! the recent askers grew (growth_q < 0.05). Ties go by the cell's keys.
//! Pure: the figures come from `rates` and `emerging`, the airports from
//! the caller ([`Airports`]).

mod query;
mod why;

use std::collections::HashMap;
use std::future::Future;

use serde::Serialize;

pub use query::{OpportunitiesQuery, OpportunitiesRaw, DEFAULT_LIMIT, DEFAULT_MIN_POPULATION};

use super::emerging::{Emerging, EmergingRow};
use super::params::Key;
use super::rates::{RateRow, Rates};
use super::InsightsError;

/// /emerging's q below which a cell is rising.
pub const RISING_Q: f64 = 0.05;
/// The score's factor for a rising cell, and for a course not offered yet.
pub const RISING_BOOST: f64 = 1.5;
pub const NEW_COURSE_BOOST: f64 = 1.25;

/// A town's nearest live airport with an IATA code.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Airport {
    pub iata: String,
    pub name: String,
    pub distance_km: f64,
}

/// Where the opportunities find each town's nearest airport: `crate::places`
/// answers it from PostGIS (the insights know nothing of places).
pub trait Airports {
    /// The nearest airport of each of `towns` that is placed (others absent).
    fn nearest(
        &self,
        towns: Vec<String>,
    ) -> impl Future<Output = Result<HashMap<String, Airport>, InsightsError>> + Send;
}

/// One ranked cell (the fields in the answer's order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Opportunity {
    pub rank: usize,
    pub course: String,
    pub town: String,
    pub age_group: String,
    pub channel: String,
    pub score: f64,
    pub population: u64,
    pub askers: u64,
    pub statements: u64,
    pub rate: f64,
    pub rate_low: f64,
    pub rate_high: f64,
    pub expected: f64,
    pub ratio: f64,
    pub ratio_low: f64,
    pub ratio_high: f64,
    pub p: f64,
    pub q: f64,
    /// Distinct askers in the current window and the one before; `None`
    /// when /emerging did not test the cell (too few askers now).
    pub current: Option<u64>,
    pub previous: Option<u64>,
    pub growth: Option<f64>,
    pub growth_low: Option<f64>,
    pub growth_high: Option<f64>,
    pub growth_q: Option<f64>,
    pub rising: bool,
    pub new_course: bool,
    pub airport: Option<Airport>,
    pub why: String,
}

/// The answer: the best `limit` cells and how many were ranked.
#[derive(Debug, Clone, PartialEq)]
pub struct Opportunities {
    pub rows: Vec<Opportunity>,
    /// Cells ranked: with askers, at least `min_population` residents,
    /// not suppressed for privacy.
    pub cells: usize,
    /// Cells left out for privacy (`INSIKT_MIN_GROUP_SIZE`), as /rates says.
    pub suppressed: usize,
}

/// The score of a cell (see the module's documentation).
pub fn score(rate_low: f64, ratio_low: f64, rising: bool, new_course: bool) -> f64 {
    let mut score = rate_low * ratio_low;
    if rising {
        score *= RISING_BOOST;
    }
    if new_course {
        score *= NEW_COURSE_BOOST;
    }
    score
}

/// Whether /emerging's row says the cell is rising.
fn rising(row: &EmergingRow) -> bool {
    row.q < RISING_Q && (row.new || row.ratio.is_some_and(|r| r > 1.0))
}

/// The cell's keys, in the answer's order (course, town, age group, channel).
fn keys(values: &[(Key, String)]) -> Option<[String; 4]> {
    let get = |key: Key| {
        values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    };
    Some([
        get(Key::Course)?,
        get(Key::Town)?,
        get(Key::AgeGroup)?,
        get(Key::Channel)?,
    ])
}

/// A cell from its /rates row and, when tested, its /emerging row; `None`
/// when the rates lack a figure the score needs (no population).
fn cell(rate: &RateRow, growth: Option<&EmergingRow>) -> Option<Opportunity> {
    let [course, town, age_group, channel] = keys(&rate.label.values)?;
    let new_course = rate.label.new_course.unwrap_or(false);
    let rising = growth.is_some_and(rising);
    let (rate_low, ratio_low) = (rate.rate_low?, rate.ratio_low?);
    Some(Opportunity {
        rank: 0,
        course,
        town,
        age_group,
        channel,
        score: score(rate_low, ratio_low, rising, new_course),
        population: rate.population,
        askers: rate.askers,
        statements: rate.statements,
        rate: rate.rate?,
        rate_low,
        rate_high: rate.rate_high?,
        expected: rate.expected?,
        ratio: rate.ratio?,
        ratio_low,
        ratio_high: rate.ratio_high?,
        p: rate.p?,
        q: rate.q?,
        current: growth.map(|g| g.current),
        previous: growth.map(|g| g.previous),
        growth: growth.and_then(|g| g.ratio),
        growth_low: growth.and_then(|g| g.ratio_low),
        growth_high: growth.and_then(|g| g.ratio_high),
        growth_q: growth.map(|g| g.q),
        rising,
        new_course,
        airport: None,
        why: String::new(),
    })
}

/// Best first: by score, then by the cell's keys (so ties are stable).
fn order(a: &Opportunity, b: &Opportunity) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| a.course.cmp(&b.course))
        .then_with(|| a.town.cmp(&b.town))
        .then_with(|| a.age_group.cmp(&b.age_group))
        .then_with(|| a.channel.cmp(&b.channel))
}

/// Ranks `cells`: those of at least `min_population` residents and (when
/// given) a score of at least `min_opportunity`, best first, the first
/// `limit` kept and numbered; also how many were ranked.
pub fn rank(
    mut cells: Vec<Opportunity>,
    min_population: u64,
    min_opportunity: Option<f64>,
    limit: usize,
) -> (Vec<Opportunity>, usize) {
    cells.retain(|c| {
        c.population >= min_population && min_opportunity.is_none_or(|floor| c.score >= floor)
    });
    let ranked = cells.len();
    cells.sort_by(order);
    cells.truncate(limit);
    for (i, cell) in cells.iter_mut().enumerate() {
        cell.rank = i + 1;
    }
    (cells, ranked)
}

/// The ranked cells of the import from its /rates and /emerging answers
/// (computed with `query`'s keys), before airports and sentences.
pub fn from_answers(
    rates: Rates,
    emerging: &Emerging,
    query: &OpportunitiesQuery,
) -> Opportunities {
    let growth: HashMap<&[(Key, String)], &EmergingRow> = emerging
        .rows
        .iter()
        .map(|r| (r.label.values.as_slice(), r))
        .collect();
    let cells = rates
        .rows
        .iter()
        .filter_map(|r| cell(r, growth.get(r.label.values.as_slice()).copied()))
        .collect();
    let (rows, cells) = rank(
        cells,
        query.min_population,
        query.min_opportunity,
        query.limit,
    );
    Opportunities {
        rows,
        cells,
        suppressed: rates.suppressed,
    }
}

/// Adds each row's nearest airport and its sentence.
pub fn explain(answer: &mut Opportunities, airports: &HashMap<String, Airport>, window: &str) {
    for row in &mut answer.rows {
        row.airport = airports.get(&row.town).cloned();
        row.why = why::sentence(row, window);
    }
}

/// The distinct towns of the answer's rows, for the airports' lookup.
pub fn towns(answer: &Opportunities) -> Vec<String> {
    let mut towns: Vec<String> = answer.rows.iter().map(|r| r.town.clone()).collect();
    towns.sort();
    towns.dedup();
    towns
}

#[cfg(test)]
mod tests;
