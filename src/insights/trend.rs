//! `GET /imports/{id}/insights/trend`: per group, statements and distinct
//! askers per UTC bucket (day, week from Monday, or calendar month),
//! zero-filled, at most [`MAX_BUCKETS`](super::params::MAX_BUCKETS).

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::params::{Interval, Key, ParamError, TrendQuery, MAX_BUCKETS};
use super::scan::{scan, time_span, Cells, Filter, Groups, Label, Visit};
use super::snapshot::Snapshot;

const DAY: i64 = 86_400_000_000;

/// The buckets' edges in microseconds since 1970 UTC: bucket `i` is
/// `[edges[i], edges[i + 1])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    interval: Interval,
    edges: Vec<i64>,
}

fn date_of(micros: i64) -> Option<NaiveDate> {
    DateTime::<Utc>::from_timestamp_micros(micros).map(|t| t.date_naive())
}

fn micros_of(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_micros())
}

impl Buckets {
    /// The buckets covering `[from, to)`, the first starting at or before
    /// `from`; refused beyond [`MAX_BUCKETS`] (counted before any is made).
    pub fn new(interval: Interval, from: i64, to: i64) -> Result<Self, ParamError> {
        let (Some(first), Some(last)) = (date_of(from), date_of(to.saturating_sub(1))) else {
            return Err(ParamError::Buckets(u64::MAX));
        };
        let start = match interval {
            Interval::Day => first,
            Interval::Week => {
                first - chrono::Days::new(u64::from(first.weekday().num_days_from_monday()))
            }
            Interval::Month => first.with_day(1).unwrap_or(first),
        };
        let count: i64 = match interval {
            Interval::Day => (last - start).num_days() + 1,
            Interval::Week => (last - start).num_days() / 7 + 1,
            Interval::Month => {
                (i64::from(last.year()) - i64::from(start.year())) * 12 + i64::from(last.month())
                    - i64::from(start.month())
                    + 1
            }
        };
        if count < 1 || count > MAX_BUCKETS as i64 {
            return Err(ParamError::Buckets(count.max(0) as u64));
        }
        let mut edges = Vec::with_capacity(count as usize + 1);
        for i in 0..=count {
            let edge = match interval {
                Interval::Day => micros_of(start) + i * DAY,
                Interval::Week => micros_of(start) + i * 7 * DAY,
                Interval::Month => start
                    .checked_add_months(Months::new(i as u32))
                    .map_or(i64::MAX, micros_of),
            };
            edges.push(edge);
        }
        Ok(Self { interval, edges })
    }

    pub fn len(&self) -> usize {
        self.edges.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bucket of a time within them.
    #[inline]
    fn of(&self, ts: i64) -> usize {
        match self.interval {
            Interval::Day => ((ts - self.edges[0]) / DAY) as usize,
            Interval::Week => ((ts - self.edges[0]) / (7 * DAY)) as usize,
            Interval::Month => self.edges.partition_point(|e| *e <= ts) - 1,
        }
    }

    /// Each bucket's start.
    pub fn starts(&self) -> Vec<DateTime<Utc>> {
        self.edges[..self.len()]
            .iter()
            .filter_map(|e| DateTime::from_timestamp_micros(*e))
            .collect()
    }
}

/// One group's series, aligned with the buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: Label,
    pub statements: Vec<u64>,
    pub askers: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub interval: Interval,
    pub buckets: Vec<DateTime<Utc>>,
    /// The most active `limit` groups.
    pub series: Vec<Series>,
    /// How many groups had statements before `limit`.
    pub groups: usize,
    /// Groups left out for their small population (`Common::min_group`).
    pub suppressed: usize,
}

/// The largest per-resident scratch (course slots × buckets) of stamps;
/// past it a resident's keys are sorted instead.
const STAMPED: usize = 1 << 20;

struct Tally<'a> {
    groups: &'a Groups,
    buckets: &'a Buckets,
    by_course: bool,
    /// Per (slot, bucket): the resident that last counted there (+1), and
    /// that resident's statements there.
    stamp: Vec<u32>,
    count: Vec<u32>,
    touched: Vec<u32>,
    resident: u32,
    /// (group, slot) → series index + 1 (0: none yet).
    index: Cells<usize>,
    series: Vec<(u32, u32, Vec<u64>, Vec<u64>)>,
}

impl Visit for Tally<'_> {
    fn begin(&mut self, r: usize) {
        self.resident = r as u32 + 1;
    }

    #[inline]
    fn statement(&mut self, course: u32, ts: i64) {
        let slot = if self.by_course { course } else { 0 };
        let key = slot as usize * self.buckets.len() + self.buckets.of(ts);
        if self.stamp.is_empty() {
            self.touched.push(key as u32);
            return;
        }
        if self.stamp[key] != self.resident {
            self.stamp[key] = self.resident;
            self.count[key] = 0;
            self.touched.push(key as u32);
        }
        self.count[key] += 1;
    }

    fn end(&mut self, r: usize) {
        if self.touched.is_empty() {
            return;
        }
        let b = self.buckets.len();
        let g = self.groups.of[r];
        // Without stamps: the keys sorted, each run of one key is one cell.
        let cells: Vec<(u32, u32)> = if self.stamp.is_empty() {
            self.touched.sort_unstable();
            let mut cells: Vec<(u32, u32)> = Vec::new();
            for key in &self.touched {
                match cells.last_mut() {
                    Some((k, n)) if k == key => *n += 1,
                    _ => cells.push((*key, 1)),
                }
            }
            cells
        } else {
            self.touched
                .iter()
                .map(|k| (*k, self.count[*k as usize]))
                .collect()
        };
        for (key, n) in cells {
            let (slot, bucket) = (key as usize / b, key as usize % b);
            let entry = self.index.get(g, slot as u32);
            if *entry == 0 {
                self.series.push((g, slot as u32, vec![0; b], vec![0; b]));
                *entry = self.series.len();
            }
            let i = *entry - 1;
            self.series[i].2[bucket] += u64::from(n);
            self.series[i].3[bucket] += 1;
        }
        self.touched.clear();
    }
}

/// The trend of `snapshot` as `query` asks for it; refused when the
/// statements' span (without `from` or `to`) makes too many buckets.
pub fn trend(snapshot: &Snapshot, query: &TrendQuery) -> Result<Trend, ParamError> {
    let common = &query.common;
    let filter = Filter::new(common, snapshot);
    let (from, to) = match (common.filters.from, common.filters.to) {
        (Some(from), Some(to)) => (from, to),
        (from, to) => match time_span(snapshot, &filter) {
            None => {
                return Ok(Trend {
                    interval: query.interval,
                    buckets: Vec::new(),
                    series: Vec::new(),
                    groups: 0,
                    suppressed: 0,
                })
            }
            Some((first, last)) => (from.unwrap_or(first), to.unwrap_or(last.saturating_add(1))),
        },
    };
    if from >= to {
        return Ok(Trend {
            interval: query.interval,
            buckets: Vec::new(),
            series: Vec::new(),
            groups: 0,
            suppressed: 0,
        });
    }
    let buckets = Buckets::new(query.interval, from, to)?;
    let by_course = common.has(Key::Course);
    let groups = Groups::new(snapshot, common);
    let slots = if by_course {
        snapshot.courses.names.len().max(1)
    } else {
        1
    };
    let scratch = slots.saturating_mul(buckets.len());
    let stamped = scratch <= STAMPED;
    let mut tally = Tally {
        groups: &groups,
        buckets: &buckets,
        by_course,
        stamp: if stamped {
            vec![0; scratch]
        } else {
            Vec::new()
        },
        count: if stamped {
            vec![0; scratch]
        } else {
            Vec::new()
        },
        touched: Vec::new(),
        resident: 0,
        index: Cells::new(groups.len(), slots),
        series: Vec::new(),
    };
    scan(snapshot, &filter.within(from, to), &mut tally);
    let population = groups.population();
    let kept = common.min_group.apply(tally.series, |(g, ..)| {
        i64::try_from(population[*g as usize]).unwrap_or(i64::MAX)
    });
    let mut series: Vec<Series> = kept
        .rows
        .into_iter()
        .map(|(g, slot, statements, askers)| Series {
            label: groups.labels(g, by_course.then_some(slot), snapshot, common),
            statements,
            askers,
        })
        .collect();
    let total = |s: &Series| s.statements.iter().sum::<u64>();
    series.sort_by(|a, b| {
        total(b)
            .cmp(&total(a))
            .then_with(|| a.label.cmp_keys(&b.label))
    });
    let count = series.len();
    series.truncate(query.limit);
    Ok(Trend {
        interval: query.interval,
        buckets: buckets.starts(),
        series,
        groups: count,
        suppressed: kept.suppressed,
    })
}

impl Serialize for Series {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in &self.label.values {
            map.serialize_entry(key.name(), value)?;
        }
        if let Some(new) = self.label.new_course {
            map.serialize_entry("new_course", &new)?;
        }
        map.serialize_entry("statements", &self.statements)?;
        map.serialize_entry("askers", &self.askers)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        super::super::segment::micros(super::super::params::time(text, "from").unwrap())
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2026-12-02 is a Wednesday.
        let weeks =
            Buckets::new(Interval::Week, at("2026-12-02T10:00:00Z"), at("2026-12-15")).unwrap();
        assert_eq!(weeks.starts()[0].to_rfc3339(), "2026-11-30T00:00:00+00:00");
        assert_eq!(weeks.len(), 3);
        assert_eq!(weeks.of(at("2026-12-06T23:59:59Z")), 0);
        assert_eq!(weeks.of(at("2026-12-07")), 1);
        let months = Buckets::new(Interval::Month, at("2026-01-31"), at("2026-03-01")).unwrap();
        assert_eq!(months.len(), 2);
        assert_eq!(months.of(at("2026-02-28T23:00:00Z")), 1);
        let days = Buckets::new(Interval::Day, at("2026-01-01"), at("2026-01-02")).unwrap();
        assert_eq!(days.len(), 1);
    }

    #[test]
    fn too_many_buckets_are_refused_before_any_is_made() {
        assert_eq!(
            Buckets::new(Interval::Day, at("2025-01-01"), at("2026-03-01")),
            Err(ParamError::Buckets(424))
        );
        assert!(Buckets::new(Interval::Day, at("0001-01-01"), at("9999-01-01")).is_err());
        assert!(Buckets::new(Interval::Month, at("2000-01-01"), at("2033-01-01")).is_ok());
    }
}
