//! The opportunities' parameters: the /rates and /emerging queries they
//! reuse (keys course, town, age_group, channel), and their own limits.

use chrono::{DateTime, Utc};

use super::super::params::{EmergingQuery, ParamError, RatesQuery, Raw, Sort};
use crate::privacy::MinGroupSize;

/// Rows when `limit` is not given, and the most it may ask.
pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;
/// Cells of fewer residents are not ranked: below this even a Wilson bound
/// moves too much with one resident more or less.
pub const DEFAULT_MIN_POPULATION: u64 = 20;
const MAX_MIN_POPULATION: u64 = 10_000_000;

/// The four keys of a cell, as `by`.
const KEYS: &str = "town,age_group,channel,course";

/// The parameters as they came (the route refuses others).
#[derive(Debug, Clone, Default)]
pub struct OpportunitiesRaw {
    pub limit: Option<String>,
    pub window: Option<String>,
    pub as_of: Option<String>,
    pub min_score: Option<String>,
    pub min_population: Option<String>,
    pub min_opportunity: Option<String>,
    pub course: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpportunitiesQuery {
    /// /rates with by=town,age_group,channel,course, every row.
    pub rates: RatesQuery,
    /// /emerging with the same keys over `window` ending `as_of`, every row.
    pub emerging: EmergingQuery,
    pub limit: usize,
    pub min_population: u64,
    /// Cells scored below this are left out.
    pub min_opportunity: Option<f64>,
}

impl OpportunitiesQuery {
    pub fn parse(raw: &OpportunitiesRaw, now: DateTime<Utc>) -> Result<Self, ParamError> {
        let shared = Raw {
            by: Some(KEYS.to_owned()),
            course: raw.course.clone(),
            min_score: raw.min_score.clone(),
            as_of: raw.as_of.clone(),
            window: raw.window.clone(),
            ..Raw::default()
        };
        let mut rates = RatesQuery::parse(&shared, now)?;
        let mut emerging = EmergingQuery::parse(&shared, now)?;
        // Every cell is ranked; `limit` applies to the ranking.
        rates.limit = usize::MAX;
        rates.sort = Sort::Lower;
        emerging.limit = usize::MAX;
        let limit = match raw.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or(ParamError::Limit(MAX_LIMIT))?,
        };
        let min_population = match raw.min_population.as_deref() {
            None => DEFAULT_MIN_POPULATION,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_MIN_POPULATION).contains(n))
                .ok_or(ParamError::MinPopulation(MAX_MIN_POPULATION))?,
        };
        let min_opportunity = raw
            .min_opportunity
            .as_deref()
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite())
                    .ok_or(ParamError::MinOpportunity)
            })
            .transpose()?;
        Ok(Self {
            rates,
            emerging,
            limit,
            min_population,
            min_opportunity,
        })
    }

    /// The deployment's small-group privacy threshold, for both answers.
    pub fn with_min_group(mut self, min_group: MinGroupSize) -> Self {
        self.rates.common.min_group = min_group;
        self.emerging.common.min_group = min_group;
        self
    }

    pub fn as_of(&self) -> DateTime<Utc> {
        self.emerging.common.as_of
    }

    pub fn window(&self) -> &str {
        &self.emerging.window_text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        super::super::super::params::time("2026-12-07T10:00:00Z", "as_of").unwrap()
    }

    fn refused(raw: OpportunitiesRaw) -> &'static str {
        OpportunitiesQuery::parse(&raw, now())
            .unwrap_err()
            .parameter()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let q = OpportunitiesQuery::parse(&OpportunitiesRaw::default(), now()).unwrap();
        assert_eq!((q.limit, q.min_population), (10, 20));
        assert_eq!(q.window(), "28d");
        assert_eq!(q.as_of(), now());
        assert_eq!(q.rates.common.keys, q.emerging.common.keys);
        assert_eq!(q.rates.common.keys.len(), 4);
        assert_eq!(q.min_opportunity, None);
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let with = |f: fn(&mut OpportunitiesRaw)| {
            let mut raw = OpportunitiesRaw::default();
            f(&mut raw);
            refused(raw)
        };
        assert_eq!(with(|r| r.limit = Some("101".into())), "limit");
        assert_eq!(with(|r| r.limit = Some("0".into())), "limit");
        assert_eq!(with(|r| r.window = Some("4w".into())), "window");
        assert_eq!(with(|r| r.as_of = Some("soon".into())), "as_of");
        assert_eq!(with(|r| r.min_score = Some("high".into())), "min_score");
        assert_eq!(
            with(|r| r.min_population = Some("0".into())),
            "min_population"
        );
        assert_eq!(
            with(|r| r.min_population = Some("-3".into())),
            "min_population"
        );
        assert_eq!(
            with(|r| r.min_opportunity = Some("inf".into())),
            "min_opportunity"
        );
        assert_eq!(with(|r| r.course = Some(String::new())), "course");
    }

    proptest! {
        #[test]
        fn no_input_panics(limit in ".{0,8}", window in ".{0,8}", population in ".{0,8}", opportunity in ".{0,8}") {
            let raw = OpportunitiesRaw {
                limit: Some(limit),
                window: Some(window),
                min_population: Some(population),
                min_opportunity: Some(opportunity),
                ..OpportunitiesRaw::default()
            };
            let _ = OpportunitiesQuery::parse(&raw, now());
        }
    }
}
