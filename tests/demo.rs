//! `insikt demo` against a fresh service: the demand it leaves is exactly
//! the generator's (every town, age group and channel; duplicates counted
//! once, bad records not at all), the bad records are exactly the dead
//! letters, and a second run adds nothing unless forced.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{json, streams, TestApp};
use insikt::cli::demo::{demo, DemoOptions, DemoOutcome, DemoReport};
use insikt::demo::{DemandKey, GroupDemand, Plan, STORY};
use serde_json::Value;

async fn run(app: &TestApp, force: bool, plan: Plan) -> (DemoOutcome, String) {
    let options = DemoOptions {
        url: Some(app.url("")),
        force,
        plan,
        timeout: Duration::from_secs(120),
        ..DemoOptions::default()
    };
    let mut out = Vec::new();
    let outcome = demo(&insikt::config::Config::from_env(), &options, &mut out)
        .await
        .expect("the demo runs");
    (outcome, String::from_utf8(out).unwrap())
}

fn loaded(outcome: DemoOutcome) -> Box<DemoReport> {
    match outcome {
        DemoOutcome::Loaded(report) => report,
        DemoOutcome::Skipped { imports } => panic!("skipped ({imports} imports)"),
    }
}

/// The service's own answer for the import, as the generator keys it.
async fn demand(app: &TestApp, import: i64) -> BTreeMap<DemandKey, GroupDemand> {
    let path = format!("/imports/{import}/demand?by=town,age_group,channel");
    let (status, body) = json(app.get(&path).await).await;
    assert_eq!(status, 200, "{body}");
    let text = |row: &Value, key: &str| row[key].as_str().unwrap().to_owned();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let key = (
                text(row, "town"),
                text(row, "age_group"),
                text(row, "channel"),
            );
            let counts = GroupDemand {
                statements: row["statements"].as_i64().unwrap(),
                residents: row["residents"].as_i64().unwrap(),
            };
            (key, counts)
        })
        .collect()
}

/// `(payload, reason)` of every dead letter of the import.
async fn dead_letters(app: &TestApp, import: i64) -> BTreeMap<String, String> {
    let path = format!("/imports/{import}/dead-letters?limit=1000");
    let (status, body) = json(app.get(&path).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|letter| {
            let text = |key: &str| letter[key].as_str().unwrap().to_owned();
            (text("payload"), text("reason"))
        })
        .collect()
}

async fn jobs(app: &TestApp) -> Vec<Value> {
    let (status, body) = json(app.get("/jobs").await).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_demo_leaves_exactly_the_generated_demand_and_dead_letters() {
    let app = TestApp::spawn_with(streams::configure).await;
    // As scripts/run.sh does: the airports first, so the demo can place towns.
    common::upload_real_airports(&app).await;
    let (outcome, printed) = run(&app, false, Plan::default()).await;
    let report = loaded(outcome);
    // Barcelona is in Spain and Venezuela in the airports file: the demo
    // fixes it through the API and says so.
    assert!(
        printed.contains("placed Barcelona in Spain (PUT "),
        "{printed}"
    );
    let (_, towns) = json(app.get("/towns?status=placed&limit=1000").await).await;
    let barcelona = towns["data"]["towns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["town"] == "Barcelona")
        .unwrap_or_else(|| panic!("{towns}"));
    assert_eq!(
        (&barcelona["how"], &barcelona["country"]),
        (&serde_json::json!("country"), &serde_json::json!("Spain"))
    );
    assert!(printed.contains("/insights/map.svg"), "{printed}");
    let sample = &report.sample;
    assert!(sample.duplicates() > 0 && !report.bad.is_empty());

    let expected = sample.expected_demand();
    let answered = demand(&app, report.import_id).await;
    assert_eq!(answered, expected);
    // Which is to say: every town, all seven age groups, every channel, and
    // each distinct statement once (no duplicate, no bad record).
    let towns: BTreeSet<&str> = answered.keys().map(|k| k.0.as_str()).collect();
    assert_eq!(towns, sample.towns());
    let groups: BTreeSet<&str> = answered.keys().map(|k| k.1.as_str()).collect();
    assert_eq!(groups.len(), 7, "{groups:?}");
    let channels: BTreeSet<&str> = answered.keys().map(|k| k.2.as_str()).collect();
    for channel in [
        "tiktok",
        "instagram",
        "telegram",
        "search",
        "billboard",
        "radio",
    ] {
        assert!(channels.contains(channel), "{channel}: {channels:?}");
    }
    let total: i64 = answered.values().map(|c| c.statements).sum();
    assert_eq!(total, sample.statements.len() as i64);
    assert_eq!(
        total,
        (sample.stream.len() - sample.duplicates()) as i64,
        "sent minus duplicates"
    );

    // Exactly the bad records, each refused for its own problem.
    let letters = dead_letters(&app, report.import_id).await;
    let payloads: BTreeSet<&String> = letters.keys().collect();
    let bad: BTreeSet<&String> = report.bad.iter().map(|b| &b.payload).collect();
    assert_eq!(payloads, bad);
    assert_eq!(letters.len(), report.bad.len(), "distinct payloads");
    for record in &report.bad {
        let reason = &letters[&record.payload];
        let expected = match record.problem {
            "cut-off JSON" => "payload: invalid JSON",
            "score is not a number" => "score",
            "unknown citizen" => "citizen_id",
            "no course" => "course",
            "another import's statement" => "foreign import",
            other => panic!("unexpected problem {other}"),
        };
        assert!(reason.starts_with(expected), "{record:?}: {reason}");
    }

    let (_, job) = json(app.get(&format!("/jobs/{}", report.job)).await).await;
    assert_eq!(job["data"]["statements_stored"], total);
    assert_eq!(job["data"]["dead_letters"], report.bad.len());
    assert_eq!(job["data"]["lag"], 0);

    // It ends with the answer: the story the sample plants is the first
    // opportunity, with its sentence, then the analyst's page.
    let first = &report.opportunities[0];
    let cell = ["course", "town", "age_group", "channel"].map(|k| first[k].as_str().unwrap());
    assert_eq!(
        cell,
        [STORY.course, STORY.town, STORY.age_group, STORY.channel],
        "{printed}"
    );
    assert_eq!(
        (&first["new_course"], &first["rising"]),
        (&serde_json::json!(true), &serde_json::json!(true)),
        "{first}\n{printed}"
    );
    assert!(first["population"].as_u64().unwrap() >= 20, "{first}");
    let why = first["why"].as_str().unwrap();
    assert!(
        why.starts_with("data-analytics, not offered yet: "),
        "{why}"
    );
    assert!(why.contains("nearest airport KZN "), "{why}");
    assert!(printed.contains(why), "{printed}");
    let page = app.url(&format!("/console#/imports/{}/insights", report.import_id));
    let page_at = printed.find(&page).unwrap_or_else(|| panic!("{printed}"));
    assert!(printed.find(why).unwrap() < page_at, "{printed}");

    // The report shows the top rows of the service's own answer, and where to look.
    assert_eq!(report.demand.len(), expected.len());
    let top = &report.demand[0];
    // Its first row, whatever the columns' padding: town, age group, channel, counts.
    let first_row = [
        top["town"].as_str().unwrap().to_owned(),
        top["age_group"].as_str().unwrap().to_owned(),
        top["channel"].as_str().unwrap().to_owned(),
        top["statements"].to_string(),
        top["residents"].to_string(),
    ];
    assert!(
        printed.lines().any(|l| l
            .split_whitespace()
            .eq(first_row.iter().map(String::as_str))),
        "{printed}"
    );
    for place in [
        format!(
            "/imports/{}/demand?by=town,age_group,channel",
            report.import_id
        ),
        format!("/imports/{}/demand.svg", report.import_id),
        format!("/jobs/{}", report.job),
        format!("/imports/{}/dead-letters", report.import_id),
        "/docs/".to_owned(),
    ] {
        assert!(printed.contains(&app.url(&place)), "{place}: {printed}");
    }

    // Again: nothing added. Forced: another import, with its own answer.
    let (outcome, printed) = run(&app, false, Plan::default()).await;
    assert!(
        matches!(outcome, DemoOutcome::Skipped { imports: 1 }),
        "{outcome:?}"
    );
    assert!(printed.contains("--force"), "{printed}");
    assert_eq!(jobs(&app).await.len(), 1);

    let small = Plan {
        seed: 7,
        residents: 40,
        statements: 300,
        bad_per_kind: 1,
    };
    let (outcome, _) = run(&app, true, small).await;
    let forced = loaded(outcome);
    assert_ne!(forced.import_id, report.import_id);
    assert_eq!(jobs(&app).await.len(), 2);
    assert_eq!(
        demand(&app, forced.import_id).await,
        forced.sample.expected_demand()
    );
    let letters = dead_letters(&app, forced.import_id).await;
    assert_eq!(letters.len(), forced.bad.len());
    // The first import is untouched.
    assert_eq!(demand(&app, report.import_id).await, expected);
}
