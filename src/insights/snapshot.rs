//! What the insights compute over: an import as of one request (its
//! residents, the courses of its statements, and its segments decoded into
//! columns grouped by resident), shared by the computations and never
//! changed. The working set (`cache`) keeps these and brings them up to date.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::residents::Residents;
use super::segment::Decoded;

/// The courses of an import's statements, numbered in the order first seen.
#[derive(Debug, Clone, Default)]
pub struct Courses {
    pub names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Courses {
    pub fn id(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub(super) fn intern(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        i
    }
}

/// One segment's statements grouped by resident: resident `r`'s are at
/// `offsets[r]..offsets[r + 1]` of the columns.
#[derive(Debug, Clone, Default)]
pub struct Run {
    offsets: Vec<u32>,
    pub course: Vec<u32>,
    /// Microseconds since 1970 UTC.
    pub ts: Vec<i64>,
    /// `f64::to_bits` of the score; a NaN for none.
    pub score_bits: Vec<u64>,
}

impl Run {
    /// Resident `r`'s statements (empty for one the run has none of).
    #[inline]
    pub fn range(&self, r: usize) -> Range<usize> {
        match (self.offsets.get(r), self.offsets.get(r + 1)) {
            (Some(a), Some(b)) => *a as usize..*b as usize,
            _ => 0..0,
        }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    pub(super) fn bytes(&self) -> usize {
        self.offsets.len() * 4 + self.ts.len() * 20
    }

    /// The run of a decoded segment for residents with ids `ids` (sorted),
    /// its courses numbered in `courses`. The segment's columns become the
    /// run's in place (courses renumbered where they differ; no copy of a
    /// column). A statement of a citizen who is not a resident (none is:
    /// the jobs check) is left out.
    pub(super) fn build(decoded: Decoded, ids: &[i32], courses: &mut Courses) -> Run {
        let Decoded {
            courses: names,
            citizens,
            mut course,
            mut ts,
            mut score_bits,
        } = decoded;
        let local: Vec<u32> = names.iter().map(|c| courses.intern(c)).collect();
        if local.iter().enumerate().any(|(i, c)| *c as usize != i) {
            for c in course.iter_mut() {
                *c = local[*c as usize];
            }
        }
        let mut offsets = vec![0u32; ids.len() + 1];
        // Statements of residents move down over those left out.
        let (mut at, mut kept) = (0usize, 0usize);
        let mut r = 0usize;
        for &(id, n) in &citizens {
            let n = n as usize;
            while r < ids.len() && ids[r] < id {
                offsets[r + 1] = kept as u32;
                r += 1;
            }
            if r < ids.len() && ids[r] == id {
                if kept != at {
                    course.copy_within(at..at + n, kept);
                    ts.copy_within(at..at + n, kept);
                    score_bits.copy_within(at..at + n, kept);
                }
                kept += n;
                offsets[r + 1] = kept as u32;
                r += 1;
            }
            at += n;
        }
        while r < ids.len() {
            offsets[r + 1] = kept as u32;
            r += 1;
        }
        course.truncate(kept);
        ts.truncate(kept);
        score_bits.truncate(kept);
        Run {
            offsets,
            course,
            ts,
            score_bits,
        }
    }
}

/// A database segment as this instance holds it: the runs it was made of
/// when it merged segments this instance had all of, else one.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) first_seq: i64,
    pub(super) last_seq: i64,
    pub(super) runs: Vec<Arc<Run>>,
}

/// What an import is, as of one request: shared by the computations,
/// never changed (a refresh makes a new one from the old one's parts).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub residents: Arc<Residents>,
    pub courses: Arc<Courses>,
    pub(super) held: Vec<Held>,
    /// The catalogue's offered courses, sorted.
    pub offered: Arc<Vec<String>>,
    pub statements: usize,
}

impl Snapshot {
    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        self.held
            .iter()
            .flat_map(|h| h.runs.iter().map(|r| r.as_ref()))
    }

    /// Whether the catalogue offers `course`.
    pub fn offered(&self, course: &str) -> bool {
        self.offered
            .binary_search_by(|c| c.as_str().cmp(course))
            .is_ok()
    }

    pub(super) fn bytes(&self) -> usize {
        self.residents.bytes()
            + self
                .held
                .iter()
                .flat_map(|h| &h.runs)
                .map(|r| r.bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::segment;

    #[test]
    fn runs_group_statements_by_resident() {
        let mut b = segment::Builder::default();
        b.push(10, "go", 1, None);
        b.push(30, "rust", 2, Some(0.5));
        b.push(99, "rust", 3, None); // not a resident
        b.push(10, "rust", 4, None);
        let decoded = segment::decode(&b.encode()).unwrap();
        let mut courses = Courses::default();
        courses.intern("rust");
        let run = Run::build(decoded, &[10, 20, 30], &mut courses);
        assert_eq!(run.range(0), 0..2);
        assert_eq!(run.range(1), 2..2);
        assert_eq!(run.range(2), 2..3);
        assert_eq!(run.len(), 3);
        assert_eq!(courses.names, ["rust", "go"]);
        assert_eq!(run.course, [1, 0, 0]);
        assert_eq!(run.ts, [1, 4, 2]);
        assert_eq!(run.range(3), 0..0);
    }

    #[test]
    fn statements_of_non_residents_in_between_are_left_out() {
        let mut b = segment::Builder::default();
        b.push(10, "go", 1, Some(0.25));
        b.push(20, "rust", 2, None); // not a resident
        b.push(20, "go", 3, None); // not a resident
        b.push(30, "rust", 4, Some(0.5));
        b.push(30, "go", 5, None);
        let decoded = segment::decode(&b.encode()).unwrap();
        let run = Run::build(decoded, &[10, 30], &mut Courses::default());
        assert_eq!(run.range(0), 0..1);
        assert_eq!(run.range(1), 1..3);
        assert_eq!(run.ts, [1, 5, 4]);
        assert_eq!(run.course, [0, 0, 1]);
        assert_eq!(
            run.score_bits,
            [0.25f64.to_bits(), segment::NO_SCORE, 0.5f64.to_bits()]
        );
    }
}
