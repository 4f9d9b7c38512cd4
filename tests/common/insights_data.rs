//! A seeded sample of residents and statements with planted signals, for
//! the insights tests and benchmark (`examples/bench_insights.rs` includes
//! this file): the same seed and plan give the same sample.
//!
//! Every resident asks every course at one background pace, stationary in
//! time (statements spread uniformly over the weeks before `as_of`), and
//! three signals are planted on top:
//! - [`RISING`]: a course asked by most residents of one town and age
//!   group in the last 28 days, by few of them before;
//! - [`TINY_TOWN`]: three residents, all asking: the highest raw rate;
//! - [`LOW_SCORE`]: a course whose statements all score below 0.3.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};
use serde_json::{json, Value};

use super::citizens_data::Rng;

pub const COURSES: [&str; 6] = ["rust", "spanish", "data", "design", "welding", "astrology"];
/// Town weights of the residents (the tiny town apart).
pub const TOWNS: [(&str, u64); 4] = [
    ("Madrid", 35),
    ("Barcelona", 30),
    ("Sevilla", 20),
    ("Valencia", 15),
];
pub const CHANNELS: [&str; 4] = ["instagram", "tiktok", "radio", "billboard"];
/// The rising course, its town and its ages (full years on `as_of`).
pub const RISING: (&str, &str, std::ops::RangeInclusive<i32>) = ("welding", "Sevilla", 25..=34);
pub const TINY_TOWN: &str = "Aldea";
pub const LOW_SCORE: &str = "astrology";

/// What to generate.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub residents: u32,
    pub weeks: u32,
    /// Background statements per resident, course and week.
    pub weekly: f64,
    pub as_of: DateTime<Utc>,
}

/// One generated statement, as the tests count it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub citizen_id: u32,
    pub course: &'static str,
    pub ts: DateTime<Utc>,
    pub score: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Resident {
    pub citizen_id: u32,
    pub town: &'static str,
    pub age: i32,
}

#[derive(Debug, Clone)]
pub struct Sample {
    /// The body of `POST /imports`.
    pub import: Value,
    pub residents: Vec<Resident>,
    pub facts: Vec<Fact>,
}

impl Sample {
    /// The statements as `POST /imports/{id}/statements` takes them.
    pub fn statements(&self, seed: u64) -> impl Iterator<Item = Value> + '_ {
        self.facts.iter().enumerate().map(move |(i, f)| {
            let mut statement = json!({
                "statement_id": format!("g{seed}-{i}"),
                "citizen_id": f.citizen_id,
                "course": f.course,
                "text": "I would take this course",
                "ts": f.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            });
            if let Some(score) = f.score {
                statement["score"] = json!(score);
            }
            statement
        })
    }
}

/// The Monday 00:00 UTC starting the week of `now`.
pub fn monday_of(now: DateTime<Utc>) -> DateTime<Utc> {
    let day = now.date_naive();
    let monday = day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday()));
    monday.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

/// Someone `age` full years old on `on`, born `days` (< 365) later than
/// the earliest such birthday.
fn born(on: NaiveDate, age: i32, days: u64) -> NaiveDate {
    on.checked_sub_months(Months::new(12 * age as u32)).unwrap() - chrono::Days::new(days)
}

fn poisson(rng: &mut Rng, mean: f64) -> u32 {
    // Knuth's method: fine for the small means of a sample.
    let limit = (-mean).exp();
    let (mut k, mut p) = (0u32, 1.0f64);
    loop {
        p *= (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

fn uniform(rng: &mut Rng) -> f64 {
    (rng.next() >> 11) as f64 / (1u64 << 53) as f64
}

pub fn generate(plan: &Plan) -> Sample {
    let mut rng = Rng(plan.seed);
    let day = plan.as_of.date_naive();
    let start = plan.as_of - Duration::weeks(i64::from(plan.weeks));
    let span_ms = (plan.as_of - start).num_milliseconds() as u64;
    let at = |rng: &mut Rng, from: DateTime<Utc>, ms: u64| {
        from + Duration::milliseconds(rng.below(ms) as i64)
    };
    let mut residents = Vec::new();
    let mut citizens = Vec::new();
    for id in 0..plan.residents {
        let town = if id < 3 {
            TINY_TOWN
        } else {
            let mut pick = rng.below(100);
            TOWNS
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or("Madrid", |(t, _)| t)
        };
        let age = 18 + rng.below(53) as i32;
        let birth = born(day, age, rng.below(360));
        let male = rng.below(2) == 0;
        let mut citizen = json!({
            "citizen_id": id,
            "town": town,
            "street": "Calle Mayor",
            "building": format!("{}", 1 + rng.below(90)),
            "apartment": 1 + rng.below(200),
            "name": format!("Resident {id}"),
            "birth_date": format!("{:02}.{:02}.{:04}", birth.day(), birth.month(), birth.year()),
            "gender": if male { "male" } else { "female" },
            "relatives": [],
        });
        if rng.below(5) != 0 {
            citizen["channel"] = json!(CHANNELS[rng.below(CHANNELS.len() as u64) as usize]);
        }
        citizens.push(citizen);
        residents.push(Resident {
            citizen_id: id,
            town,
            age,
        });
    }
    let score = |rng: &mut Rng, course: &str| -> Option<f64> {
        if course == LOW_SCORE {
            return Some((1 + rng.below(30)) as f64 / 100.0);
        }
        // One in twenty statements comes without a score.
        (rng.below(20) != 0).then(|| (40 + rng.below(61)) as f64 / 100.0)
    };
    let mut facts = Vec::new();
    let mean = plan.weekly * f64::from(plan.weeks);
    for r in &residents {
        for course in COURSES {
            for _ in 0..poisson(&mut rng, mean) {
                let ts = at(&mut rng, start, span_ms);
                facts.push(Fact {
                    citizen_id: r.citizen_id,
                    course,
                    ts,
                    score: score(&mut rng, course),
                });
            }
        }
        let (rising, town, ages) = &RISING;
        if r.town == *town && ages.contains(&r.age) && uniform(&mut rng) < 0.7 {
            let window = plan.as_of - Duration::days(28);
            for _ in 0..1 + rng.below(3) {
                let ts = at(&mut rng, window, 28 * 86_400_000);
                facts.push(Fact {
                    citizen_id: r.citizen_id,
                    course: rising,
                    ts,
                    score: score(&mut rng, rising),
                });
            }
        }
        if r.town == TINY_TOWN {
            let ts = at(&mut rng, start, span_ms);
            facts.push(Fact {
                citizen_id: r.citizen_id,
                course: "spanish",
                ts,
                score: Some(0.9),
            });
        }
    }
    Sample {
        import: json!({ "citizens": citizens }),
        residents,
        facts,
    }
}
