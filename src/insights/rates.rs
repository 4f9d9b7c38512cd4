//! `GET /imports/{id}/insights/rates`: per group, how many of its residents
//! asked (the rate, with its Wilson interval), how many were expected from
//! the import's age-specific rates of the same course (indirect
//! standardisation), the ratio with its Garwood interval, the exact Poisson
//! p and the Benjamini–Hochberg q over all the answer's groups.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::params::{Key, RatesQuery, Sort};
use super::scan::{scan, Cells, Filter, Groups, Label, Touched, Visit};
use super::snapshot::Snapshot;
use super::stats;

/// One group's figures (and course's, when course is a key).
#[derive(Debug, Clone, PartialEq)]
pub struct RateRow {
    pub label: Label,
    pub population: u64,
    pub askers: u64,
    pub statements: u64,
    pub rate: Option<f64>,
    pub rate_low: Option<f64>,
    pub rate_high: Option<f64>,
    pub expected: Option<f64>,
    pub ratio: Option<f64>,
    pub ratio_low: Option<f64>,
    pub ratio_high: Option<f64>,
    pub p: Option<f64>,
    pub q: Option<f64>,
}

/// Residents who ask among residents, together (the whole import under the
/// same filters, or the towns near an airport).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = RateTotals)]
pub struct Totals {
    pub population: u64,
    pub askers: u64,
    pub statements: u64,
    /// askers / population, with its Wilson 95 % interval.
    pub rate: Option<f64>,
    pub rate_low: Option<f64>,
    pub rate_high: Option<f64>,
}

impl Totals {
    pub fn of(population: u64, askers: u64, statements: u64) -> Self {
        let (rate_low, rate_high) = stats::wilson(askers, population).unzip();
        Self {
            population,
            askers,
            statements,
            rate: (population > 0).then(|| askers as f64 / population as f64),
            rate_low,
            rate_high,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    /// The best `limit` rows.
    pub rows: Vec<RateRow>,
    /// How many rows there were before `limit`.
    pub groups: usize,
    /// Rows left out for their small population (`Common::min_group`).
    pub suppressed: usize,
    pub totals: Totals,
}

#[derive(Debug, Default, Clone, Copy)]
struct Cell {
    statements: u64,
    askers: u64,
}

struct Tally<'a> {
    groups: &'a Groups,
    by_course: bool,
    touched: Touched,
    cells: Cells<Cell>,
    /// Askers per age bin and course slot (the import's age-specific rates).
    age_askers: Vec<u64>,
    slots: usize,
    askers: u64,
    statements: u64,
}

impl Visit for Tally<'_> {
    fn begin(&mut self, _: usize) {}

    #[inline]
    fn statement(&mut self, course: u32, _: i64) {
        self.touched.add(if self.by_course { course } else { 0 });
    }

    fn end(&mut self, r: usize) {
        if self.touched.slots.is_empty() {
            return;
        }
        let (g, bin) = (self.groups.of[r], self.groups.age_bin[r] as usize);
        self.askers += 1;
        for &slot in &self.touched.slots {
            let n = u64::from(self.touched.count(slot));
            let cell = self.cells.get(g, slot);
            cell.statements += n;
            cell.askers += 1;
            self.statements += n;
            self.age_askers[bin * self.slots + slot as usize] += 1;
        }
        self.touched.clear();
    }
}

/// The rates of `snapshot` as `query` asks for them.
pub fn rates(snapshot: &Snapshot, query: &RatesQuery) -> Rates {
    let common = &query.common;
    let by_course = common.has(Key::Course);
    let groups = Groups::new(snapshot, common);
    let slots = if by_course {
        snapshot.courses.names.len().max(1)
    } else {
        1
    };
    let bins = groups.age_bins;
    // Population per group and age bin, per age bin, in all.
    let mut population = vec![0u64; groups.len() * bins];
    let mut bin_population = vec![0u64; bins];
    for (r, g) in groups.of.iter().enumerate() {
        let bin = groups.age_bin[r] as usize;
        population[*g as usize * bins + bin] += 1;
        bin_population[bin] += 1;
    }
    let total_population = snapshot.residents.len() as u64;
    let mut tally = Tally {
        groups: &groups,
        by_course,
        touched: Touched::new(slots),
        cells: Cells::new(groups.len(), slots),
        age_askers: vec![0; bins * slots],
        slots,
        askers: 0,
        statements: 0,
    };
    scan(snapshot, &Filter::new(common, snapshot), &mut tally);
    let Tally {
        cells,
        age_askers,
        askers: total_askers,
        statements: total_statements,
        ..
    } = tally;
    let slot_askers: Vec<u64> = (0..slots)
        .map(|s| (0..bins).map(|b| age_askers[b * slots + s]).sum())
        .collect();
    let group_population = |g: u32| -> u64 {
        population[g as usize * bins..(g as usize + 1) * bins]
            .iter()
            .sum()
    };
    // Askers expected of group `g` at the import's rates of course slot `s`:
    // age-specific, or the overall rate when age is a key (a group is one age then).
    let expected = |g: u32, s: usize| -> f64 {
        if common.has(Key::AgeGroup) {
            if total_population == 0 {
                return 0.0;
            }
            group_population(g) as f64 * slot_askers[s] as f64 / total_population as f64
        } else {
            (0..bins)
                .filter(|b| bin_population[*b] > 0)
                .map(|b| {
                    population[g as usize * bins + b] as f64 * age_askers[b * slots + s] as f64
                        / bin_population[b] as f64
                })
                .sum()
        }
    };
    let mut cells: Vec<(u32, Option<u32>, Cell)> = if by_course {
        cells
            .into_cells()
            .into_iter()
            .map(|(g, s, c)| (g, Some(s), c))
            .collect()
    } else {
        // Every group with residents, askers or not.
        let mut counted: Vec<Cell> = vec![Cell::default(); groups.len()];
        for (g, _, c) in cells.into_cells() {
            counted[g as usize] = c;
        }
        counted
            .into_iter()
            .enumerate()
            .map(|(g, c)| (g as u32, None, c))
            .collect()
    };
    cells.sort_by_key(|(g, s, _)| (*g, *s));
    let mut garwood = stats::Garwood::default();
    let mut rows: Vec<RateRow> = cells
        .into_iter()
        .map(|(g, course, cell)| {
            let population = group_population(g);
            let expected = expected(g, course.unwrap_or(0) as usize);
            let label = groups.labels(g, course, snapshot, common);
            row(label, population, cell, expected, garwood.get(cell.askers))
        })
        .collect();
    let p: Vec<f64> = rows.iter().filter_map(|r| r.p).collect();
    let mut q = stats::benjamini_hochberg(&p).into_iter();
    for row in rows.iter_mut().filter(|r| r.p.is_some()) {
        row.q = q.next();
    }
    sort(&mut rows, query.sort);
    // Left out after the statistics, so q does not depend on the setting.
    let kept = common
        .min_group
        .apply(rows, |r| i64::try_from(r.population).unwrap_or(i64::MAX));
    let (mut rows, suppressed) = (kept.rows, kept.suppressed);
    let groups = rows.len();
    rows.truncate(query.limit);
    Rates {
        rows,
        groups,
        suppressed,
        totals: Totals::of(total_population, total_askers, total_statements),
    }
}

fn row(label: Label, population: u64, cell: Cell, expected: f64, garwood: (f64, f64)) -> RateRow {
    let (rate_low, rate_high) = stats::wilson(cell.askers, population).unzip();
    let known = expected > 0.0;
    let (low, high) = garwood;
    RateRow {
        label,
        population,
        askers: cell.askers,
        statements: cell.statements,
        rate: (population > 0).then(|| cell.askers as f64 / population as f64),
        rate_low,
        rate_high,
        expected: Some(expected),
        ratio: known.then(|| cell.askers as f64 / expected),
        ratio_low: known.then(|| low / expected),
        ratio_high: known.then(|| high / expected),
        p: stats::poisson_p(cell.askers, expected),
        q: None,
    }
}

/// Largest first by the chosen figure (a missing one last), then more
/// askers, then the keys.
fn sort(rows: &mut [RateRow], sort: Sort) {
    let figure = |r: &RateRow| -> f64 {
        let value = match sort {
            Sort::Lower => r.rate_low,
            Sort::Rate => r.rate,
            Sort::Ratio => r.ratio,
            Sort::Askers => Some(r.askers as f64),
        };
        value.unwrap_or(f64::NEG_INFINITY)
    };
    rows.sort_by(|a, b| {
        figure(b)
            .total_cmp(&figure(a))
            .then(b.askers.cmp(&a.askers))
            .then_with(|| a.label.cmp_keys(&b.label))
    });
}

impl Serialize for RateRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in &self.label.values {
            map.serialize_entry(key.name(), value)?;
        }
        if let Some(new) = self.label.new_course {
            map.serialize_entry("new_course", &new)?;
        }
        map.serialize_entry("population", &self.population)?;
        map.serialize_entry("askers", &self.askers)?;
        map.serialize_entry("statements", &self.statements)?;
        map.serialize_entry("rate", &self.rate)?;
        map.serialize_entry("rate_low", &self.rate_low)?;
        map.serialize_entry("rate_high", &self.rate_high)?;
        map.serialize_entry("expected", &self.expected)?;
        map.serialize_entry("ratio", &self.ratio)?;
        map.serialize_entry("ratio_low", &self.ratio_low)?;
        map.serialize_entry("ratio_high", &self.ratio_high)?;
        map.serialize_entry("p", &self.p)?;
        map.serialize_entry("q", &self.q)?;
        map.end()
    }
}
