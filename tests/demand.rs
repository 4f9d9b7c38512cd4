//! Demand numbers for a hand-made set of statements, checked against values
//! computed by hand, and the chart of the same numbers.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use chrono::{Months, Utc};
use common::{error_code, json, TestApp};
use serde_json::{json, Value};

/// Birth date of someone who is `age` full years old today (UTC).
fn born(age: u32) -> chrono::NaiveDate {
    Utc::now()
        .date_naive()
        .checked_sub_months(Months::new(12 * age + 1))
        .unwrap()
}

/// Four residents of two towns and seven statements (see the expectations).
async fn fixture(app: &TestApp) -> i64 {
    let db = app.db().await;
    let import_id = common::insert_import(&db).await;
    let citizens: [(i32, &str, u32, Option<&str>); 4] = [
        (1, "Madrid", 20, Some("instagram")),
        (2, "Madrid", 30, Some("radio")),
        (3, "Sevilla", 70, None),
        (4, "Sevilla", 20, Some("instagram")),
    ];
    for (id, town, age, channel) in citizens {
        db.execute(
            "INSERT INTO citizens (import_id, citizen_id, town, street, building, apartment,
                                   name, birth_date, gender, channel)
             VALUES ($1, $2, $3, 'Calle Mayor', '1', 1, 'Resident', $4, 'female', $5)",
            &[&import_id, &id, &town, &born(age), &channel],
        )
        .await
        .unwrap();
    }
    let statements: [(&str, i32, &str, Option<&str>); 7] = [
        ("s1", 1, "rust", None),
        ("s2", 1, "rust", None),
        ("s3", 1, "go", Some("tiktok")),
        ("s4", 2, "rust", None),
        ("s5", 3, "rust", None),
        ("s6", 4, "go", None),
        ("s7", 4, "rust", None),
    ];
    for (offset, (id, citizen, course, channel)) in statements.into_iter().enumerate() {
        db.execute(
            "INSERT INTO statements (import_id, statement_id, citizen_id, course, channel, score,
                                     text, ts, kafka_partition, kafka_offset)
             VALUES ($1, $2, $3, $4, $5, 0.5, 'I want this course', now(), 0, $6)",
            &[
                &import_id,
                &id,
                &citizen,
                &course,
                &channel,
                &(offset as i64),
            ],
        )
        .await
        .unwrap();
    }
    // What a job does when it starts after statements were stored uncounted.
    db.execute(
        "SELECT count_statements($1, '{0}', $2)",
        &[&import_id, &vec![statements.len() as i64]],
    )
    .await
    .unwrap();
    import_id
}

async fn demand(app: &TestApp, import_id: i64, query: &str) -> Value {
    let (status, body) = json(
        app.get(&format!("/imports/{import_id}/demand?{query}"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{query}: {body}");
    body["data"].clone()
}

#[tokio::test]
async fn demand_matches_hand_computed_groups() {
    let app = TestApp::spawn().await;
    let import = fixture(&app).await;

    assert_eq!(
        demand(&app, import, "by=town").await,
        json!([
            {"town": "Madrid", "statements": 4, "residents": 2},
            {"town": "Sevilla", "statements": 3, "residents": 2},
        ])
    );
    assert_eq!(
        demand(&app, import, "by=age_group").await,
        json!([
            {"age_group": "18-24", "statements": 5, "residents": 2},
            {"age_group": "25-34", "statements": 1, "residents": 1},
            {"age_group": "65+", "statements": 1, "residents": 1},
        ])
    );
    // A statement's own channel wins over the resident's; none at all is "unknown".
    assert_eq!(
        demand(&app, import, "by=channel").await,
        json!([
            {"channel": "instagram", "statements": 4, "residents": 2},
            {"channel": "radio", "statements": 1, "residents": 1},
            {"channel": "tiktok", "statements": 1, "residents": 1},
            {"channel": "unknown", "statements": 1, "residents": 1},
        ])
    );
    // Keys come back in their fixed order whatever order `by` lists them in.
    assert_eq!(
        demand(&app, import, "by=channel,town").await,
        json!([
            {"town": "Madrid", "channel": "instagram", "statements": 2, "residents": 1},
            {"town": "Sevilla", "channel": "instagram", "statements": 2, "residents": 1},
            {"town": "Madrid", "channel": "radio", "statements": 1, "residents": 1},
            {"town": "Madrid", "channel": "tiktok", "statements": 1, "residents": 1},
            {"town": "Sevilla", "channel": "unknown", "statements": 1, "residents": 1},
        ])
    );
    assert_eq!(
        demand(&app, import, "by=town,age_group,channel,course&course=go").await,
        json!([
            {"town": "Madrid", "age_group": "18-24", "channel": "tiktok", "course": "go", "statements": 1, "residents": 1},
            {"town": "Sevilla", "age_group": "18-24", "channel": "instagram", "course": "go", "statements": 1, "residents": 1},
        ])
    );
}

#[tokio::test]
async fn custom_bins_and_filters() {
    let app = TestApp::spawn().await;
    let import = fixture(&app).await;
    assert_eq!(
        demand(&app, import, "by=age_group&age_bins=30").await,
        json!([
            {"age_group": "0-29", "statements": 5, "residents": 2},
            {"age_group": "30+", "statements": 2, "residents": 2},
        ])
    );
    assert_eq!(
        demand(&app, import, "by=town,course&channel=instagram").await,
        json!([
            {"town": "Madrid", "course": "rust", "statements": 2, "residents": 1},
            {"town": "Sevilla", "course": "go", "statements": 1, "residents": 1},
            {"town": "Sevilla", "course": "rust", "statements": 1, "residents": 1},
        ])
    );
    assert_eq!(
        demand(&app, import, "by=town&course=cobol").await,
        json!([])
    );
}

#[tokio::test]
async fn bad_parameters_are_400_with_the_allowed_values() {
    let app = TestApp::spawn().await;
    let import = fixture(&app).await;
    for (query, parameter) in [
        ("by=planet", "by"),
        ("", "by"),
        ("by=town,town", "by"),
        ("by=town&age_bins=30,20", "age_bins"),
        ("by=town&age_bins=abc", "age_bins"),
        // PostgreSQL refuses NUL in a parameter: these were 500s (schemathesis).
        ("by=town&channel=a%00b", "channel"),
        ("by=town&course=%00", "course"),
    ] {
        let (status, body) =
            json(app.get(&format!("/imports/{import}/demand?{query}")).await).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(error_code(&body), "bad_request");
        assert!(
            body["error"]["fields"][parameter].is_string(),
            "{query}: {body}"
        );
    }
    let (_, body) = json(
        app.get(&format!("/imports/{import}/demand?by=planet"))
            .await,
    )
    .await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("town, age_group, channel, course"));
    let (status, _) = json(
        app.get(&format!("/imports/{import}/demand?by=town&colour=red"))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = json(app.get("/imports/abc/demand?by=town").await).await;
    assert_eq!(status, 400);
    let (status, body) = json(app.get("/imports/999999/demand?by=town").await).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

/// Every text node of an SVG document (which must parse as XML).
fn svg_texts(svg: &str) -> Vec<String> {
    let document = roxmltree::Document::parse(svg).expect("the chart is well-formed XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    document
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

#[tokio::test]
async fn the_chart_is_svg_naming_every_group() {
    let app = TestApp::spawn().await;
    let import = fixture(&app).await;

    let response = app
        .get(&format!("/imports/{import}/demand.svg?by=town"))
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("image/svg+xml"));
    let texts = svg_texts(&response.text().await.unwrap());
    for town in ["Madrid", "Sevilla"] {
        assert!(
            texts.iter().any(|t| t == town),
            "{town} not named in {texts:?}"
        );
    }

    let response = app
        .get(&format!("/imports/{import}/demand.svg?by=town,channel"))
        .await;
    assert_eq!(response.status(), 200);
    let texts = svg_texts(&response.text().await.unwrap());
    for group in [
        "Madrid",
        "Sevilla",
        "instagram",
        "radio",
        "tiktok",
        "unknown",
    ] {
        assert!(
            texts.iter().any(|t| t == group),
            "{group} not named in {texts:?}"
        );
    }

    let (status, body) = json(
        app.get(&format!(
            "/imports/{import}/demand.svg?by=town,channel,course"
        ))
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"]["fields"]["by"].is_string());
}

/// `INSIKT_MIN_GROUP_SIZE`: groups of fewer residents are left out of the
/// JSON, the CSV and the chart, and counted.
#[tokio::test]
async fn small_groups_are_left_out_and_counted_in_json_csv_and_svg() {
    let app = TestApp::spawn_with(|config| config.min_group_size = 2).await;
    let import = fixture(&app).await;
    let path = format!("/imports/{import}/demand?by=town,course");
    let (status, body) = json(app.get(&path).await).await;
    assert_eq!(status, 200, "{body}");
    // Madrid/go and Sevilla/go have one resident each.
    assert_eq!(
        body,
        json!({"data": [
            {"town": "Madrid", "course": "rust", "statements": 3, "residents": 2},
            {"town": "Sevilla", "course": "rust", "statements": 2, "residents": 2},
        ], "suppressed": 2})
    );

    let response = app.get(&format!("{path}&format=csv")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(response.headers()["insikt-suppressed"], "2");
    assert_eq!(
        response.headers()["content-disposition"],
        format!("attachment; filename=\"import-{import}-demand.csv\"").as_str()
    );
    assert_eq!(
        response.text().await.unwrap(),
        "town,course,statements,residents\nMadrid,rust,3,2\nSevilla,rust,2,2\n"
    );

    let response = app
        .get(&format!("/imports/{import}/demand.svg?by=town,course"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["insikt-suppressed"], "2");
    let texts = svg_texts(&response.text().await.unwrap());
    assert!(!texts.iter().any(|t| t == "go"), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("2 small groups left out")),
        "{texts:?}"
    );

    // Off by default: every group, and a count of none.
    let open = TestApp::spawn().await;
    let import = fixture(&open).await;
    let (_, body) = json(
        open.get(&format!("/imports/{import}/demand?by=town,course"))
            .await,
    )
    .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 4);
    assert_eq!(body["suppressed"], 0);
    let response = open
        .get(&format!("/imports/{import}/demand?by=town&format=csv"))
        .await;
    assert_eq!(response.headers()["insikt-suppressed"], "0");
    let (status, body) = json(
        open.get(&format!("/imports/{import}/demand?by=town&format=xml"))
            .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    assert!(body["error"]["fields"]["format"].is_string(), "{body}");
}
