//! Small groups stay private: answers that count people leave out the
//! groups smaller than `INSIKT_MIN_GROUP_SIZE` and say how many they left
//! out, so an export cannot single out a resident of a small town.
//!
//! Every route whose rows describe groups of residents applies one
//! [`MinGroupSize`] to its rows, measuring each row by the people behind it
//! (demand: its distinct residents; insights: the group's population):
//!
//! ```
//! use insikt::privacy::MinGroupSize;
//! let kept = MinGroupSize::new(5).apply(vec![("Madrid", 120), ("Ólvega", 3)], |r| r.1);
//! assert_eq!((kept.rows.len(), kept.suppressed), (1, 1));
//! ```
//!
//! The HTTP side shows the count as `suppressed` next to `data` in JSON and
//! in the `Insikt-Suppressed` header of CSV and SVG answers (`http::suppressed`).

/// The smallest group an answer shows; 1 (the default) shows every group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinGroupSize(u32);

/// The rows an answer may show, and how many it had to leave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept<T> {
    pub rows: Vec<T>,
    pub suppressed: usize,
}

impl MinGroupSize {
    pub const OFF: Self = Self(1);

    pub fn new(threshold: u32) -> Self {
        Self(threshold.max(1))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether a group of `size` people may be shown (1 shows every group,
    /// even an empty one).
    pub fn allows(self, size: i64) -> bool {
        self.0 <= 1 || size >= i64::from(self.0)
    }

    /// Keeps the rows whose `size` reaches the threshold, in their order.
    pub fn apply<T>(self, rows: Vec<T>, size: impl Fn(&T) -> i64) -> Kept<T> {
        let before = rows.len();
        let rows: Vec<T> = rows
            .into_iter()
            .filter(|row| self.allows(size(row)))
            .collect();
        Kept {
            suppressed: before - rows.len(),
            rows,
        }
    }
}

impl Default for MinGroupSize {
    fn default() -> Self {
        Self::OFF
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn off_keeps_everything() {
        let kept = MinGroupSize::OFF.apply(vec![0, 1, 2], |n| *n);
        assert_eq!(
            kept,
            Kept {
                rows: vec![0, 1, 2],
                suppressed: 0
            }
        );
        assert_eq!(MinGroupSize::new(0), MinGroupSize::OFF);
    }

    proptest! {
        #[test]
        fn every_row_is_kept_or_counted_and_kept_rows_keep_their_order(
            sizes in prop::collection::vec(0i64..20, 0..50),
            threshold in 1u32..25,
        ) {
            let kept = MinGroupSize::new(threshold).apply(sizes.clone(), |n| *n);
            prop_assert_eq!(kept.rows.len() + kept.suppressed, sizes.len());
            let shown = |n: i64| threshold == 1 || n >= i64::from(threshold);
            prop_assert!(kept.rows.iter().all(|n| shown(*n)));
            let expected: Vec<i64> = sizes.into_iter().filter(|n| shown(*n)).collect();
            prop_assert_eq!(kept.rows, expected);
        }
    }
}
