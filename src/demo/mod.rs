//! The sample `insikt demo` streams through a running service: a seeded,
//! deterministic import of residents (households of mutual relatives in
//! towns with airports, every age group, several advertising channels),
//! their statements over twelve weeks (courses skewed by town and age, some
//! sent twice, and one story: `story`) and a few bad records, with the
//! demand the service must answer for them.
//!
//! Pure data: nothing here talks to the service (that is `cli::demo`).

mod story;
mod tables;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::demand::AgeBins;
pub use story::{offered, Story, SPAN_DAYS, STORY};
pub use tables::PLACE_FIXES;
use tables::{
    AGES, CHANNELS, COURSES, FEMALE_NAMES, MALE_NAMES, STATEMENT_CHANNELS, STREETS, SURNAMES,
    TEXTS, TOWNS,
};

/// How big a sample to make, and from which seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub seed: u64,
    /// 1 to 10,000 (the largest import `POST /imports` takes).
    pub residents: usize,
    /// Distinct statements; duplicates come on top (one in fifty).
    pub statements: usize,
    /// Bad records of each kind (five kinds).
    pub bad_per_kind: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            seed: 2019,
            residents: 3000,
            statements: 20_000,
            bad_per_kind: 2,
        }
    }
}

/// One resident of the sample import.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    pub citizen_id: i32,
    pub town: &'static str,
    pub street: &'static str,
    pub building: String,
    pub apartment: i32,
    pub name: String,
    pub birth_date: NaiveDate,
    pub gender: &'static str,
    /// The channel that brought them; `None` is demand's `unknown`.
    pub channel: Option<&'static str>,
    pub relatives: Vec<i32>,
    /// Index into the default age groups (`0-17` … `65+`).
    age_group: usize,
}

impl Resident {
    /// The citizen as `POST /imports` takes it.
    pub fn to_json(&self) -> Value {
        let mut citizen = json!({
            "citizen_id": self.citizen_id,
            "town": self.town,
            "street": self.street,
            "building": self.building,
            "apartment": self.apartment,
            "name": self.name,
            "birth_date": self.birth_date.format("%d.%m.%Y").to_string(),
            "gender": self.gender,
            "relatives": self.relatives,
        });
        if let Some(channel) = self.channel {
            citizen["channel"] = json!(channel);
        }
        citizen
    }
}

/// One valid statement of the sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleStatement {
    pub statement_id: String,
    pub citizen_id: i32,
    pub course: &'static str,
    /// Its own channel, which wins over the resident's.
    pub channel: Option<&'static str>,
    pub score: f64,
    pub text: String,
    pub ts: DateTime<Utc>,
}

impl SampleStatement {
    /// The statement as `POST /imports/{id}/statements` takes it.
    pub fn to_json(&self) -> Value {
        let mut statement = json!({
            "statement_id": self.statement_id,
            "citizen_id": self.citizen_id,
            "course": self.course,
            "score": self.score,
            "text": self.text,
            "ts": self.ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        if let Some(channel) = self.channel {
            statement["channel"] = json!(channel);
        }
        statement
    }
}

/// A record the API would refuse, so it is produced straight to the
/// import's topic, as a client writing to Kafka itself could: the job
/// dead-letters it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The Kafka key (a citizen id, as the API keys records).
    pub key: String,
    pub payload: String,
    /// What is wrong with it, for people.
    pub problem: &'static str,
}

/// Statements and residents of one demand group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupDemand {
    pub statements: i64,
    pub residents: i64,
}

/// A generated sample; the same plan and day always give the same sample.
#[derive(Debug, Clone)]
pub struct Sample {
    pub plan: Plan,
    pub residents: Vec<Resident>,
    /// The distinct statements.
    pub statements: Vec<SampleStatement>,
    /// The order they are sent in, as indices into `statements`: a
    /// duplicate is an index sent again later (a client's retry).
    pub stream: Vec<usize>,
}

/// `(town, age_group, channel)`, demand's `by=town,age_group,channel` keys.
pub type DemandKey = (String, String, String);

impl Sample {
    /// Generates the sample of `plan`, with ages counted at `today` (UTC).
    /// Birthdays are kept at least three days from `today`, so a run that
    /// crosses midnight still sees every resident in the same age group.
    pub fn generate(plan: &Plan, today: NaiveDate) -> Self {
        let mut rng = Rng(plan.seed);
        let residents = residents(&mut rng, plan.residents.clamp(1, 10_000), today);
        let statements = statements(&mut rng, plan, &residents, today);
        let stream = stream(&mut rng, statements.len());
        Self {
            plan: plan.clone(),
            residents,
            statements,
            stream,
        }
    }

    /// Statements sent more than once (each extra copy counts).
    pub fn duplicates(&self) -> usize {
        self.stream.len() - self.statements.len()
    }

    /// The bad records for import `import_id`: cut-off JSON, a score that is
    /// not a number, an unknown citizen, a missing course, another import's
    /// statement; `plan.bad_per_kind` of each.
    pub fn bad_records(&self, import_id: i64) -> Vec<BadRecord> {
        let mut rng = Rng(self.plan.seed ^ 0xbad);
        let unknown = self.residents.len() as i64 + 1000;
        let mut records = Vec::new();
        for n in 0..self.plan.bad_per_kind {
            let citizen = self.residents[rng.below(self.residents.len())].citizen_id;
            let id = |kind: &str| format!("demo-{}-bad-{kind}-{n}", self.plan.seed);
            let base = |kind: &str| {
                json!({"statement_id": id(kind), "import_id": import_id, "citizen_id": citizen,
                       "course": "rust", "score": 0.5, "text": "sent around the API"})
            };
            let mut score = base("score");
            score["score"] = json!("high");
            let mut stranger = base("citizen");
            stranger["citizen_id"] = json!(unknown + n as i64);
            let mut no_course = base("course");
            if let Some(object) = no_course.as_object_mut() {
                object.remove("course");
            }
            let mut foreign = base("import");
            foreign["import_id"] = json!(import_id + 1);
            let cut = base("json").to_string();
            let kinds = [
                (cut[..cut.len() / 2].to_owned(), "cut-off JSON"),
                (score.to_string(), "score is not a number"),
                (stranger.to_string(), "unknown citizen"),
                (no_course.to_string(), "no course"),
                (foreign.to_string(), "another import's statement"),
            ];
            for (payload, problem) in kinds {
                records.push(BadRecord {
                    key: citizen.to_string(),
                    payload,
                    problem,
                });
            }
        }
        records
    }

    /// What `GET /imports/{id}/demand?by=town,age_group,channel` must answer
    /// for this sample (default age bins, ages at the `today` it was made
    /// for): a statement's channel is its own, else its resident's, else
    /// `unknown`; each distinct statement counts once.
    pub fn expected_demand(&self) -> BTreeMap<DemandKey, GroupDemand> {
        let bins = AgeBins::default();
        let by_id: BTreeMap<i32, &Resident> =
            self.residents.iter().map(|r| (r.citizen_id, r)).collect();
        let mut groups: BTreeMap<DemandKey, (i64, BTreeSet<i32>)> = BTreeMap::new();
        for statement in &self.statements {
            let resident = by_id[&statement.citizen_id];
            let channel = statement
                .channel
                .or(resident.channel)
                .unwrap_or("unknown")
                .to_owned();
            let age = bins.label(resident.age_group as i32);
            let group = groups
                .entry((resident.town.to_owned(), age, channel))
                .or_default();
            group.0 += 1;
            group.1.insert(resident.citizen_id);
        }
        groups
            .into_iter()
            .map(|(key, (statements, residents))| {
                let residents = residents.len() as i64;
                (
                    key,
                    GroupDemand {
                        statements,
                        residents,
                    },
                )
            })
            .collect()
    }

    /// The sample's towns.
    pub fn towns(&self) -> BTreeSet<&'static str> {
        self.residents.iter().map(|r| r.town).collect()
    }
}

/// SplitMix64: small, fast, seeded; plenty for sample data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// An index drawn with the given weights (at least one is positive).
    fn weighted(&mut self, weights: impl IntoIterator<Item = u32> + Clone) -> usize {
        let total: u64 = weights.clone().into_iter().map(u64::from).sum();
        let mut ticket = self.next() % total.max(1);
        for (i, weight) in weights.into_iter().enumerate() {
            if ticket < u64::from(weight) {
                return i;
            }
            ticket -= u64::from(weight);
        }
        0
    }
}

/// Households of one to four residents sharing an address, all relatives
/// of each other. The first households cycle through every town, age group
/// and channel, so a small sample still has each of them.
fn residents(rng: &mut Rng, count: usize, today: NaiveDate) -> Vec<Resident> {
    let mut residents: Vec<Resident> = Vec::with_capacity(count);
    let mut household = 0;
    while residents.len() < count {
        let size = (1 + rng.weighted([35, 35, 20, 10])).min(count - residents.len());
        let town = if household < TOWNS.len() {
            household
        } else {
            rng.weighted(TOWNS.iter().map(|t| t.1))
        };
        let street = STREETS[rng.below(STREETS.len())];
        let building = match rng.below(4) {
            0 => format!("{}{}", 1 + rng.below(80), ["A", "B", "C"][rng.below(3)]),
            _ => (1 + rng.below(120)).to_string(),
        };
        let apartment = 1 + rng.below(300) as i32;
        let first = residents.len() as i32 + 1;
        let members: Vec<i32> = (first..first + size as i32).collect();
        for (m, &citizen_id) in members.iter().enumerate() {
            let cycling = m == 0 && household < AGES.len().max(CHANNELS.len());
            let age_group = if cycling {
                household % AGES.len()
            } else {
                rng.weighted((0..AGES.len()).map(|a| story::age_weight(TOWNS[town].0, a)))
            };
            let (low, high, _, _) = AGES[age_group];
            let age = low + rng.below((high - low + 1) as usize) as u32;
            let channel = if cycling {
                Some(CHANNELS[household % CHANNELS.len()].0)
            } else if let Some(channel) = story::channel(rng, TOWNS[town].0, age_group) {
                Some(channel)
            } else if rng.chance(7) {
                None
            } else {
                Some(CHANNELS[rng.weighted(CHANNELS.iter().map(|c| c.1[age_group]))].0)
            };
            let female = rng.chance(50);
            let given = if female { FEMALE_NAMES } else { MALE_NAMES };
            let name = format!(
                "{} {}",
                given[rng.below(given.len())],
                SURNAMES[rng.below(SURNAMES.len())]
            );
            residents.push(Resident {
                citizen_id,
                town: TOWNS[town].0,
                street,
                building: building.clone(),
                apartment,
                name,
                birth_date: birth_date(rng, age, today),
                gender: if female { "female" } else { "male" },
                channel,
                relatives: members
                    .iter()
                    .copied()
                    .filter(|&r| r != citizen_id)
                    .collect(),
                age_group,
            });
        }
        household += 1;
    }
    residents
}

/// A birthday between 3 and 360 days before `today`'s anniversary, so the
/// resident is `age` full years old from three days before `today` to
/// three days after.
fn birth_date(rng: &mut Rng, age: u32, today: NaiveDate) -> NaiveDate {
    let anniversary = today
        .checked_sub_months(Months::new(12 * age))
        .unwrap_or(today);
    anniversary
        .checked_sub_days(Days::new(3 + rng.below(358) as u64))
        .unwrap_or(anniversary)
}

/// The story's statements first; then every resident asks at least once
/// (while there are statements enough); the rest go to residents by their
/// age group's activity, for courses weighted by age group and their town's
/// favourite, evenly over the twelve weeks.
fn statements(
    rng: &mut Rng,
    plan: &Plan,
    residents: &[Resident],
    today: NaiveDate,
) -> Vec<SampleStatement> {
    let activity: Vec<u32> = residents.iter().map(|r| AGES[r.age_group].3).collect();
    let cumulative: Vec<u64> = activity
        .iter()
        .scan(0u64, |sum, &a| {
            *sum += u64::from(a);
            Some(*sum)
        })
        .collect();
    let total = cumulative.last().copied().unwrap_or(1);
    let midnight = today.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    // The story first (a tenth of the statements at most), then the rest.
    let planted = story::statements(rng, residents, midnight, plan.statements / 10);
    let mut made: Vec<SampleStatement> = planted
        .iter()
        .enumerate()
        .map(|(i, &(r, ts))| {
            let course = STORY.course;
            SampleStatement {
                statement_id: format!("demo-{}-{i:06}", plan.seed),
                citizen_id: residents[r].citizen_id,
                course,
                channel: None,
                score: (60 + rng.below(41)) as f64 / 100.0,
                text: TEXTS[rng.below(TEXTS.len())].replace("{}", course),
                ts,
            }
        })
        .collect();
    let first = made.len();
    made.extend((first..plan.statements).map(|i| {
        let resident = if i - first < residents.len() {
            &residents[i - first]
        } else {
            let ticket = rng.next() % total;
            &residents[cumulative.partition_point(|&c| c <= ticket)]
        };
        let favourite = TOWNS
            .iter()
            .find(|t| t.0 == resident.town)
            .map_or("", |t| t.2);
        let course = COURSES[rng.weighted(COURSES.iter().map(|(name, base, by_age)| {
            base * by_age[resident.age_group] * if *name == favourite { 3 } else { 1 }
        }))]
        .0;
        let channel = rng
            .chance(12)
            .then(|| STATEMENT_CHANNELS[rng.below(STATEMENT_CHANNELS.len())]);
        let seconds = 1 + rng.below(SPAN_DAYS as usize * 86_400) as i64;
        SampleStatement {
            statement_id: format!("demo-{}-{i:06}", plan.seed),
            citizen_id: resident.citizen_id,
            course,
            channel,
            score: (30 + rng.below(71)) as f64 / 100.0,
            text: TEXTS[rng.below(TEXTS.len())].replace("{}", course),
            ts: midnight - chrono::Duration::seconds(seconds),
        }
    }));
    made
}

/// The sending order: every statement once, in order, and one in fifty
/// again somewhere after its first copy.
fn stream(rng: &mut Rng, count: usize) -> Vec<usize> {
    let mut again_after: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for _ in 0..count / 50 {
        let original = rng.below(count);
        let after = original + rng.below(count - original);
        again_after.entry(after).or_default().push(original);
    }
    let mut order = Vec::with_capacity(count + count / 50);
    for i in 0..count {
        order.push(i);
        if let Some(copies) = again_after.get(&i) {
            order.extend(copies);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_sample_and_another_seed_another() {
        let plan = Plan::default();
        let a = Sample::generate(&plan, today());
        let b = Sample::generate(&plan, today());
        assert_eq!(a.residents, b.residents);
        assert_eq!(a.statements, b.statements);
        assert_eq!(a.stream, b.stream);
        assert_eq!(a.bad_records(1), b.bad_records(1));
        let other = Sample::generate(
            &Plan {
                seed: 7,
                ..plan.clone()
            },
            today(),
        );
        assert_ne!(a.statements, other.statements);
        assert_eq!(a.residents.len(), plan.residents);
        assert_eq!(a.statements.len(), plan.statements);
    }

    #[test]
    fn every_age_group_channel_and_town_is_in_the_demand() {
        let bins = AgeBins::default();
        let all_groups: BTreeSet<String> = (0..=6).map(|b| bins.label(b)).collect();
        // The default plan and one far too small to get them by chance (40
        // residents make at least ten households, one per town).
        for plan in [
            Plan::default(),
            Plan {
                residents: 40,
                statements: 40,
                ..Plan::default()
            },
        ] {
            let expected = Sample::generate(&plan, today()).expected_demand();
            let groups: BTreeSet<String> = expected.keys().map(|k| k.1.clone()).collect();
            assert_eq!(groups, all_groups, "{plan:?}");
            let channels: BTreeSet<&str> = expected.keys().map(|k| k.2.as_str()).collect();
            for (channel, _) in CHANNELS {
                assert!(channels.contains(channel), "{channel} in {plan:?}");
            }
            let towns: BTreeSet<&str> = expected.keys().map(|k| k.0.as_str()).collect();
            assert_eq!(towns.len(), TOWNS.len(), "{plan:?}");
        }
        let expected = Sample::generate(&Plan::default(), today()).expected_demand();
        assert!(expected.keys().any(|k| k.2 == "unknown"));
        assert!(expected.keys().any(|k| k.2 == "email"));
    }

    #[test]
    fn ages_are_full_years_within_their_group_around_today() {
        let sample = Sample::generate(&Plan::default(), today());
        for resident in &sample.residents {
            let (low, high, _, _) = AGES[resident.age_group];
            for day in [today() - Days::new(2), today(), today() + Days::new(2)] {
                let age = day.years_since(resident.birth_date).unwrap();
                assert!((low..=high).contains(&age), "{resident:?} on {day}");
            }
        }
    }

    #[test]
    fn relatives_are_mutual_housemates() {
        let sample = Sample::generate(&Plan::default(), today());
        let by_id: BTreeMap<i32, &Resident> =
            sample.residents.iter().map(|r| (r.citizen_id, r)).collect();
        let mut with_relatives = 0;
        for resident in &sample.residents {
            with_relatives += usize::from(!resident.relatives.is_empty());
            for relative in &resident.relatives {
                let other = by_id[relative];
                assert!(other.relatives.contains(&resident.citizen_id));
                assert_eq!(
                    (other.town, other.street, other.apartment),
                    (resident.town, resident.street, resident.apartment)
                );
            }
        }
        assert!(with_relatives > sample.residents.len() / 2);
    }

    #[test]
    fn duplicates_follow_their_first_copy_and_demand_counts_each_once() {
        let sample = Sample::generate(&Plan::default(), today());
        assert_eq!(sample.duplicates(), sample.statements.len() / 50);
        let mut seen = BTreeSet::new();
        for &i in &sample.stream {
            // A copy comes only after the original was sent.
            assert!(seen.contains(&i) || i == seen.len(), "{i}");
            seen.insert(i);
        }
        let expected = sample.expected_demand();
        let total: i64 = expected.values().map(|c| c.statements).sum();
        assert_eq!(total, sample.statements.len() as i64);
        let ids: BTreeSet<&str> = sample
            .statements
            .iter()
            .map(|s| s.statement_id.as_str())
            .collect();
        assert_eq!(ids.len(), sample.statements.len());
    }

    #[test]
    fn courses_lean_towards_the_town_favourite_and_the_age() {
        let sample = Sample::generate(&Plan::default(), today());
        let by_id: BTreeMap<i32, &Resident> =
            sample.residents.iter().map(|r| (r.citizen_id, r)).collect();
        let share = |town: &str, course: &str| {
            let of_town: Vec<_> = sample
                .statements
                .iter()
                .filter(|s| by_id[&s.citizen_id].town == town)
                .collect();
            of_town.iter().filter(|s| s.course == course).count() as f64 / of_town.len() as f64
        };
        // Berlin's favourite is rust, Madrid's english.
        assert!(share("Berlin", "rust") > 1.5 * share("Madrid", "rust"));
        assert!(share("Madrid", "english") > 1.5 * share("Berlin", "english"));
        let old_gardening = sample
            .statements
            .iter()
            .filter(|s| s.course == "gardening")
            .filter(|s| by_id[&s.citizen_id].age_group == 6)
            .count();
        let young_gardening = sample
            .statements
            .iter()
            .filter(|s| s.course == "gardening")
            .filter(|s| by_id[&s.citizen_id].age_group == 1)
            .count();
        assert!(
            old_gardening > young_gardening,
            "{old_gardening} {young_gardening}"
        );
    }

    #[test]
    fn bad_records_are_each_refused_for_their_own_reason() {
        let sample = Sample::generate(&Plan::default(), today());
        let bad = sample.bad_records(5);
        assert_eq!(bad.len(), 5 * sample.plan.bad_per_kind);
        let payloads: BTreeSet<&str> = bad.iter().map(|b| b.payload.as_str()).collect();
        assert_eq!(payloads.len(), bad.len(), "distinct payloads");
        // Each is wrong in one way only, as the job reads a topic (where
        // `import_id` is required).
        for record in &bad {
            let Ok(value) = serde_json::from_str::<Value>(&record.payload) else {
                assert_eq!(record.problem, "cut-off JSON");
                continue;
            };
            let parsed = crate::statements::Statement::from_value(&value, None);
            match record.problem {
                "score is not a number" => assert_eq!(parsed.unwrap_err().field, "score"),
                "no course" => assert_eq!(parsed.unwrap_err().field, "course"),
                "unknown citizen" => {
                    let statement = parsed.unwrap();
                    assert_eq!(statement.import_id, 5);
                    assert!(statement.citizen_id > sample.residents.len() as i32);
                }
                "another import's statement" => assert_eq!(parsed.unwrap().import_id, 6),
                other => panic!("unexpected {other}"),
            }
        }
        for statement in &sample.statements[..100] {
            crate::statements::Statement::from_value(&statement.to_json(), Some(5)).unwrap();
        }
    }

    #[test]
    fn every_town_has_an_airport_in_the_bundled_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/airports.csv");
        let mut reader = csv::Reader::from_path(path).unwrap();
        let city = reader
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "city")
            .unwrap();
        let cities: BTreeSet<String> = reader
            .records()
            .map(|r| r.unwrap()[city].to_lowercase())
            .collect();
        for (town, _, _) in TOWNS {
            assert!(cities.contains(&town.to_lowercase()), "{town}");
        }
    }

    #[test]
    fn residents_are_citizens_the_api_takes() {
        let sample = Sample::generate(&Plan::default(), today());
        let body = json!({
            "citizens": sample.residents.iter().map(Resident::to_json).collect::<Vec<_>>()
        });
        let citizens = crate::citizens::parse::import(&body, today()).unwrap();
        crate::citizens::check_import(&citizens).unwrap();
    }
}
