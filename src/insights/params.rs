//! The insights' parameters, parsed and checked: each failure names its
//! parameter, and every count an answer can reach is capped here.

use crate::privacy::MinGroupSize;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use super::segment::micros;
use crate::demand::{text_filter, AgeBins, DemandParamError};

/// Most rows `limit` may ask of rates and emerging.
pub const MAX_ROWS: usize = 10_000;
/// Rows when `limit` is not given.
pub const DEFAULT_ROWS: usize = 100;
/// Most groups (series) `limit` may ask of a trend.
pub const MAX_SERIES: usize = 1_000;
/// Most buckets of a trend.
pub const MAX_BUCKETS: usize = 400;
/// The longest emerging window: a year (a leap one).
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 86_400);
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(28 * 86_400);
pub const DEFAULT_MIN_COUNT: u64 = 5;
const MAX_MIN_COUNT: u64 = 1_000_000;

/// A grouping key of the insights, in its fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Town,
    AgeGroup,
    Gender,
    Channel,
    Course,
}

impl Key {
    pub const ALL: [Key; 5] = [
        Self::Town,
        Self::AgeGroup,
        Self::Gender,
        Self::Channel,
        Self::Course,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Town => "town",
            Self::AgeGroup => "age_group",
            Self::Gender => "gender",
            Self::Channel => "channel",
            Self::Course => "course",
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a parameter does not parse; each names its parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown key {0:?} in by; allowed: town, age_group, gender, channel, course")]
    UnknownKey(String),
    #[error("key {0} is given twice in by")]
    DuplicateKey(Key),
    #[error("{0}")]
    Shared(#[from] DemandParamError),
    #[error("min_score must be a finite number, e.g. 0.5")]
    MinScore,
    #[error("{0} must be an RFC 3339 time (2026-11-28T12:00:00Z) or a date (2026-11-28)")]
    Time(&'static str),
    #[error("from must be before to")]
    Range,
    #[error("limit must be a whole number from 1 to {0}")]
    Limit(usize),
    #[error("sort must be one of lower, rate, ratio, askers")]
    Sort,
    #[error("interval must be day, week or month")]
    Interval,
    #[error("from..to makes {0} buckets of this interval; at most {MAX_BUCKETS}: choose a longer interval or a shorter range")]
    Buckets(u64),
    #[error("window must be a duration like 28d or 12h, longer than 0 and at most 366d: {0}")]
    Window(String),
    #[error("min_count must be a whole number from 1 to {MAX_MIN_COUNT}")]
    MinCount,
    #[error("format must be json or csv")]
    Format,
    #[error("min_population must be a whole number from 1 to {0}")]
    MinPopulation(u64),
    #[error("min_opportunity must be a finite number, e.g. 0.2")]
    MinOpportunity,
}

impl ParamError {
    /// The query parameter at fault.
    pub fn parameter(&self) -> &'static str {
        match self {
            Self::UnknownKey(_) | Self::DuplicateKey(_) => "by",
            Self::Shared(e) => e.parameter(),
            Self::MinScore => "min_score",
            Self::Time(name) => name,
            Self::Range => "from",
            Self::Limit(_) => "limit",
            Self::Sort => "sort",
            Self::Interval | Self::Buckets(_) => "interval",
            Self::Window(_) => "window",
            Self::MinCount => "min_count",
            Self::Format => "format",
            Self::MinPopulation(_) => "min_population",
            Self::MinOpportunity => "min_opportunity",
        }
    }
}

/// The parameters as they came, one string each (the route refuses others).
#[derive(Debug, Clone, Default)]
pub struct Raw {
    pub by: Option<String>,
    pub course: Option<String>,
    pub min_score: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub age_bins: Option<String>,
    pub as_of: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<String>,
    pub interval: Option<String>,
    pub window: Option<String>,
    pub min_count: Option<String>,
}

/// Which statements count (SPEC section 5, "Terms").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub course: Option<String>,
    pub min_score: Option<f64>,
    /// Microseconds since 1970 UTC, inclusive.
    pub from: Option<i64>,
    /// Microseconds since 1970 UTC, exclusive.
    pub to: Option<i64>,
}

/// What every route shares: keys, filters, bins and the day ages are taken on.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub keys: Vec<Key>,
    pub filters: Filters,
    pub age_bins: AgeBins,
    pub as_of: DateTime<Utc>,
    /// Groups of fewer residents are left out of the answer (and counted):
    /// the deployment's `INSIKT_MIN_GROUP_SIZE`, not a request parameter.
    pub min_group: MinGroupSize,
}

impl Common {
    pub fn has(&self, key: Key) -> bool {
        self.keys.contains(&key)
    }

    /// The date ages are taken on (UTC).
    pub fn age_day(&self) -> NaiveDate {
        self.as_of.date_naive()
    }
}

/// How rates are ordered, largest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// By `rate_low`: small groups cannot top the list on luck.
    Lower,
    Rate,
    Ratio,
    Askers,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RatesQuery {
    pub common: Common,
    pub sort: Sort,
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrendQuery {
    pub common: Common,
    pub interval: Interval,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmergingQuery {
    pub common: Common,
    pub window: Duration,
    /// As it was written (`28d`), for the answer.
    pub window_text: String,
    pub min_count: u64,
    pub limit: usize,
}

/// The keys of `by` in their fixed order; `course` when absent.
pub fn keys(by: Option<&str>) -> Result<Vec<Key>, ParamError> {
    let mut keys = Vec::new();
    for name in by.unwrap_or("course").split(',').map(str::trim) {
        if name.is_empty() {
            continue;
        }
        let key = Key::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| ParamError::UnknownKey(name.chars().take(64).collect()))?;
        if keys.contains(&key) {
            return Err(ParamError::DuplicateKey(key));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(ParamError::Shared(DemandParamError::EmptyBy));
    }
    keys.sort_unstable();
    Ok(keys)
}

/// An RFC 3339 time, or a date meaning its midnight UTC.
pub fn time(raw: &str, name: &'static str) -> Result<DateTime<Utc>, ParamError> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or(ParamError::Time(name))
}

fn limit(raw: Option<&str>, most: usize) -> Result<usize, ParamError> {
    match raw {
        None => Ok(DEFAULT_ROWS.min(most)),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=most).contains(n))
            .ok_or(ParamError::Limit(most)),
    }
}

fn common(raw: &Raw, now: DateTime<Utc>, with_range: bool) -> Result<Common, ParamError> {
    let keys = keys(raw.by.as_deref())?;
    let min_score = match raw.min_score.as_deref() {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .ok_or(ParamError::MinScore)?,
        ),
    };
    let (from, to) = if with_range {
        let from = raw.from.as_deref().map(|v| time(v, "from")).transpose()?;
        let to = raw.to.as_deref().map(|v| time(v, "to")).transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                return Err(ParamError::Range);
            }
        }
        (from.map(micros), to.map(micros))
    } else {
        (None, None)
    };
    Ok(Common {
        keys,
        filters: Filters {
            course: text_filter(raw.course.as_deref(), "course")?,
            min_score,
            from,
            to,
        },
        age_bins: raw
            .age_bins
            .as_deref()
            .map(AgeBins::parse)
            .transpose()?
            .unwrap_or_default(),
        as_of: raw
            .as_of
            .as_deref()
            .map(|v| time(v, "as_of"))
            .transpose()?
            .unwrap_or(now),
        min_group: MinGroupSize::OFF,
    })
}

impl RatesQuery {
    pub fn parse(raw: &Raw, now: DateTime<Utc>) -> Result<Self, ParamError> {
        let sort = match raw.sort.as_deref().map(str::trim) {
            None | Some("lower") => Sort::Lower,
            Some("rate") => Sort::Rate,
            Some("ratio") => Sort::Ratio,
            Some("askers") => Sort::Askers,
            Some(_) => return Err(ParamError::Sort),
        };
        Ok(Self {
            common: common(raw, now, true)?,
            sort,
            limit: limit(raw.limit.as_deref(), MAX_ROWS)?,
        })
    }
}

impl TrendQuery {
    pub fn parse(raw: &Raw, now: DateTime<Utc>) -> Result<Self, ParamError> {
        let interval = match raw.interval.as_deref().map(str::trim) {
            None | Some("week") => Interval::Week,
            Some("day") => Interval::Day,
            Some("month") => Interval::Month,
            Some(_) => return Err(ParamError::Interval),
        };
        let common = common(raw, now, true)?;
        // Checked here when both ends are given; from the data otherwise.
        if let (Some(from), Some(to)) = (common.filters.from, common.filters.to) {
            super::trend::Buckets::new(interval, from, to)?;
        }
        Ok(Self {
            common,
            interval,
            limit: limit(raw.limit.as_deref(), MAX_SERIES)?,
        })
    }
}

impl EmergingQuery {
    pub fn parse(raw: &Raw, now: DateTime<Utc>) -> Result<Self, ParamError> {
        let window_text = raw.window.as_deref().unwrap_or("28d").trim().to_owned();
        let window = crate::config::parse_duration(&window_text).map_err(ParamError::Window)?;
        if window.is_zero() || window > MAX_WINDOW {
            return Err(ParamError::Window(format!(
                "{window_text:?} is out of range"
            )));
        }
        let min_count = match raw.min_count.as_deref() {
            None => DEFAULT_MIN_COUNT,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_MIN_COUNT).contains(n))
                .ok_or(ParamError::MinCount)?,
        };
        Ok(Self {
            common: common(raw, now, false)?,
            window,
            window_text,
            min_count,
            limit: limit(raw.limit.as_deref(), MAX_ROWS)?,
        })
    }

    /// The current window `[as_of − window, as_of)` and the previous one
    /// before it, in microseconds since 1970 UTC.
    pub fn windows(&self) -> ((i64, i64), (i64, i64)) {
        let end = micros(self.common.as_of);
        let width = i64::try_from(self.window.as_micros()).unwrap_or(i64::MAX);
        let start = end.saturating_sub(width);
        ((start, end), (start.saturating_sub(width), start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        time("2026-12-04T10:00:00Z", "as_of").unwrap()
    }

    fn raw(pairs: &[(&str, &str)]) -> Raw {
        let mut raw = Raw::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "by" => raw.by = v,
                "course" => raw.course = v,
                "min_score" => raw.min_score = v,
                "from" => raw.from = v,
                "to" => raw.to = v,
                "age_bins" => raw.age_bins = v,
                "as_of" => raw.as_of = v,
                "sort" => raw.sort = v,
                "limit" => raw.limit = v,
                "interval" => raw.interval = v,
                "window" => raw.window = v,
                "min_count" => raw.min_count = v,
                other => panic!("{other}"),
            }
        }
        raw
    }

    #[test]
    fn keys_come_in_their_fixed_order_and_default_to_course() {
        assert_eq!(
            keys(Some("course,gender,town")).unwrap(),
            [Key::Town, Key::Gender, Key::Course]
        );
        assert_eq!(keys(None).unwrap(), [Key::Course]);
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let rates = |pairs: &[(&str, &str)]| {
            RatesQuery::parse(&raw(pairs), now())
                .unwrap_err()
                .parameter()
        };
        assert_eq!(rates(&[("by", "town,planet")]), "by");
        assert_eq!(rates(&[("by", "town,town")]), "by");
        assert_eq!(rates(&[("by", ",")]), "by");
        assert_eq!(rates(&[("min_score", "high")]), "min_score");
        assert_eq!(rates(&[("min_score", "NaN")]), "min_score");
        assert_eq!(rates(&[("from", "yesterday")]), "from");
        assert_eq!(
            rates(&[("from", "2026-02-01"), ("to", "2026-01-01")]),
            "from"
        );
        assert_eq!(
            rates(&[("from", "2026-01-01"), ("to", "2026-01-01")]),
            "from"
        );
        assert_eq!(rates(&[("limit", "0")]), "limit");
        assert_eq!(rates(&[("limit", "10001")]), "limit");
        assert_eq!(rates(&[("limit", "-1")]), "limit");
        assert_eq!(rates(&[("sort", "best")]), "sort");
        assert_eq!(rates(&[("age_bins", "30,20")]), "age_bins");
        assert_eq!(rates(&[("course", "")]), "course");
        assert_eq!(rates(&[("as_of", "soon")]), "as_of");
        let trend = |pairs: &[(&str, &str)]| {
            TrendQuery::parse(&raw(pairs), now())
                .unwrap_err()
                .parameter()
        };
        assert_eq!(trend(&[("interval", "year")]), "interval");
        assert_eq!(
            trend(&[
                ("interval", "day"),
                ("from", "2025-01-01"),
                ("to", "2026-03-01")
            ]),
            "interval"
        );
        assert_eq!(trend(&[("limit", "1001")]), "limit");
        let emerging = |pairs: &[(&str, &str)]| {
            EmergingQuery::parse(&raw(pairs), now())
                .unwrap_err()
                .parameter()
        };
        assert_eq!(emerging(&[("window", "367d")]), "window");
        assert_eq!(emerging(&[("window", "0d")]), "window");
        assert_eq!(emerging(&[("window", "4w")]), "window");
        assert_eq!(emerging(&[("min_count", "0")]), "min_count");
        assert_eq!(emerging(&[("min_count", "x")]), "min_count");
    }

    #[test]
    fn good_parameters_parse() {
        let q = RatesQuery::parse(
            &raw(&[
                ("by", "town,course"),
                ("min_score", "0.5"),
                ("from", "2026-01-01"),
                ("to", "2026-02-01T00:00:00+01:00"),
                ("sort", "ratio"),
                ("limit", "5"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(q.common.filters.min_score, Some(0.5));
        assert_eq!(q.common.filters.from, Some(1_767_225_600_000_000));
        assert_eq!(q.common.filters.to, Some(1_769_900_400_000_000));
        assert_eq!((q.sort, q.limit), (Sort::Ratio, 5));
        assert_eq!(q.common.as_of, now());
        let q = EmergingQuery::parse(&raw(&[("window", "12h"), ("as_of", "2026-12-01")]), now())
            .unwrap();
        let hour = 3_600_000_000;
        let end = 1_796_083_200_000_000;
        assert_eq!(
            q.windows(),
            ((end - 12 * hour, end), (end - 24 * hour, end - 12 * hour))
        );
        assert_eq!(q.min_count, 5);
        assert_eq!(
            TrendQuery::parse(&raw(&[]), now()).unwrap().interval,
            Interval::Week
        );
    }

    proptest! {
        #[test]
        fn no_input_panics(by in ".{0,30}", score in ".{0,12}", from in ".{0,30}", window in ".{0,10}", limit in ".{0,8}") {
            let r = raw(&[("by", &by), ("min_score", &score), ("from", &from), ("window", &window), ("limit", &limit)]);
            let _ = RatesQuery::parse(&r, now());
            let _ = TrendQuery::parse(&r, now());
            let _ = EmergingQuery::parse(&r, now());
        }
    }
}
