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
/// grows as the cube of time (four in five of them in the last four weeks).
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
            // t in (0, 1] with density 4t³ (t = 1 is today).
            let u = (1 + rng.below(1_000_000)) as f64 / 1_000_000.0;
            let ago = (span * (1.0 - u.powf(0.25))) as i64 + 1;
            planted.push((i, midnight - chrono::Duration::seconds(ago)));
        }
    }
    planted.truncate(budget);
    planted
}
