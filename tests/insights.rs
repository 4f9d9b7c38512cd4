//! Insights end to end: imports and statements sent through the API, the
//! job storing them through Kafka into PostgreSQL, the answers read back.
//! A hand-made import checks every figure against scipy; a seeded sample
//! with planted signals checks that the answers find them (and nothing
//! else); the rest checks parameters, CSV, the catalogue, PATCH, a second
//! instance and the rebuild of statements counted by SQL.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "common/citizens_data.rs"]
mod citizens_data;
mod common;
#[path = "common/insights_data.rs"]
mod insights_data;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Datelike, Months, Utc};
use common::streams::{self, eventually};
use common::{error_code, json, TestApp};
use insights_data::{generate, monday_of, Plan, LOW_SCORE, RISING, TINY_TOWN};
use reqwest::Method;
use serde_json::{json, Value};

/// Posts `statements` in chunks and waits until the job stored all of them
/// and folded their counts (the segments are written in the same transactions).
async fn send(app: &TestApp, import: i64, statements: Vec<Value>) {
    let total = statements.len() as i64;
    for chunk in statements.chunks(5_000) {
        app.post_accepted(import, &json!(chunk)).await;
    }
    let db = app.db().await;
    eventually(
        "the statements to be stored",
        Duration::from_secs(120),
        || async { (streams::stored(&db, import).await == total).then_some(()) },
    )
    .await;
    streams::counts_match_statements(&db, import).await;
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = json(app.get(path).await).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["data"].clone()
}

/// Equal to 1e-9 relative.
fn close(actual: &Value, expected: f64) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{actual} is not a number"));
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1e-300),
        "{actual} is not {expected}"
    );
}

fn ddmmyyyy(date: chrono::NaiveDate) -> String {
    format!("{:02}.{:02}.{:04}", date.day(), date.month(), date.year())
}

/// Ten residents of two towns, two ages each; statements in two 28-day
/// windows before `as_of` (see the expectations in `figures_equal_scipys`).
async fn pinned(app: &TestApp, as_of: DateTime<Utc>) -> i64 {
    let born = |age: u32| {
        ddmmyyyy(
            as_of
                .date_naive()
                .checked_sub_months(Months::new(12 * age + 1))
                .unwrap(),
        )
    };
    let residents = [
        (1, "Alba", 20),
        (2, "Alba", 20),
        (3, "Alba", 30),
        (4, "Alba", 30),
        (5, "Bera", 20),
        (6, "Bera", 20),
        (7, "Bera", 20),
        (8, "Bera", 30),
        (9, "Bera", 30),
        (10, "Bera", 30),
    ];
    let citizens: Vec<Value> = residents
        .iter()
        .map(|(id, town, age)| {
            json!({"citizen_id": id, "town": town, "street": "Main", "building": "1", "apartment": 1,
                   "name": "Resident", "birth_date": born(*age), "gender": "female", "relatives": []})
        })
        .collect();
    let import = app.post_import(&json!({ "citizens": citizens })).await;
    let now = |days: i64| (as_of - chrono::Duration::days(days)).to_rfc3339();
    // rust: 1, 2, 3 now, 5 before; go: 6 now, 7, 8, 9 before.
    let asks = [
        (1, "rust", 3),
        (2, "rust", 5),
        (3, "rust", 10),
        (3, "rust", 11),
        (5, "rust", 40),
        (6, "go", 2),
        (7, "go", 30),
        (8, "go", 31),
        (9, "go", 50),
    ];
    let statements = asks
        .iter()
        .enumerate()
        .map(|(i, (citizen, course, days))| {
            json!({"statement_id": format!("p{i}"), "citizen_id": citizen, "course": course,
                   "score": 0.5, "ts": now(*days)})
        })
        .collect();
    send(app, import, statements).await;
    import
}

#[tokio::test]
async fn figures_equal_scipys() {
    let app = TestApp::spawn_with(streams::configure).await;
    let as_of = monday_of(Utc::now());
    let import = pinned(&app, as_of).await;
    let q = |path: &str| {
        format!(
            "/imports/{import}/insights/{path}&as_of={}",
            as_of.format("%Y-%m-%d")
        )
    };

    // Rust: Alba 3 of 4 asked (ages 20, 20, 30), Bera 1 of 6 (age 20). The
    // import's rust rates: 3/5 at 18-24, 1/5 at 25-34, so Alba expects
    // 2·0.6 + 2·0.2 = 1.6 askers and Bera 3·0.6 + 3·0.2 = 2.4.
    let rates = get(&app, &q("rates?by=town,course&course=rust")).await;
    let rows = rates["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rates}");
    let (alba, bera) = (&rows[0], &rows[1]);
    assert_eq!(
        (alba["town"].as_str(), bera["town"].as_str()),
        (Some("Alba"), Some("Bera"))
    );
    assert_eq!(
        (
            alba["population"].as_u64(),
            alba["askers"].as_u64(),
            alba["statements"].as_u64()
        ),
        (Some(4), Some(3), Some(4))
    );
    assert_eq!(
        (bera["population"].as_u64(), bera["askers"].as_u64()),
        (Some(6), Some(1))
    );
    assert_eq!(alba["new_course"], true);
    close(&alba["rate"], 0.75);
    // python3 -c "from scipy.stats import binomtest; r=binomtest(3,4).proportion_ci(method='wilson'); print(r.low, r.high)"
    close(&alba["rate_low"], 0.30064184258240184);
    close(&alba["rate_high"], 0.9544127391902995);
    // python3 -c "from scipy.stats import binomtest; r=binomtest(1,6).proportion_ci(method='wilson'); print(r.low, r.high)"
    close(&bera["rate_low"], 0.03005336974830669);
    close(&bera["rate_high"], 0.5635028221864702);
    close(&alba["expected"], 1.6);
    close(&bera["expected"], 2.4);
    close(&alba["ratio"], 1.875);
    // python3 -c "from scipy.stats import chi2; print(chi2.ppf(0.025, 6)/2/1.6, chi2.ppf(0.975, 8)/2/1.6)"
    close(&alba["ratio_low"], 0.38667007680975085);
    close(&alba["ratio_high"], 5.479545668588952);
    // python3 -c "from scipy.stats import chi2; print(chi2.ppf(0.025, 2)/2/2.4, chi2.ppf(0.975, 4)/2/2.4)"
    close(&bera["ratio_low"], 0.010549086660120782);
    close(&bera["ratio_high"], 2.3215180795578743);
    // python3 -c "from scipy.stats import poisson as P; print(min(1, 2*min(P.cdf(3, 1.6), P.sf(2, 1.6))))"
    close(&alba["p"], 0.433283020361474);
    // python3 -c "from scipy.stats import poisson as P; print(min(1, 2*min(P.cdf(1, 2.4), P.sf(0, 2.4))))"
    close(&bera["p"], 0.6168820823680049);
    // python3 -c "from scipy.stats import false_discovery_control as f; print(f([0.433283020361474, 0.6168820823680049]))"
    close(&alba["q"], 0.6168820823680049);
    close(&bera["q"], 0.6168820823680049);
    let totals = &rates["totals"];
    assert_eq!(
        (
            totals["population"].as_u64(),
            totals["askers"].as_u64(),
            totals["statements"].as_u64()
        ),
        (Some(10), Some(4), Some(5))
    );
    // python3 -c "from scipy.stats import binomtest; r=binomtest(4,10).proportion_ci(method='wilson'); print(r.low, r.high)"
    close(&totals["rate_low"], 0.16818032970623614);
    close(&totals["rate_high"], 0.6873262302663417);

    // Emerging: rust 3 askers now and 1 before, go 1 and 3: T1 = T0 = 4.
    let emerging = get(&app, &q("emerging?by=course&min_count=1&window=28d")).await;
    assert_eq!(
        (
            emerging["T1"].as_u64(),
            emerging["T0"].as_u64(),
            emerging["tested"].as_u64()
        ),
        (Some(4), Some(4), Some(2))
    );
    let rows = emerging["rows"].as_array().unwrap();
    let (rust, go) = (&rows[0], &rows[1]);
    assert_eq!(
        (
            rust["course"].as_str(),
            rust["current"].as_u64(),
            rust["previous"].as_u64()
        ),
        (Some("rust"), Some(3), Some(1))
    );
    close(&rust["ratio"], 3.0);
    // python3 -c "from scipy.stats import binomtest as b; print(b(3, 4, 0.5, alternative='greater').pvalue)"
    close(&rust["p"], 0.3125);
    // python3 -c "from scipy.stats import binomtest as b; r=b(3,4).proportion_ci(method='exact'); print(r.low/(1-r.low), r.high/(1-r.high))"
    close(&rust["ratio_low"], 0.2408802278292618);
    close(&rust["ratio_high"], 157.49208827480803);
    // python3 -c "from scipy.stats import binomtest as b; r=b(1,4).proportion_ci(method='exact'); print(r.low/(1-r.low), r.high/(1-r.high))"
    close(&go["ratio_low"], 0.006349525306027391);
    close(&go["ratio_high"], 4.151440776238428);
    // python3 -c "from scipy.stats import binomtest as b; print(b(1, 4, 0.5, alternative='greater').pvalue)"
    close(&go["p"], 0.9375);
    // python3 -c "from scipy.stats import false_discovery_control as f; print(f([0.3125, 0.9375]))"
    close(&rust["q"], 0.625);
    close(&go["q"], 0.9375);
}

/// `INSIKT_MIN_GROUP_SIZE`: groups of fewer residents are left out of rates,
/// trend and emerging after the statistics (q is the same as without the
/// setting) and counted in `suppressed` and the CSV's header.
#[tokio::test]
async fn small_groups_are_left_out_and_counted() {
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        config.min_group_size = 5;
    })
    .await;
    let as_of = monday_of(Utc::now());
    let import = pinned(&app, as_of).await;
    let q = |path: &str| {
        format!(
            "/imports/{import}/insights/{path}&as_of={}",
            as_of.format("%Y-%m-%d")
        )
    };

    // Alba has 4 residents, Bera 6: Alba is left out, Bera's figures are
    // those of `figures_equal_scipys`, q included, and the totals keep everyone.
    let (status, body) = json(app.get(&q("rates?by=town,course&course=rust")).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suppressed"], 1, "{body}");
    let rows = body["data"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!(rows[0]["town"], "Bera");
    close(&rows[0]["q"], 0.6168820823680049);
    assert_eq!(body["data"]["totals"]["population"], 10);

    let response = app
        .get(&q("rates?by=town,course&course=rust&format=csv"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["insikt-suppressed"], "1");
    let csv = response.text().await.unwrap();
    assert!(!csv.contains("Alba"), "{csv}");
    assert_eq!(csv.lines().count(), 2, "{csv}");

    let (status, body) = json(app.get(&q("trend?by=town&interval=week")).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suppressed"], 1, "{body}");
    let series = body["data"]["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{body}");
    assert_eq!(series[0]["town"], "Bera", "{body}");

    let (status, body) = json(app.get(&q("emerging?by=town&min_count=1&window=28d")).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suppressed"], 1, "{body}");
    assert!(body["data"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|row| row["town"] == "Bera"));

    // Off by default: both towns and a count of none.
    let (_, body) = json(app.get(&q("rates?by=town&course=rust")).await).await;
    assert_eq!(body["suppressed"], 1);
    let open = TestApp::spawn_with(streams::configure).await;
    let import = pinned(&open, as_of).await;
    let (_, body) = json(
        open.get(&format!(
            "/imports/{import}/insights/rates?by=town&course=rust&as_of={}",
            as_of.format("%Y-%m-%d")
        ))
        .await,
    )
    .await;
    assert_eq!(body["suppressed"], 0, "{body}");
    assert_eq!(body["data"]["rows"].as_array().unwrap().len(), 2);
}

/// The sample of the planted-signals test: ~1,200 residents, 8 weeks.
fn plan(as_of: DateTime<Utc>) -> Plan {
    Plan {
        seed: 28,
        residents: 1_200,
        weeks: 8,
        weekly: 0.02,
        as_of,
    }
}

#[tokio::test]
async fn planted_signals_are_found_and_nothing_else() {
    let app = TestApp::spawn_with(streams::configure).await;
    let as_of = monday_of(Utc::now());
    let plan = plan(as_of);
    let sample = generate(&plan);
    let import = app.post_import(&sample.import).await;
    send(&app, import, sample.statements(plan.seed).collect()).await;
    let day = as_of.format("%Y-%m-%d");
    let path = |route: &str| format!("/imports/{import}/insights/{route}&as_of={day}");

    // The rising course, town and age group is the first emerging row, and
    // the only one that is not luck.
    let emerging = get(&app, &path("emerging?by=course,town,age_group&window=28d")).await;
    let rows = emerging["rows"].as_array().unwrap();
    let (course, town, _) = RISING;
    assert_eq!(
        (
            rows[0]["course"].as_str(),
            rows[0]["town"].as_str(),
            rows[0]["age_group"].as_str()
        ),
        (Some(course), Some(town), Some("25-34")),
        "{emerging}"
    );
    assert!(rows[0]["q"].as_f64().unwrap() < 0.001, "{}", rows[0]);
    for row in &rows[1..] {
        assert!(
            row["q"].as_f64().unwrap() >= 0.05,
            "a false discovery: {row}"
        );
    }
    assert!(emerging["tested"].as_u64().unwrap() > 10, "{emerging}");

    // The tiny town tops the raw rates, but not their lower bounds.
    let by_rate = get(&app, &path("rates?by=town&sort=rate")).await;
    assert_eq!(by_rate["rows"][0]["town"], TINY_TOWN, "{by_rate}");
    assert_eq!(by_rate["rows"][0]["rate"], 1.0);
    let by_lower = get(&app, &path("rates?by=town")).await;
    assert_ne!(by_lower["rows"][0]["town"], TINY_TOWN, "{by_lower}");
    assert_eq!(by_lower["rows"].as_array().unwrap().len(), 5);

    // min_score removes the low-scored course (and nothing scored above it).
    let all = get(&app, &path("rates?by=course")).await;
    let courses = |answer: &Value| -> Vec<String> {
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["course"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(courses(&all).contains(&LOW_SCORE.to_owned()));
    let scored = get(&app, &path("rates?by=course&min_score=0.5")).await;
    assert!(
        !courses(&scored).contains(&LOW_SCORE.to_owned()),
        "{scored}"
    );
    assert_eq!(courses(&scored).len(), 5);
    let counted: u64 = sample
        .facts
        .iter()
        .filter(|f| f.score.is_some_and(|s| s >= 0.5))
        .count() as u64;
    assert_eq!(scored["totals"]["statements"].as_u64(), Some(counted));
    assert_eq!(
        all["totals"]["statements"].as_u64(),
        Some(sample.facts.len() as u64)
    );

    // The weekly trend counts exactly what was generated.
    let from = as_of - chrono::Duration::weeks(i64::from(plan.weeks));
    let trend = get(
        &app,
        &format!(
            "/imports/{import}/insights/trend?by=course&interval=week&from={}&to={}",
            from.format("%Y-%m-%d"),
            day
        ),
    )
    .await;
    let buckets = trend["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), plan.weeks as usize);
    let mut expected: BTreeMap<(String, usize), (u64, HashSet<u32>)> = BTreeMap::new();
    for f in &sample.facts {
        let week = ((f.ts - from).num_seconds() / (7 * 86_400)) as usize;
        let cell = expected.entry((f.course.to_owned(), week)).or_default();
        cell.0 += 1;
        cell.1.insert(f.citizen_id);
    }
    let series = trend["series"].as_array().unwrap();
    assert_eq!(series.len(), insights_data::COURSES.len());
    for s in series {
        let course = s["course"].as_str().unwrap();
        for week in 0..buckets.len() {
            let (n, askers) = expected
                .get(&(course.to_owned(), week))
                .map_or((0, 0), |(n, a)| (*n, a.len() as u64));
            assert_eq!(
                s["statements"][week].as_u64(),
                Some(n),
                "{course} week {week}"
            );
            assert_eq!(
                s["askers"][week].as_u64(),
                Some(askers),
                "{course} week {week}"
            );
        }
    }

    // CSV: the same rows in the same order, as an attachment.
    let response = app.get(&path("rates?by=town,course&format=csv")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(
        response.headers()["content-disposition"].to_str().unwrap(),
        format!("attachment; filename=\"import-{import}-rates.csv\"")
    );
    let text = response.text().await.unwrap();
    let json_rows = get(&app, &path("rates?by=town,course")).await;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(
        &header.iter().take(3).collect::<Vec<_>>(),
        &["town", "course", "new_course"]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let rows = json_rows["rows"].as_array().unwrap();
    assert_eq!(records.len(), rows.len());
    for (record, row) in records.iter().zip(rows) {
        assert_eq!(&record[0], row["town"].as_str().unwrap());
        assert_eq!(&record[1], row["course"].as_str().unwrap());
        assert_eq!(
            record[4].parse::<u64>().unwrap(),
            row["askers"].as_u64().unwrap()
        );
        // serde_json reads decimals to within an ulp (no float_roundtrip);
        // the CSV's text is read exactly.
        let (csv_p, json_p) = (
            record[13].parse::<f64>().unwrap(),
            row["p"].as_f64().unwrap(),
        );
        assert!(
            (csv_p - json_p).abs() <= 4.0 * f64::EPSILON * json_p,
            "{csv_p} {json_p}"
        );
    }

    // The segments hold every stored statement once, in a few merged segments.
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT COALESCE(sum(statements), 0)::bigint, count(*) FROM insight_segments WHERE import_id = $1",
            &[&import],
        )
        .await
        .unwrap();
    let (held, segments): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(held, sample.facts.len() as i64);
    assert!(segments < 20, "{segments} segments");

    // A second instance answers the same.
    let mut template = common::test_config(&app.database);
    streams::configure(&mut template);
    let mut config = streams::served_config(&app.database, &template);
    config.instance_id = Some("insights-second".into());
    let second = common::Served::start(config).await;
    let (status, other) = json(
        reqwest::get(second.url(&path("rates?by=town,age_group,channel,course&limit=10000")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        other["data"],
        get(
            &app,
            &path("rates?by=town,age_group,channel,course&limit=10000")
        )
        .await
    );
    second.stop().await;

    // A resident moved by PATCH counts in the new town at once.
    let moved = sample
        .residents
        .iter()
        .find(|r| r.town == "Madrid")
        .unwrap();
    let (status, body) = json(
        app.send_json(
            Method::PATCH,
            &format!("/imports/{import}/citizens/{}", moved.citizen_id),
            &json!({"town": TINY_TOWN}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let after = get(&app, &path("rates?by=town&sort=askers")).await;
    let tiny = after["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["town"] == TINY_TOWN)
        .unwrap()
        .clone();
    assert_eq!(tiny["population"].as_u64(), Some(4), "{after}");
}

#[tokio::test]
async fn bad_parameters_are_400_naming_them_and_unknown_imports_404() {
    let app = TestApp::spawn().await;
    let import = app
        .post_import(&json!({"citizens": [
            {"citizen_id": 1, "town": "A", "street": "s", "building": "1", "apartment": 1,
             "name": "N", "birth_date": "01.01.1990", "gender": "male", "relatives": []}
        ]}))
        .await;
    let cases = [
        ("rates?by=town,planet", "by"),
        ("rates?by=town,town", "by"),
        ("rates?by=,", "by"),
        ("rates?min_score=high", "min_score"),
        ("rates?from=yesterday", "from"),
        ("rates?from=2026-02-01&to=2026-01-01", "from"),
        ("rates?limit=0", "limit"),
        ("rates?limit=10001", "limit"),
        ("rates?sort=best", "sort"),
        ("rates?age_bins=30,20", "age_bins"),
        ("rates?course=a%00b", "course"),
        ("rates?format=xml", "format"),
        ("rates?as_of=soon", "as_of"),
        ("trend?interval=year", "interval"),
        (
            "trend?interval=day&from=2025-01-01&to=2026-03-01",
            "interval",
        ),
        ("trend?to=never", "to"),
        ("trend?limit=1001", "limit"),
        ("emerging?window=367d", "window"),
        ("emerging?window=28x", "window"),
        ("emerging?window=0d", "window"),
        ("emerging?min_count=0", "min_count"),
        ("emerging?min_score=1e999", "min_score"),
    ];
    for (query, parameter) in cases {
        let (status, body) = json(
            app.get(&format!("/imports/{import}/insights/{query}"))
                .await,
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(error_code(&body), "bad_request");
        assert!(
            body["error"]["fields"][parameter].is_string(),
            "{query}: {body}"
        );
    }
    // A parameter a route does not take is refused too.
    for query in [
        "rates?window=28d",
        "trend?sort=rate",
        "emerging?from=2026-01-01",
        "rates?colour=red",
    ] {
        let (status, _) = json(
            app.get(&format!("/imports/{import}/insights/{query}"))
                .await,
        )
        .await;
        assert_eq!(status, 400, "{query}");
    }
    for route in ["rates", "trend", "emerging"] {
        let (status, body) =
            json(app.get(&format!("/imports/999999/insights/{route}")).await).await;
        assert_eq!(status, 404, "{route}: {body}");
        let (status, _) = json(app.get(&format!("/imports/x/insights/{route}")).await).await;
        assert_eq!(status, 400);
        let response = app
            .request(
                Method::OPTIONS,
                &format!("/imports/{import}/insights/{route}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], "GET, OPTIONS");
    }
    // An import without statements answers empty, not an error.
    let rates = get(&app, &format!("/imports/{import}/insights/rates?by=town")).await;
    assert_eq!(rates["rows"][0]["askers"], 0);
    assert_eq!(rates["totals"]["population"], 1);
    let trend = get(&app, &format!("/imports/{import}/insights/trend")).await;
    assert_eq!(trend["series"], json!([]));
    // Nothing was written by any of it.
    let db = app.db().await;
    let written: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM insight_segments) + (SELECT count(*) FROM courses)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0);
}

#[tokio::test]
async fn the_catalogue_says_which_courses_are_new() {
    let app = TestApp::spawn_with(streams::configure).await;
    let as_of = monday_of(Utc::now());
    let import = pinned(&app, as_of).await;
    let rates_path = format!("/imports/{import}/insights/rates?by=course");
    let rates = || get(&app, &rates_path);
    let new_of = |answer: &Value, course: &str| -> Value {
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["course"] == course)
            .unwrap()["new_course"]
            .clone()
    };
    assert_eq!(new_of(&rates().await, "rust"), true);
    let put = |course: &str, body: Value| {
        let path = format!("/courses/{course}");
        let app = &app;
        async move { json(app.send_json(Method::PUT, &path, &body).await).await }
    };
    let (status, body) = put("rust", json!({"title": "Rust in a week", "offered": true})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["title"], "Rust in a week");
    let (status, _) = put("rust", json!({"offered": true})).await;
    assert_eq!(status, 200);
    let (status, _) = put("go", json!({"offered": false})).await;
    assert_eq!(status, 201);
    let answer = rates().await;
    assert_eq!(new_of(&answer, "rust"), false);
    assert_eq!(new_of(&answer, "go"), true, "not offered is new");
    let list = get(&app, "/courses").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[1]["course"], "rust");
    assert_eq!(list[1]["title"], Value::Null);

    for (body, field) in [
        (json!({"title": "x"}), None),
        (json!({"offered": "yes"}), None),
        (json!({"offered": true, "colour": 1}), None),
        (
            json!({"offered": true, "title": "t".repeat(1001)}),
            Some("title"),
        ),
    ] {
        let (status, reply) = put("rust", body).await;
        assert_eq!(status, 400, "{reply}");
        if let Some(field) = field {
            assert!(reply["error"]["fields"][field].is_string(), "{reply}");
        }
    }
    let (status, _) = put("%20", json!({"offered": true})).await;
    assert_eq!(status, 400);
    let response = app
        .request(Method::DELETE, "/courses/rust")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = app
        .request(Method::DELETE, "/courses/rust")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(new_of(&rates().await, "rust"), true);
    let response = app
        .request(Method::OPTIONS, "/courses/rust")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "PUT, DELETE, OPTIONS");
    let response = app
        .request(Method::OPTIONS, "/courses")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET, OPTIONS");
}

#[tokio::test]
async fn formulas_in_csv_cells_are_neutralised() {
    let app = TestApp::spawn_with(streams::configure).await;
    let town = "=HYPERLINK(\"http://evil.example\",\"x\")";
    let import = app
        .post_import(&json!({"citizens": [
            {"citizen_id": 1, "town": town, "street": "s", "building": "1", "apartment": 1,
             "name": "N", "birth_date": "01.01.1990", "gender": "male", "relatives": []}
        ]}))
        .await;
    send(
        &app,
        import,
        vec![json!({"statement_id": "a", "citizen_id": 1, "course": "-1+2", "score": -0.5})],
    )
    .await;
    let text = app
        .get(&format!(
            "/imports/{import}/insights/rates?by=town,course&format=csv"
        ))
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let record = reader.records().next().unwrap().unwrap();
    assert_eq!(&record[0], format!("'{town}"));
    assert_eq!(&record[1], "'-1+2");
    assert_eq!(&record[3], "1", "a number stays a number");
    let trend = app
        .get(&format!(
            "/imports/{import}/insights/trend?by=town&format=csv"
        ))
        .await;
    assert_eq!(
        trend.headers()["content-disposition"].to_str().unwrap(),
        format!("attachment; filename=\"import-{import}-trend.csv\"")
    );
    assert!(trend
        .text()
        .await
        .unwrap()
        .contains(&format!("'{}", town.replace('"', "\"\""))));
}

/// Statements counted by SQL (as fixtures and old versions did) are read
/// back from `statements` once, at the next request.
#[tokio::test]
async fn statements_counted_by_sql_are_rebuilt_from_statements() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1, 2, 3]).await;
    for (i, citizen) in [1, 1, 2].into_iter().enumerate() {
        db.execute(
            "INSERT INTO statements (import_id, statement_id, citizen_id, course, score, text, ts, \
                                     kafka_partition, kafka_offset) \
             VALUES ($1, $2, $3, 'rust', 0.5, 't', now(), 0, $4)",
            &[&import, &format!("s{i}"), &citizen, &(i as i64)],
        )
        .await
        .unwrap();
    }
    db.execute("SELECT count_statements($1, '{0}', '{3}')", &[&import])
        .await
        .unwrap();
    let rates = get(&app, &format!("/imports/{import}/insights/rates?by=course")).await;
    assert_eq!(rates["rows"][0]["askers"], 2);
    assert_eq!(rates["rows"][0]["statements"], 3);
    let rebuilt: bool = db
        .query_one(
            "SELECT rebuild FROM insight_state WHERE import_id = $1",
            &[&import],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!rebuilt);
}

/// A restarted instance answers ready only once the imports asked lately
/// are loaded, so the first ask a load balancer sends it is not a cold one.
#[tokio::test]
async fn a_restarted_instance_is_ready_with_the_imports_asked_lately_loaded() {
    let app = TestApp::spawn_with(streams::configure).await;
    let import = pinned(&app, monday_of(Utc::now())).await;
    // Asking marks the import as asked lately.
    get(&app, &format!("/imports/{import}/insights/rates?by=town")).await;

    // Hold the load back: it reads the course catalogue, which a
    // transaction here keeps locked (the plan of what to load does not).
    let mut blocker = app.db().await;
    let lock = blocker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE courses IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let mut template = common::test_config(&app.database);
    streams::configure(&mut template);
    let mut config = streams::served_config(&app.database, &template);
    config.instance_id = Some("insights-restarted".into());
    let restarted = common::Served::start(config).await;
    let client = reqwest::Client::new();
    let readyz = || async {
        let reply = client.get(restarted.url("/readyz")).send().await.unwrap();
        let status = reply.status().as_u16();
        (status, reply.json::<Value>().await.unwrap())
    };
    // Not ready while its import is loading; PostgreSQL and the broker are up.
    for _ in 0..10 {
        let (status, body) = readyz().await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["fields"]["insights"], "loading", "{body}");
        assert_eq!(body["error"]["fields"]["postgres"], "ok", "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    lock.rollback().await.unwrap();

    let ready = eventually(
        "the restarted instance to be ready",
        Duration::from_secs(30),
        || async {
            let (status, body) = readyz().await;
            (status == 200).then_some(body)
        },
    )
    .await;
    assert_eq!(ready["data"]["checks"]["insights"], "ok", "{ready}");
    assert_eq!(ready["data"]["insights"]["planned"], 1, "{ready}");
    assert_eq!(ready["data"]["insights"]["loaded"], 1, "{ready}");
    restarted.stop().await;
}
