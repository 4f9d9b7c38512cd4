//! The compact form of stored statements that the insights read: per
//! statement only what an answer needs (its citizen, course, time and
//! score), column by column, so that an instance loads a million statements
//! from a few megabytes instead of scanning a million wide rows.
//!
//! A segment is sorted by citizen, then course, time and score, and encoded
//! little-endian as:
//!
//! ```text
//! "ISG1"  u32 statements  u32 citizen runs  u32 courses
//! courses: u32 length + UTF-8 each, sorted
//! citizen runs: (i32 citizen_id, u32 statements) each, ascending ids
//! course column: indices into the courses, bit-packed
//! time column: i64 base, u64 step, u8 width, (time - base) / step bit-packed
//!     (microseconds since 1970 UTC, as PostgreSQL stores them)
//! score column: u8 0 = dictionary (u32 n, n × u64 bits, indices bit-packed)
//!               u8 1 = plain (u64 bits each); no score is one NaN
//! ```
//!
//! Bit-packing writes each value in `width` bits (the fewest that hold the
//! largest) into little-endian u64 words. Times usually share a step
//! (whole milliseconds or seconds) and a narrow range, and scores a few
//! distinct values, so a statement takes 5 to 9 bytes instead of the 18 of
//! its raw fields. Pure code: PostgreSQL is `store`'s.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

const MAGIC: &[u8; 4] = b"ISG1";
/// The most statements a segment may hold (a corrupt count is refused
/// before anything is allocated for it).
const MAX_STATEMENTS: usize = 1 << 28;
/// The bits of a missing score (a quiet NaN; statements' scores are finite).
pub const NO_SCORE: u64 = 0x7ff8_0000_0000_0000;

/// Microseconds since 1970 UTC of a time as PostgreSQL keeps it: whole
/// microseconds since 2000 truncated toward 2000, as the statements'
/// writer sends them (and postgres-types would), so a statement's time in
/// a segment equals its stored `ts` exactly.
pub fn micros(t: DateTime<Utc>) -> i64 {
    const Y2K_MICROS: i64 = 946_684_800_000_000;
    let y2k = DateTime::UNIX_EPOCH + chrono::TimeDelta::microseconds(Y2K_MICROS);
    match (t - y2k).num_microseconds() {
        Some(since) => since.saturating_add(Y2K_MICROS),
        None if t > y2k => i64::MAX,
        None => i64::MIN,
    }
}

/// Why bytes are not a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt insights segment: {0}")]
pub struct SegmentError(pub &'static str);

/// One stored statement as the insights keep it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Record {
    citizen_id: i32,
    /// Index into the builder's courses.
    course: u32,
    /// Microseconds since 1970-01-01 UTC.
    ts: i64,
    /// `NO_SCORE` when it has none.
    score_bits: u64,
}

/// Statements collected for one segment (what a batch or a replay stored).
#[derive(Debug, Clone, Default)]
pub struct Builder {
    courses: Vec<String>,
    index: HashMap<String, u32>,
    records: Vec<Record>,
}

/// Two builders are equal when they hold the same statements, in any order.
impl PartialEq for Builder {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.encode() == other.encode()
    }
}

impl Eq for Builder {}

/// The bits a score is kept as: NaN (which no statement has) and none are one.
pub fn score_bits(score: Option<f64>) -> u64 {
    match score {
        Some(s) if !s.is_nan() => s.to_bits(),
        _ => NO_SCORE,
    }
}

impl Builder {
    pub fn push(&mut self, citizen_id: i32, course: &str, ts_micros: i64, score: Option<f64>) {
        self.push_bits(citizen_id, course, ts_micros, score_bits(score));
    }

    fn push_bits(&mut self, citizen_id: i32, course: &str, ts: i64, score_bits: u64) {
        let next = self.courses.len() as u32;
        let course = match self.index.get(course) {
            Some(i) => *i,
            None => {
                self.courses.push(course.to_owned());
                self.index.insert(course.to_owned(), next);
                next
            }
        };
        self.records.push(Record {
            citizen_id,
            course,
            ts,
            score_bits,
        });
    }

    /// Adds what `other` collected.
    pub fn merge(&mut self, other: Builder) {
        if self.records.is_empty() {
            *self = other;
            return;
        }
        for r in other.records {
            let course = &other.courses[r.course as usize];
            self.push_bits(r.citizen_id, course, r.ts, r.score_bits);
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds every statement of a decoded segment.
    pub fn extend_decoded(&mut self, segment: &Decoded) {
        let mut at = 0;
        for &(citizen_id, n) in &segment.citizens {
            for i in at..at + n as usize {
                let course = &segment.courses[segment.course[i] as usize];
                self.push_bits(citizen_id, course, segment.ts[i], segment.score_bits[i]);
            }
            at += n as usize;
        }
    }

    /// The segment's bytes (see the module docs); the same statements
    /// always encode to the same bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Courses sorted by name, and the records by citizen, course, time, score.
        let mut order: Vec<u32> = (0..self.courses.len() as u32).collect();
        order.sort_by(|a, b| self.courses[*a as usize].cmp(&self.courses[*b as usize]));
        let mut rank = vec![0u32; order.len()];
        for (r, c) in order.iter().enumerate() {
            rank[*c as usize] = r as u32;
        }
        let mut records: Vec<Record> = self
            .records
            .iter()
            .map(|r| Record {
                course: rank[r.course as usize],
                ..*r
            })
            .collect();
        records.sort_unstable_by(|a, b| {
            (a.citizen_id, a.course, a.ts, a.score_bits).cmp(&(
                b.citizen_id,
                b.course,
                b.ts,
                b.score_bits,
            ))
        });
        let mut runs: Vec<(i32, u32)> = Vec::new();
        for r in &records {
            match runs.last_mut() {
                Some((id, n)) if *id == r.citizen_id => *n += 1,
                _ => runs.push((r.citizen_id, 1)),
            }
        }
        let n = records.len();
        let mut out = Vec::with_capacity(32 + n * 8);
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, n as u32);
        put_u32(&mut out, runs.len() as u32);
        put_u32(&mut out, order.len() as u32);
        for c in &order {
            let name = self.courses[*c as usize].as_bytes();
            put_u32(&mut out, name.len() as u32);
            out.extend_from_slice(name);
        }
        for (id, count) in &runs {
            out.extend_from_slice(&id.to_le_bytes());
            put_u32(&mut out, *count);
        }
        let course_width = width_of(order.len().saturating_sub(1) as u64);
        pack(
            &mut out,
            records.iter().map(|r| u64::from(r.course)),
            course_width,
        );
        encode_times(&mut out, &records);
        encode_scores(&mut out, &records);
        out
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The fewest bits that hold `max`.
fn width_of(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn encode_times(out: &mut Vec<u8>, records: &[Record]) {
    let base = records.iter().map(|r| r.ts).min().unwrap_or(0);
    // The offsets fit u64: the widest i64 range does.
    let offset = |ts: i64| (ts as i128 - base as i128) as u64;
    let step = records.iter().fold(0, |g, r| gcd(g, offset(r.ts))).max(1);
    let max = records
        .iter()
        .map(|r| offset(r.ts) / step)
        .max()
        .unwrap_or(0);
    let width = width_of(max);
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&step.to_le_bytes());
    out.push(width);
    pack(out, records.iter().map(|r| offset(r.ts) / step), width);
}

/// A dictionary of scores pays when they repeat; most streams score on a
/// coarse scale (two decimals), some send arbitrary doubles.
fn encode_scores(out: &mut Vec<u8>, records: &[Record]) {
    let mut dictionary: Vec<u64> = records.iter().map(|r| r.score_bits).collect();
    dictionary.sort_unstable();
    dictionary.dedup();
    let width = width_of(dictionary.len().saturating_sub(1) as u64);
    let dictionary_bytes =
        4 + dictionary.len() * 8 + 1 + (records.len() * width as usize).div_ceil(8);
    if dictionary_bytes < records.len() * 8 {
        out.push(0);
        put_u32(out, dictionary.len() as u32);
        for bits in &dictionary {
            out.extend_from_slice(&bits.to_le_bytes());
        }
        out.push(width);
        let index = |bits: u64| dictionary.binary_search(&bits).unwrap_or(0) as u64;
        pack(out, records.iter().map(|r| index(r.score_bits)), width);
    } else {
        out.push(1);
        for r in records {
            out.extend_from_slice(&r.score_bits.to_le_bytes());
        }
    }
}

/// Writes `values` in `width` bits each into little-endian u64 words.
fn pack(out: &mut Vec<u8>, values: impl Iterator<Item = u64>, width: u8) {
    if width == 0 {
        return;
    }
    let width = u32::from(width);
    let (mut word, mut used) = (0u64, 0u32);
    for v in values {
        word |= v << used;
        used += width;
        if used >= 64 {
            out.extend_from_slice(&word.to_le_bytes());
            used -= 64;
            // The value's bits that did not fit (none when it ended the word).
            word = if used == 0 { 0 } else { v >> (width - used) };
        }
    }
    if used > 0 {
        out.extend_from_slice(&word.to_le_bytes());
    }
}

/// A segment's statements, column by column, in its order (by citizen).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub courses: Vec<String>,
    /// Each citizen's id and how many of the statements (in order) are its.
    pub citizens: Vec<(i32, u32)>,
    /// Index into `courses`, per statement.
    pub course: Vec<u32>,
    /// Microseconds since 1970 UTC, per statement.
    pub ts: Vec<i64>,
    /// The score's bits per statement ([`NO_SCORE`] for none).
    pub score_bits: Vec<u64>,
}

impl Decoded {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
}

/// Reads a segment, checking every length against the bytes there are.
pub fn decode(bytes: &[u8]) -> Result<Decoded, SegmentError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != MAGIC {
        return Err(SegmentError("bad magic"));
    }
    let n = r.u32()? as usize;
    let runs = r.u32()? as usize;
    let k = r.u32()? as usize;
    // Every run takes 8 bytes and every course 4; no segment holds more
    // statements than a rebuild of the largest import writes.
    if runs.saturating_mul(8) > bytes.len()
        || k.saturating_mul(4) > bytes.len()
        || n > MAX_STATEMENTS
    {
        return Err(SegmentError("counts larger than the segment"));
    }
    let mut courses = Vec::with_capacity(k);
    for _ in 0..k {
        let len = r.u32()? as usize;
        let name =
            std::str::from_utf8(r.take(len)?).map_err(|_| SegmentError("course not UTF-8"))?;
        courses.push(name.to_owned());
    }
    let mut citizens = Vec::with_capacity(runs);
    let mut total = 0usize;
    for _ in 0..runs {
        let id = i32::from_le_bytes(r.array()?);
        let count = r.u32()?;
        total += count as usize;
        citizens.push((id, count));
    }
    if total != n {
        return Err(SegmentError("citizen runs do not add up"));
    }
    let course_width = width_of(k.saturating_sub(1) as u64);
    let mut course = Vec::with_capacity(n);
    let mut widest = 0u64;
    r.unpack(n, course_width, |v| {
        widest = widest.max(v);
        course.push(v as u32);
    })?;
    if widest as usize >= k.max(1) || (k == 0 && n > 0) {
        return Err(SegmentError("course index out of range"));
    }
    let base = i64::from_le_bytes(r.array()?);
    let step = u64::from_le_bytes(r.array()?);
    let width = r.u8()?;
    if width > 64 {
        return Err(SegmentError("time width"));
    }
    let mut ts = Vec::with_capacity(n);
    // base + v × step taken mod 2^64 is what the encoder's exact offset
    // gives back, without 128-bit arithmetic per statement.
    r.unpack(n, width, |v| {
        ts.push((base as u64).wrapping_add(v.wrapping_mul(step)) as i64);
    })?;
    let score_bits = match r.u8()? {
        0 => {
            let d = r.u32()? as usize;
            if d.saturating_mul(8) > bytes.len() {
                return Err(SegmentError("score dictionary larger than the segment"));
            }
            let mut dictionary = Vec::with_capacity(d);
            for _ in 0..d {
                dictionary.push(u64::from_le_bytes(r.array()?));
            }
            let width = r.u8()?;
            if width > 32 {
                return Err(SegmentError("score width"));
            }
            let mut scores = Vec::with_capacity(n);
            let mut bad = false;
            r.unpack(n, width, |v| match dictionary.get(v as usize) {
                Some(bits) => scores.push(*bits),
                None => bad = true,
            })?;
            if bad {
                return Err(SegmentError("score index out of range"));
            }
            scores
        }
        1 => {
            let mut scores = Vec::with_capacity(n);
            for _ in 0..n {
                scores.push(u64::from_le_bytes(r.array()?));
            }
            scores
        }
        _ => return Err(SegmentError("score mode")),
    };
    if r.at != bytes.len() {
        return Err(SegmentError("trailing bytes"));
    }
    Ok(Decoded {
        courses,
        citizens,
        course,
        ts,
        score_bits,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SegmentError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or(SegmentError("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SegmentError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, SegmentError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u8(&mut self) -> Result<u8, SegmentError> {
        Ok(self.take(1)?[0])
    }

    /// Reads `n` values of `width` bits, handing each to `sink`.
    fn unpack(
        &mut self,
        n: usize,
        width: u8,
        mut sink: impl FnMut(u64),
    ) -> Result<(), SegmentError> {
        if width == 0 {
            (0..n).for_each(|_| sink(0));
            return Ok(());
        }
        let width = u32::from(width);
        let words = (n * width as usize).div_ceil(64);
        let bytes = self.take(words * 8)?;
        // One pass over the words in order, carrying the bits a value did
        // not use into the next (no per-value word lookup).
        let mut next_words = bytes
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        let mask = if width == 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        };
        // The low `avail` bits of `word` are the next value's; above them, zeros.
        let (mut word, mut avail) = (0u64, 0u32);
        for _ in 0..n {
            let v = if avail >= width {
                let v = word & mask;
                word = word.checked_shr(width).unwrap_or(0);
                avail -= width;
                v
            } else {
                let next = next_words.next().unwrap_or(0);
                let v = (word | next << avail) & mask;
                let used = width - avail;
                word = next.checked_shr(used).unwrap_or(0);
                avail = 64 - used;
                v
            };
            sink(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_segment_round_trips_sorted_by_citizen() {
        let mut b = Builder::default();
        b.push(7, "rust", 1_700_000_000_000_000, Some(0.5));
        b.push(3, "go", 1_700_000_000_123_000, None);
        b.push(7, "go", 1_600_000_000_000_000, Some(-1.25));
        b.push(3, "go", 1_700_000_000_000_000, Some(0.5));
        let d = decode(&b.encode()).unwrap();
        assert_eq!(d.courses, ["go", "rust"]);
        assert_eq!(d.citizens, [(3, 2), (7, 2)]);
        assert_eq!(d.course, [0, 0, 0, 1]);
        assert_eq!(
            d.ts,
            [
                1_700_000_000_000_000,
                1_700_000_000_123_000,
                1_600_000_000_000_000,
                1_700_000_000_000_000
            ]
        );
        assert_eq!(
            d.score_bits,
            [
                0.5f64.to_bits(),
                NO_SCORE,
                (-1.25f64).to_bits(),
                0.5f64.to_bits()
            ]
        );
    }

    #[test]
    fn regular_statements_take_a_few_bytes() {
        // 10,000 statements of 100 citizens a second apart, scores in hundredths.
        let mut b = Builder::default();
        for i in 0..10_000i64 {
            let course = ["rust", "go", "sql"][(i % 3) as usize];
            b.push(
                (i % 100) as i32,
                course,
                1_750_000_000_000_000 + i * 1_000_000,
                Some((i % 100) as f64 / 100.0),
            );
        }
        let bytes = b.encode();
        assert!(bytes.len() < 10_000 * 5, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes).unwrap().len(), 10_000);
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        let mut b = Builder::default();
        b.push(1, "rust", 5, Some(0.5));
        b.push(2, "go", 9, None);
        let bytes = b.encode();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        assert!(decode(b"ISG2").is_err());
    }

    #[test]
    fn merging_builders_keeps_every_statement() {
        let mut a = Builder::default();
        a.push(1, "rust", 5, Some(0.5));
        let mut b = Builder::default();
        b.push(2, "go", 9, None);
        b.push(1, "rust", 6, Some(0.25));
        a.merge(b);
        let d = decode(&a.encode()).unwrap();
        assert_eq!(d.citizens, [(1, 2), (2, 1)]);
        let mut again = Builder::default();
        again.extend_decoded(&d);
        assert_eq!(again.encode(), a.encode());
    }

    proptest! {
        #[test]
        fn any_statements_round_trip(
            records in proptest::collection::vec(
                (any::<i32>(), 0usize..5, any::<i64>(), proptest::option::of(any::<f64>())),
                0..300,
            )
        ) {
            let names = ["a", "b", "=c", "ü", ""];
            let mut b = Builder::default();
            let mut expected = Vec::new();
            for (citizen, course, ts, score) in &records {
                b.push(*citizen, names[*course], *ts, *score);
                expected.push((*citizen, names[*course].to_owned(), *ts, score_bits(*score)));
            }
            let d = decode(&b.encode()).unwrap();
            let mut got = Vec::new();
            let mut at = 0;
            for (citizen, n) in &d.citizens {
                for i in at..at + *n as usize {
                    got.push((*citizen, d.courses[d.course[i] as usize].clone(), d.ts[i], d.score_bits[i]));
                }
                at += *n as usize;
            }
            expected.sort_by(|a, b| (a.0, &a.1, a.2, a.3).cmp(&(b.0, &b.1, b.2, b.3)));
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let mut magic = MAGIC.to_vec();
            magic.extend_from_slice(&bytes);
            let _ = decode(&magic);
        }
    }
}
