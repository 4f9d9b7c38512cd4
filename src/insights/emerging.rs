//! `GET /imports/{id}/insights/emerging`: per group, distinct askers in
//! the current window and the previous one; the groups with at least
//! `min_count` now are tested for a rising share of all askers: the share
//! ratio `(x1/T1)/(x0/T0)` with its exact interval (Clopper–Pearson of x1
//! given x1 + x0), the one-sided conditional binomial p and BH q.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::params::{EmergingQuery, Key};
use super::scan::{scan, Cells, Filter, Groups, Label, Visit};
use super::snapshot::Snapshot;
use super::stats;

#[derive(Debug, Clone, PartialEq)]
pub struct EmergingRow {
    pub label: Label,
    /// Distinct askers in the current window (x1) and the previous (x0).
    pub current: u64,
    pub previous: u64,
    /// `None` when nobody asked before (then `new`).
    pub ratio: Option<f64>,
    pub ratio_low: Option<f64>,
    pub ratio_high: Option<f64>,
    pub new: bool,
    pub p: f64,
    pub q: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Emerging {
    /// Askers summed over all groups, current (T1) and previous (T0).
    pub t1: u64,
    pub t0: u64,
    /// Groups with any asker in either window, and those tested.
    pub groups: usize,
    pub tested: usize,
    pub rows: Vec<EmergingRow>,
    /// Tested groups left out for their small population (`Common::min_group`).
    pub suppressed: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Cell {
    current: u64,
    previous: u64,
}

struct Tally<'a> {
    groups: &'a Groups,
    by_course: bool,
    split: i64,
    /// Per slot: the resident (+1) last seen there in each window.
    now: Vec<u32>,
    before: Vec<u32>,
    touched: Vec<(u32, bool)>,
    resident: u32,
    cells: Cells<Cell>,
}

impl Visit for Tally<'_> {
    fn begin(&mut self, r: usize) {
        self.resident = r as u32 + 1;
    }

    #[inline]
    fn statement(&mut self, course: u32, ts: i64) {
        let slot = if self.by_course { course } else { 0 };
        let current = ts >= self.split;
        let seen = if current {
            &mut self.now
        } else {
            &mut self.before
        };
        if seen[slot as usize] != self.resident {
            seen[slot as usize] = self.resident;
            self.touched.push((slot, current));
        }
    }

    fn end(&mut self, r: usize) {
        let g = self.groups.of[r];
        for (slot, current) in self.touched.drain(..) {
            let cell = self.cells.get(g, slot);
            if current {
                cell.current += 1;
            } else {
                cell.previous += 1;
            }
        }
    }
}

pub fn emerging(snapshot: &Snapshot, query: &EmergingQuery) -> Emerging {
    let common = &query.common;
    let by_course = common.has(Key::Course);
    let groups = Groups::new(snapshot, common);
    let slots = if by_course {
        snapshot.courses.names.len().max(1)
    } else {
        1
    };
    let ((split, end), (start, _)) = query.windows();
    let mut tally = Tally {
        groups: &groups,
        by_course,
        split,
        now: vec![0; slots],
        before: vec![0; slots],
        touched: Vec::new(),
        resident: 0,
        cells: Cells::new(groups.len(), slots),
    };
    let filter = Filter::new(common, snapshot).within(start, end);
    scan(snapshot, &filter, &mut tally);
    let cells = tally.cells.into_cells();
    let t1: u64 = cells.iter().map(|(_, _, c)| c.current).sum();
    let t0: u64 = cells.iter().map(|(_, _, c)| c.previous).sum();
    let pi = if t1 + t0 == 0 {
        0.0
    } else {
        t1 as f64 / (t1 + t0) as f64
    };
    let groups_count = cells.len();
    let mut rows: Vec<(u32, EmergingRow)> = cells
        .into_iter()
        .filter(|(_, _, c)| c.current >= query.min_count)
        .map(|(g, slot, c)| {
            let n = c.current + c.previous;
            // The share ratio is the odds of x1 against x0, times T0/T1.
            let odds = |share: f64| -> Option<f64> {
                (share < 1.0).then(|| share / (1.0 - share) * t0 as f64 / t1 as f64)
            };
            let (low, high) = stats::clopper_pearson(c.current, n).unwrap_or((0.0, 1.0));
            let new = c.previous == 0;
            let row = EmergingRow {
                label: groups.labels(g, by_course.then_some(slot), snapshot, common),
                current: c.current,
                previous: c.previous,
                ratio: (!new && t0 > 0)
                    .then(|| (c.current as f64 / t1 as f64) / (c.previous as f64 / t0 as f64)),
                ratio_low: if t0 > 0 { odds(low) } else { None },
                ratio_high: if t0 > 0 { odds(high) } else { None },
                new,
                p: stats::binomial_p_greater(c.current, n, pi).unwrap_or(1.0),
                q: 1.0,
            };
            (g, row)
        })
        .collect();
    let p: Vec<f64> = rows.iter().map(|(_, r)| r.p).collect();
    for ((_, row), q) in rows.iter_mut().zip(stats::benjamini_hochberg(&p)) {
        row.q = q;
    }
    let tested = rows.len();
    // Left out after the statistics, so q does not depend on the setting.
    let population = groups.population();
    let kept = common.min_group.apply(rows, |(g, _)| {
        i64::try_from(population[*g as usize]).unwrap_or(i64::MAX)
    });
    let suppressed = kept.suppressed;
    let mut rows: Vec<EmergingRow> = kept.rows.into_iter().map(|(_, row)| row).collect();
    // By p, then the larger ratio (a new group's is the largest), then keys.
    let ratio = |r: &EmergingRow| {
        if r.new {
            f64::INFINITY
        } else {
            r.ratio.unwrap_or(0.0)
        }
    };
    rows.sort_by(|a, b| {
        a.p.total_cmp(&b.p)
            .then(ratio(b).total_cmp(&ratio(a)))
            .then_with(|| a.label.cmp_keys(&b.label))
    });
    rows.truncate(query.limit);
    Emerging {
        t1,
        t0,
        groups: groups_count,
        tested,
        rows,
        suppressed,
    }
}

impl Serialize for EmergingRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in &self.label.values {
            map.serialize_entry(key.name(), value)?;
        }
        if let Some(new) = self.label.new_course {
            map.serialize_entry("new_course", &new)?;
        }
        map.serialize_entry("current", &self.current)?;
        map.serialize_entry("previous", &self.previous)?;
        map.serialize_entry("ratio", &self.ratio)?;
        map.serialize_entry("ratio_low", &self.ratio_low)?;
        map.serialize_entry("ratio_high", &self.ratio_high)?;
        map.serialize_entry("new", &self.new)?;
        map.serialize_entry("p", &self.p)?;
        map.serialize_entry("q", &self.q)?;
        map.end()
    }
}
