//! What the three answers share: which statements count, the residents'
//! groups, and one pass over the statements resident by resident (each
//! resident's are together in every run, so "distinct askers" needs only a
//! small per-resident scratch, never a set over the whole import).

use std::collections::HashMap;

use super::params::{Common, Key};
use super::residents::GENDERS;
use super::snapshot::Snapshot;

/// The statements that count (SPEC section 5, "Terms"), as numbers.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    /// `None`: every course; `Some(None)`: a course no statement asks for.
    course: Option<Option<u32>>,
    min_score: Option<f64>,
    from: i64,
    to: i64,
}

impl Filter {
    pub fn new(common: &Common, snapshot: &Snapshot) -> Self {
        let f = &common.filters;
        Self {
            course: f.course.as_deref().map(|c| snapshot.courses.id(c)),
            min_score: f.min_score,
            from: f.from.unwrap_or(i64::MIN),
            to: f.to.unwrap_or(i64::MAX),
        }
    }

    /// The same filter within `[from, to)` as well.
    pub fn within(mut self, from: i64, to: i64) -> Self {
        self.from = self.from.max(from);
        self.to = self.to.min(to);
        self
    }

    /// Whether nothing can count (a course no statement asks for).
    pub fn matches_nothing(&self) -> bool {
        matches!(self.course, Some(None)) || self.from >= self.to
    }

    #[inline]
    fn counts(&self, course: u32, ts: i64, score_bits: u64) -> bool {
        if ts < self.from || ts >= self.to {
            return false;
        }
        if let Some(wanted) = self.course {
            if wanted != Some(course) {
                return false;
            }
        }
        match self.min_score {
            // A NaN (no score) compares false: it does not count.
            Some(min) => f64::from_bits(score_bits) >= min,
            None => true,
        }
    }
}

/// What a pass tells its visitor, resident by resident.
pub trait Visit {
    fn begin(&mut self, resident: usize);
    fn statement(&mut self, course: u32, ts: i64);
    fn end(&mut self, resident: usize);
}

/// Hands every counted statement to `visit`, grouped by resident.
pub fn scan(snapshot: &Snapshot, filter: &Filter, visit: &mut impl Visit) {
    let runs: Vec<_> = snapshot.runs().filter(|r| !r.is_empty()).collect();
    for resident in 0..snapshot.residents.len() {
        visit.begin(resident);
        if !filter.matches_nothing() {
            for run in &runs {
                for i in run.range(resident) {
                    let (course, ts) = (run.course[i], run.ts[i]);
                    if filter.counts(course, ts, run.score_bits[i]) {
                        visit.statement(course, ts);
                    }
                }
            }
        }
        visit.end(resident);
    }
}

/// The earliest and latest times among the statements that count.
pub fn time_span(snapshot: &Snapshot, filter: &Filter) -> Option<(i64, i64)> {
    struct Span(Option<(i64, i64)>);
    impl Visit for Span {
        fn begin(&mut self, _: usize) {}
        fn statement(&mut self, _: u32, ts: i64) {
            self.0 = Some(self.0.map_or((ts, ts), |(a, b)| (a.min(ts), b.max(ts))));
        }
        fn end(&mut self, _: usize) {}
    }
    let mut span = Span(None);
    scan(snapshot, filter, &mut span);
    span.0
}

/// The resident attributes of a group (those among the keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct GroupKey {
    town: u32,
    age: u32,
    gender: u32,
    channel: u32,
}

/// The residents' groups by the keys other than course.
#[derive(Debug, Clone)]
pub struct Groups {
    /// Each resident's group.
    pub of: Vec<u32>,
    /// Each resident's age bin (whether or not age is a key).
    pub age_bin: Vec<u32>,
    keys: Vec<GroupKey>,
    pub age_bins: usize,
}

impl Groups {
    pub fn new(snapshot: &Snapshot, common: &Common) -> Self {
        let residents = &snapshot.residents;
        let day = common.age_day();
        let mut index: HashMap<GroupKey, u32> = HashMap::new();
        let mut keys = Vec::new();
        let mut of = Vec::with_capacity(residents.len());
        let mut age_bin = Vec::with_capacity(residents.len());
        for r in 0..residents.len() {
            let bin = common.age_bins.bucket(residents.age_on(r, day)) as u32;
            age_bin.push(bin);
            let key = GroupKey {
                town: if common.has(Key::Town) {
                    residents.town[r]
                } else {
                    0
                },
                age: if common.has(Key::AgeGroup) { bin } else { 0 },
                gender: if common.has(Key::Gender) {
                    u32::from(residents.gender[r])
                } else {
                    0
                },
                channel: if common.has(Key::Channel) {
                    residents.channel[r]
                } else {
                    0
                },
            };
            let g = *index.entry(key).or_insert_with(|| {
                keys.push(key);
                keys.len() as u32 - 1
            });
            of.push(g);
        }
        Self {
            of,
            age_bin,
            keys,
            age_bins: common.age_bins.buckets(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The residents of each group.
    pub fn population(&self) -> Vec<u64> {
        let mut population = vec![0u64; self.len()];
        for g in &self.of {
            population[*g as usize] += 1;
        }
        population
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The labels of group `g` (and `course` when it is a key), in key order.
    pub fn labels(
        &self,
        g: u32,
        course: Option<u32>,
        snapshot: &Snapshot,
        common: &Common,
    ) -> Label {
        let key = self.keys[g as usize];
        let residents = &snapshot.residents;
        let values = common
            .keys
            .iter()
            .map(|k| {
                let value = match k {
                    Key::Town => residents.towns.names[key.town as usize].clone(),
                    Key::AgeGroup => common.age_bins.label(key.age as i32),
                    Key::Gender => GENDERS[key.gender as usize].to_owned(),
                    Key::Channel => residents.channels.names[key.channel as usize].clone(),
                    Key::Course => course
                        .and_then(|c| snapshot.courses.names.get(c as usize))
                        .cloned()
                        .unwrap_or_default(),
                };
                (*k, value)
            })
            .collect();
        Label {
            values,
            age: key.age,
            new_course: match (common.has(Key::Course), course) {
                (true, Some(c)) => Some(!snapshot.offered(&snapshot.courses.names[c as usize])),
                _ => None,
            },
        }
    }
}

/// A row's key values, and how it sorts among equals.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub values: Vec<(Key, String)>,
    /// The age bin (sorts age groups by age, not by their text).
    age: u32,
    /// Whether the course is new (not offered), when course is a key.
    pub new_course: Option<bool>,
}

impl Label {
    /// Key order: towns, channels and courses by name, age groups by age.
    pub fn cmp_keys(&self, other: &Label) -> std::cmp::Ordering {
        for ((k, a), (_, b)) in self.values.iter().zip(&other.values) {
            let order = if *k == Key::AgeGroup {
                self.age.cmp(&other.age)
            } else {
                a.cmp(b)
            };
            if order.is_ne() {
                return order;
            }
        }
        std::cmp::Ordering::Equal
    }
}

/// Counters per (group, course slot): a dense table while it is small,
/// a map beyond (many groups times many courses).
#[derive(Debug)]
pub enum Cells<T> {
    Dense { slots: usize, cells: Vec<Option<T>> },
    Sparse(HashMap<(u32, u32), T>),
}

/// The largest dense table of cells.
const DENSE_CELLS: usize = 1 << 21;

impl<T: Default> Cells<T> {
    pub fn new(groups: usize, slots: usize) -> Self {
        match groups.checked_mul(slots) {
            Some(n) if n <= DENSE_CELLS => Cells::Dense {
                slots,
                cells: (0..n).map(|_| None).collect(),
            },
            _ => Cells::Sparse(HashMap::new()),
        }
    }

    #[inline]
    pub fn get(&mut self, group: u32, slot: u32) -> &mut T {
        match self {
            Cells::Dense { slots, cells } => {
                cells[group as usize * *slots + slot as usize].get_or_insert_with(T::default)
            }
            Cells::Sparse(map) => map.entry((group, slot)).or_default(),
        }
    }

    /// Every cell that was touched, as (group, slot, value).
    pub fn into_cells(self) -> Vec<(u32, u32, T)> {
        match self {
            Cells::Dense { slots, cells } => cells
                .into_iter()
                .enumerate()
                .filter_map(|(i, c)| c.map(|c| ((i / slots) as u32, (i % slots) as u32, c)))
                .collect(),
            Cells::Sparse(map) => map.into_iter().map(|((g, s), c)| (g, s, c)).collect(),
        }
    }
}

/// Per resident: the course slots its statements touched and how often,
/// reset in O(touched) for the next resident.
#[derive(Debug)]
pub struct Touched {
    count: Vec<u32>,
    pub slots: Vec<u32>,
}

impl Touched {
    pub fn new(slots: usize) -> Self {
        Self {
            count: vec![0; slots],
            slots: Vec::new(),
        }
    }

    #[inline]
    pub fn add(&mut self, slot: u32) {
        let c = &mut self.count[slot as usize];
        if *c == 0 {
            self.slots.push(slot);
        }
        *c += 1;
    }

    pub fn count(&self, slot: u32) -> u32 {
        self.count[slot as usize]
    }

    pub fn clear(&mut self) {
        for s in self.slots.drain(..) {
            self.count[s as usize] = 0;
        }
    }
}
