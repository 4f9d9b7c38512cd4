//! The story the sample tells, for `insikt demo` to end with: a course the
//! catalogue does not offer (`data-analytics`) that Kazan's 18-24-year-olds
//! who came through tiktok ask for more and more over the sample's twelve
//! weeks. Kazan is a students' town here (more of its residents are 18-24,
//! and most of those came through tiktok); elsewhere the course is asked
//! for now and then, evenly over time: the noise around the story.

use chrono::{DateTime, Utc};

use super::tables::{AGES, COURSES};
use super::{Resident, Rng};

/// The cell the story plants, as the opportunities name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Story {
    pub course: &'static str,
    pub town: &'static str,
    pub age_group: &'static str,
    pub channel: &'static str,
}

pub const STORY: Story = Story {
    course: "data-analytics",
    town: "Kazan",
    age_group: "18-24",
    channel: "tiktok",
};

/// The story's age group, as an index into `AGES`.
const AGE: usize = 1;
/// The sample's statements spread over this many days before today.
pub const SPAN_DAYS: i64 = 84;
/// Of the story town's 18-24 residents, the percent who came through the
/// story's channel, and the percent of those who ask for the course.
const CHANNEL_PERCENT: usize = 75;
const ASK_PERCENT: usize = 70;

/// The courses the catalogue offers: all the sample's but the story's.
pub fn offered() -> Vec<&'static str> {
    COURSES
        .iter()
        .map(|c| c.0)
        .filter(|c| *c != STORY.course)
        .collect()
}

/// How much likelier age group `age` is in `town` (students in the story's).
pub(super) fn age_weight(town: &str, age: usize) -> u32 {
    let (_, _, weight, _) = AGES[age];
    if town == STORY.town && age == AGE {
        weight * 3
    } else {
        weight
    }
}

/// The story's channel for a resident of its town and age group, mostly.
pub(super) fn channel(rng: &mut Rng, town: &str, age: usize) -> Option<&'static str> {
    (town == STORY.town && age == AGE && rng.chance(CHANNEL_PERCENT)).then_some(STORY.channel)
}

/// The story's statements: `(resident index, when)`, at most `budget`.
/// Most of the cell's residents ask once or twice, at times whose density
/// grows as the fifth power of time: a trickle in the first weeks, nine in
/// ten of them in the last four.
pub(super) fn statements(
    rng: &mut Rng,
    residents: &[Resident],
    midnight: DateTime<Utc>,
    budget: usize,
) -> Vec<(usize, DateTime<Utc>)> {
    let span = (SPAN_DAYS * 86_400) as f64;
    let mut planted = Vec::new();
    for (i, r) in residents.iter().enumerate() {
        let in_cell =
            r.town == STORY.town && r.age_group == AGE && r.channel == Some(STORY.channel);
        if !in_cell || !rng.chance(ASK_PERCENT) {
            continue;
        }
        for _ in 0..1 + rng.below(2) {
            // t in (0, 1] with density 6t⁵ (t = 1 is today).
            let u = (1 + rng.below(1_000_000)) as f64 / 1_000_000.0;
            let ago = (span * (1.0 - u.powf(1.0 / 6.0))) as i64 + 1;
            planted.push((i, midnight - chrono::Duration::seconds(ago)));
        }
    }
    planted.truncate(budget);
    planted
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::super::{Plan, Sample};
    use super::*;

    #[test]
    fn the_story_is_a_cell_of_residents_enough_asking_more_and_more() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        let sample = Sample::generate(&Plan::default(), today);
        let cell: Vec<i32> = sample
            .residents
            .iter()
            .filter(|r| r.town == STORY.town && r.age_group == AGE)
            .filter(|r| r.channel == Some(STORY.channel))
            .map(|r| r.citizen_id)
            .collect();
        // More than the opportunities' default minimum population (20).
        assert!(cell.len() >= 40, "{}", cell.len());
        let midnight = today.and_hms_opt(0, 0, 0).unwrap().and_utc();
        let weeks_ago = |weeks: i64| midnight - chrono::Duration::weeks(weeks);
        let asked = |from: i64, to: i64| {
            sample
                .statements
                .iter()
                .filter(|s| s.course == STORY.course && cell.contains(&s.citizen_id))
                .filter(|s| s.ts >= weeks_ago(from) && s.ts < weeks_ago(to))
                .count()
        };
        // Over twelve weeks, each four more than the four before.
        let (early, middle, late) = (asked(12, 8), asked(8, 4), asked(4, 0));
        assert!(
            early < middle && 3 * middle < late,
            "{early} {middle} {late}"
        );
        // Elsewhere the course is noise, evenly over the weeks.
        let others = |from: i64, to: i64| {
            sample
                .statements
                .iter()
                .filter(|s| s.course == STORY.course && !cell.contains(&s.citizen_id))
                .filter(|s| s.ts >= weeks_ago(from) && s.ts < weeks_ago(to))
                .count() as f64
        };
        let (before, now) = (others(12, 4), others(4, 0));
        assert!(
            before > 0.0 && (now / (before / 2.0) - 1.0).abs() < 0.4,
            "{before} {now}"
        );
        assert!(!offered().contains(&STORY.course) && offered().contains(&"python"));
        assert!(sample
            .statements
            .iter()
            .all(|s| s.ts >= weeks_ago(12) && s.ts < midnight));
    }
}
