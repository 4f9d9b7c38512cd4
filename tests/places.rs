//! Places end to end, with the real airports file (data/airports.csv, 7,698
//! rows) uploaded through the API: the placing rule on the names that are
//! ambiguous in it (London, Paris, Barcelona, Valencia), fixes through
//! `PUT`/`DELETE /towns/{name}`, airports that move their towns, `near`
//! around MAD, and the map as SVG (parsed, and shown in headless Chromium).
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{Months, Utc};
use common::browser::{target_file, Browser};
use common::streams::{self, eventually};
use common::{error_code, json, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// The app with the real airports file uploaded, and statements enabled.
async fn app_with_airports() -> TestApp {
    app_with_airports_and(|_| {}).await
}

/// Like [`app_with_airports`], with the configuration adjusted by `adjust`.
async fn app_with_airports_and(adjust: impl FnOnce(&mut insikt::config::Config)) -> TestApp {
    // A 500's cause, in the output of a failed test.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("error")
        .try_init();
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        adjust(config);
    })
    .await;
    let csv = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/airports.csv"))
        .expect("data/airports.csv");
    let (status, body) = json(
        app.request(Method::POST, "/airports/upload")
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["inserted"], 7698);
    app
}

/// An import with `residents` people in each town (ages 20 to 59); the
/// first `askers` of each ask for `rust` two days ago. Waits until the
/// statements are stored. The import's id.
async fn import(app: &TestApp, towns: &[(&str, u32, u32)]) -> i64 {
    let today = Utc::now().date_naive();
    let mut citizens = Vec::new();
    let mut asking = Vec::new();
    let mut id = 0u32;
    for (town, residents, askers) in towns {
        for i in 0..*residents {
            id += 1;
            let born = today
                .checked_sub_months(Months::new(12 * (20 + (id * 7) % 40) + 1))
                .unwrap();
            citizens.push(json!({
                "citizen_id": id, "town": town, "street": "Main", "building": "1",
                "apartment": 1, "name": "Resident", "birth_date": born.format("%d.%m.%Y").to_string(),
                "gender": if id % 2 == 0 { "female" } else { "male" }, "relatives": []
            }));
            if i < *askers {
                asking.push(id);
            }
        }
    }
    let import_id = app.post_import(&json!({ "citizens": citizens })).await;
    let ts = (Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let statements: Vec<Value> = asking
        .iter()
        .map(|c| {
            json!({"statement_id": format!("s{c}"), "citizen_id": c, "course": "rust",
                   "score": 0.8, "ts": ts})
        })
        .collect();
    if !statements.is_empty() {
        app.post_accepted(import_id, &json!(statements)).await;
        // Stored and counted: the insights answer with every statement.
        let total = statements.len() as u64;
        let totals = format!("/imports/{import_id}/insights/rates?by=town&limit=1");
        eventually(
            "the statements to be counted",
            Duration::from_secs(120),
            || async {
                let (_, body) = json(app.get(&totals).await).await;
                (body["data"]["totals"]["statements"].as_u64() == Some(total)).then_some(())
            },
        )
        .await;
    }
    import_id
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = json(app.get(path).await).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["data"].clone()
}

async fn put(app: &TestApp, town: &str, body: Value) -> (u16, Value) {
    json(
        app.send_json(Method::PUT, &format!("/towns/{town}"), &body)
            .await,
    )
    .await
}

/// Fails unless `body` is what the service's OpenAPI document says
/// `method path` answers with `status`.
async fn documented(app: &TestApp, method: &str, path: &str, status: u16, body: &Value) {
    let (_, document) = json(app.get("/openapi.json").await).await;
    let schema = common::schema::response_schema(&document, method, path, status);
    if let Err(why) = common::schema::conforms(&document, schema, body) {
        panic!("{method} {path} {status}: {why}\n{body}");
    }
}

/// The town called `name` in a list of towns.
fn town<'a>(towns: &'a Value, name: &str) -> &'a Value {
    towns
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["town"] == name)
        .unwrap_or_else(|| panic!("no {name} in {towns}"))
}

/// Metres between two points on the WGS84 spheroid, by PostGIS.
async fn metres(app: &TestApp, (lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    app.db()
        .await
        .query_one(
            "SELECT ST_Distance(ST_MakePoint($2, $1)::geography, ST_MakePoint($4, $3)::geography)",
            &[&lat1, &lon1, &lat2, &lon2],
        )
        .await
        .unwrap()
        .get(0)
}

fn position(place: &Value) -> (f64, f64) {
    (
        place["latitude"].as_f64().unwrap(),
        place["longitude"].as_f64().unwrap(),
    )
}

async fn fixes(app: &TestApp) -> i64 {
    app.db()
        .await
        .query_one("SELECT count(*) FROM town_places", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn towns_are_placed_by_the_country_with_most_airports_and_ties_wait_for_a_fix() {
    let app = app_with_airports().await;
    let import_id = import(
        &app,
        &[
            ("London", 2, 0),
            ("Valencia", 1, 0),
            ("Barcelona", 1, 0),
            ("Atlantis", 1, 0),
        ],
    )
    .await;
    let towns = get(&app, "/towns").await["towns"].clone();
    assert_eq!(towns.as_array().unwrap().len(), 4, "{towns}");

    // London: 6 airports in the United Kingdom, 2 in the United States, 1 in Canada.
    let london = town(&towns, "London");
    assert_eq!(london["status"], "placed");
    assert_eq!(london["how"], "airports");
    assert_eq!(london["country"], "United Kingdom");
    assert_eq!(london["airports"].as_array().unwrap().len(), 6, "{london}");
    assert_eq!(
        london["candidates"][0],
        json!({"country": "United Kingdom", "airports": 6})
    );
    assert_eq!(london["imports"], 1);
    let off = metres(&app, position(london), (51.5, -0.1)).await;
    assert!(off < 60_000.0, "London is {off} m from (51.5, -0.1)");

    // Valencia and Barcelona: one airport in Spain, one in Venezuela.
    for name in ["Valencia", "Barcelona"] {
        let tie = town(&towns, name);
        assert_eq!(tie["status"], "ambiguous", "{tie}");
        assert!(tie["latitude"].is_null() && tie["how"].is_null(), "{tie}");
        let countries: HashSet<&str> = tie["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["country"].as_str().unwrap())
            .collect();
        assert_eq!(countries, HashSet::from(["Spain", "Venezuela"]));
        assert!(
            tie["why"].as_str().unwrap().contains("PUT /towns/"),
            "{tie}"
        );
    }
    let atlantis = town(&towns, "Atlantis");
    assert_eq!(atlantis["status"], "unplaced");
    assert_eq!(atlantis["airports"], json!([]));

    // The filter and the pages.
    let ambiguous = get(&app, "/towns?status=ambiguous").await;
    assert_eq!(ambiguous["towns"].as_array().unwrap().len(), 2);
    let page = get(&app, "/towns?limit=3").await;
    assert_eq!(page["towns"].as_array().unwrap().len(), 3);
    assert_eq!(page["next_after"], "London");
    let rest = get(&app, "/towns?limit=3&after=London").await;
    assert_eq!(rest["towns"][0]["town"], "Valencia");
    assert!(rest["next_after"].is_null());

    // A fix by country (names match case-insensitively); first 201, then 200.
    let response = app
        .send_json(Method::PUT, "/towns/valencia", &json!({"country": "spain"}))
        .await;
    assert_eq!(response.headers()["location"], "/towns/valencia");
    let (status, body) = json(response).await;
    assert_eq!(status, 201, "{body}");
    let valencia = &body["data"];
    assert_eq!(
        (&valencia["status"], &valencia["how"], &valencia["country"]),
        (&json!("placed"), &json!("country"), &json!("Spain"))
    );
    let off = metres(&app, position(valencia), (39.4893, -0.481625)).await;
    assert!(off < 1.0, "Valencia is not at VLC: {off} m");
    let (status, body) = put(&app, "Valencia", json!({"country": "Spain"})).await;
    assert_eq!(status, 200, "{body}");
    documented(&app, "put", "/towns/{name}", 200, &body).await;

    // Coordinates replace a country.
    let (status, body) = put(
        &app,
        "Barcelona",
        json!({"latitude": 41.39, "longitude": 2.17}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["how"], "coordinates");
    assert_eq!(position(&body["data"]), (41.39, 2.17));
    assert_eq!(fixes(&app).await, 2);

    // Refused fixes write nothing and name what is wrong.
    let refusals = [
        ("Barcelona", json!({"country": "France"}), "country"),
        ("Atlantis", json!({"country": "Greece"}), "country"),
        (
            "Barcelona",
            json!({"latitude": 91, "longitude": 2}),
            "latitude",
        ),
        (
            "Barcelona",
            json!({"latitude": 41, "longitude": "east"}),
            "longitude",
        ),
        ("Barcelona", json!({"latitude": 41}), "longitude"),
        (
            "Barcelona",
            json!({"country": "Spain", "latitude": 41, "longitude": 2}),
            "country",
        ),
        ("Barcelona", json!({"country": "a\u{0}b"}), "country"),
        ("Barcelona", json!({"country": "x".repeat(300)}), "country"),
        ("a%00b", json!({"country": "Spain"}), "name"),
        (&"x".repeat(300), json!({"country": "Spain"}), "name"),
    ];
    for (name, body, field) in refusals {
        let (status, reply) = put(&app, name, body.clone()).await;
        assert_eq!(
            (status, error_code(&reply)),
            (400, "validation_failed"),
            "{body}: {reply}"
        );
        assert!(
            reply["error"]["fields"][field].is_string(),
            "{field}: {reply}"
        );
    }
    let (_, reply) = put(&app, "Barcelona", json!({"country": "France"})).await;
    let message = reply["error"]["fields"]["country"].as_str().unwrap();
    assert!(
        message.contains("Spain (1)") && message.contains("Venezuela (1)"),
        "{message}"
    );
    assert_eq!(fixes(&app).await, 2);
    let (_, listed) = json(app.get("/towns").await).await;
    documented(&app, "get", "/towns", 200, &listed).await;
    let still = get(&app, "/towns?after=Atlantis&limit=1").await;
    assert_eq!(still["towns"][0]["how"], "coordinates");

    // The import's towns and airports follow the same rule, and say why.
    let airports = get(&app, &format!("/imports/{import_id}/towns/airports")).await;
    let london = town(&airports, "London");
    let chosen: Vec<bool> = london["airports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["chosen"].as_bool().unwrap())
        .collect();
    assert_eq!(chosen.len(), 9);
    assert_eq!(chosen.iter().filter(|c| **c).count(), 6);
    assert!(
        london["why"].as_str().unwrap().contains("United Kingdom"),
        "{london}"
    );
    assert_eq!(town(&airports, "Valencia")["how"], "country");

    // DELETE gives the town back to the rule; a second DELETE finds no fix.
    let response = app
        .request(Method::DELETE, "/towns/VALENCIA")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, body) = json(
        app.request(Method::DELETE, "/towns/Valencia")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let towns = get(&app, "/towns").await["towns"].clone();
    assert_eq!(town(&towns, "Valencia")["status"], "ambiguous");
    assert_eq!(fixes(&app).await, 1);

    // Each accepted change left one audit row; the refusals none.
    let audit: Vec<(String, String, Value)> = app
        .db()
        .await
        .query(
            "SELECT method, outcome, detail FROM audit WHERE route = '/towns/{name}' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let outcomes: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|(m, o, d)| (m.as_str(), o.as_str(), d["town"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("PUT", "created", "valencia"),
            ("PUT", "updated", "Valencia"),
            ("PUT", "created", "Barcelona"),
            ("DELETE", "deleted", "VALENCIA"),
        ]
    );

    // Every route of places says what it allows.
    for (path, allow) in [
        ("/towns", "GET, OPTIONS"),
        ("/towns/Valencia", "PUT, DELETE, OPTIONS"),
        ("/imports/1/insights/near", "GET, OPTIONS"),
        ("/imports/1/insights/map.svg", "GET, OPTIONS"),
    ] {
        let response = app.request(Method::OPTIONS, path).send().await.unwrap();
        assert_eq!(response.status(), 204, "{path}");
        assert_eq!(response.headers()["allow"], allow, "{path}");
    }
}

/// `GET /airports/{id}/delete`: the soft delete.
async fn soft_delete(app: &TestApp, id: i64) {
    let (status, body) = json(app.get(&format!("/airports/{id}/delete")).await).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn soft_deleted_and_edited_airports_move_their_town_at_once() {
    let app = app_with_airports().await;
    import(&app, &[("Paris", 1, 0)]).await;
    let paris = |towns: Value| town(&towns["towns"], "Paris").clone();
    let before = paris(get(&app, "/towns").await);
    assert_eq!(before["country"], "France");
    assert_eq!(before["airports"].as_array().unwrap().len(), 3);
    let ids: Vec<i64> = before["airports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();

    // One French airport fewer: still France (2 against 1), another mean.
    soft_delete(&app, ids[0]).await;
    let two = paris(get(&app, "/towns").await);
    assert_eq!(two["airports"].as_array().unwrap().len(), 2);
    assert_ne!(position(&two), position(&before));
    // A tie with the United States (Cox Field): ambiguous.
    soft_delete(&app, ids[1]).await;
    assert_eq!(paris(get(&app, "/towns").await)["status"], "ambiguous");
    // The last French one gone: Paris, Texas.
    soft_delete(&app, ids[2]).await;
    let texas = paris(get(&app, "/towns").await);
    assert_eq!(texas["country"], "United States");
    let off = metres(&app, position(&texas), (33.6366, -95.4508)).await;
    assert!(off < 1.0, "{texas}");

    // Editing the airport moves the town too.
    let cox = texas["airports"][0]["id"].as_i64().unwrap();
    let (status, body) = json(
        app.send_json(
            Method::PATCH,
            &format!("/airports/{cox}"),
            &json!({"latitude": 34.0}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let moved = paris(get(&app, "/towns").await);
    assert!(
        (moved["latitude"].as_f64().unwrap() - 34.0).abs() < 1e-9,
        "{moved}"
    );
}

#[tokio::test]
async fn near_mad_holds_madrid_and_after_the_fix_valencia() {
    let app = app_with_airports().await;
    let import_id = import(
        &app,
        &[
            ("Madrid", 10, 4),
            ("Valencia", 5, 1),
            ("Barcelona", 6, 3),
            ("Lisbon", 4, 2),
            ("Atlantis", 3, 1),
        ],
    )
    .await;
    let path = format!("/imports/{import_id}/insights/near?airport=mad&radius_km=400");
    let near = get(&app, &path).await;
    assert_eq!(near["center"]["airport"]["iata"], "MAD");
    let names = |near: &Value| -> Vec<String> {
        near["towns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["town"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&near), ["Madrid"]);
    let madrid = &near["towns"][0];
    assert_eq!(
        (&madrid["population"], &madrid["askers"]),
        (&json!(10), &json!(4))
    );
    // Madrid's four airports' mean is a few km from Barajas.
    let km = madrid["distance_km"].as_f64().unwrap();
    assert!(km > 0.0 && km < 30.0, "{madrid}");
    assert_eq!(km, (km * 10.0).round() / 10.0);
    // Rate and interval are the insights' own, by town.
    let rates = get(
        &app,
        &format!("/imports/{import_id}/insights/rates?by=town&limit=100"),
    )
    .await;
    let row = rates["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["town"] == "Madrid")
        .unwrap_or_else(|| panic!("{rates}"));
    for key in ["rate", "rate_low", "rate_high", "ratio"] {
        assert_eq!(madrid[key], row[key], "{key}: {madrid} against {row}");
    }
    // The towns without a place are apart, never silently dropped.
    let apart: Vec<(&str, &str)> = near["not_placed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["town"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        apart,
        [
            ("Atlantis", "unplaced"),
            ("Barcelona", "ambiguous"),
            ("Valencia", "ambiguous")
        ]
    );
    assert_eq!(near["outside"], 1, "Lisbon is beyond 400 km");
    assert_eq!(near["totals"]["askers"], 4);

    // Fixed to Spain, Valencia is in; Barcelona (fixed too) is beyond 400 km.
    for town in ["Valencia", "Barcelona"] {
        assert_eq!(put(&app, town, json!({"country": "Spain"})).await.0, 201);
    }
    let (_, whole) = json(app.get(&path).await).await;
    documented(&app, "get", "/imports/{id}/insights/near", 200, &whole).await;
    let near = get(&app, &path).await;
    assert_eq!(names(&near), ["Madrid", "Valencia"]);
    // For the opportunities: each placed town's nearest airport with a code.
    let pool = insikt::db::pool(&app.database.url, 1).unwrap();
    let asked = ["Valencia", "Madrid", "Atlantis"].map(str::to_owned);
    let nearest = insikt::places::nearest_airports(&pool, &asked)
        .await
        .unwrap();
    assert_eq!(nearest.len(), 2, "{nearest:?}");
    assert_eq!(
        (
            nearest["Valencia"].iata.as_str(),
            nearest["Valencia"].distance_km
        ),
        ("VLC", 0.0)
    );
    assert!(
        ["MAD", "TOJ", "ECV"].contains(&nearest["Madrid"].iata.as_str()),
        "{nearest:?}"
    );
    assert!(nearest["Madrid"].distance_km < 30.0, "{nearest:?}");
    let valencia_km = near["towns"][1]["distance_km"].as_f64().unwrap();
    assert!((250.0..320.0).contains(&valencia_km), "{near}");
    assert_eq!(near["outside"], 2);
    let totals = &near["totals"];
    assert_eq!(
        (&totals["towns"], &totals["population"], &totals["askers"]),
        (&json!(2), &json!(15), &json!(5))
    );
    let (low, high) = (
        totals["rate_low"].as_f64().unwrap(),
        totals["rate_high"].as_f64().unwrap(),
    );
    // Wilson 95 % for 5 of 15:
    // python3 -c "from scipy.stats import binomtest; r=binomtest(5,15).proportion_ci(method='wilson'); print(r.low, r.high)"
    assert!(
        (low - 0.15176324439714725).abs() < 1e-12 && (high - 0.5828645226148023).abs() < 1e-12,
        "{totals}"
    );

    // A point instead of an airport; the whole Earth holds every placed town.
    let everywhere = get(
        &app,
        &format!("/imports/{import_id}/insights/near?lat=40.4&lon=-3.7&radius_km=20000"),
    )
    .await;
    assert_eq!(names(&everywhere).len(), 4);
    assert_eq!(everywhere["not_placed"][0]["town"], "Atlantis");

    // CSV: the same rows, the unplaced last.
    let response = app.get(&format!("{path}&format=csv")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("town,status,distance_km"), "{text}");
    assert!(lines[1].starts_with("Madrid,placed,"), "{text}");
    assert!(lines[2].starts_with("Valencia,placed,"), "{text}");
    assert!(lines[3].starts_with("Atlantis,unplaced,,"), "{text}");
    assert_eq!(lines.len(), 4);

    // A course filter: no statement for go, so no askers.
    let go = get(&app, &format!("{path}&course=go")).await;
    assert_eq!(go["totals"]["askers"], 0);

    // Bad parameters are named; an unknown airport or import is 404.
    let bad = [
        ("airport=ZZZ&radius_km=10", 404, "airport"),
        ("airport=MADRID&radius_km=10", 400, "airport"),
        ("radius_km=10", 400, "airport"),
        ("airport=MAD", 400, "radius_km"),
        ("airport=MAD&radius_km=0", 400, "radius_km"),
        ("airport=MAD&radius_km=20000.1", 400, "radius_km"),
        ("lat=91&lon=0&radius_km=10", 400, "lat"),
        ("lat=40&lon=-181&radius_km=10", 400, "lon"),
        ("lat=40&radius_km=10", 400, "lon"),
        ("airport=MAD&radius_km=10&min_score=x", 400, "min_score"),
        ("airport=MAD&radius_km=10&course=", 400, "course"),
        ("airport=MAD&radius_km=10&format=xml", 400, "format"),
    ];
    for (query, code, field) in bad {
        let (status, body) = json(
            app.get(&format!("/imports/{import_id}/insights/near?{query}"))
                .await,
        )
        .await;
        assert_eq!(status, code, "{query}: {body}");
        assert!(
            body["error"]["fields"][field].is_string(),
            "{query}: {body}"
        );
    }
    let (status, _) = json(
        app.get("/imports/999999/insights/near?airport=MAD&radius_km=10")
            .await,
    )
    .await;
    assert_eq!(status, 404);
    // A soft-deleted airport is no centre.
    let mad: i64 = app
        .db()
        .await
        .query_one("SELECT id FROM airports WHERE iata = 'MAD'", &[])
        .await
        .unwrap()
        .get(0);
    soft_delete(&app, mad).await;
    let (status, body) = json(app.get(&path).await).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("MAD"));
}

/// The map's SVG, parsed: every text in it.
fn texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not SVG ({e}): {svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_owned())
        .collect()
}

async fn map(app: &TestApp, import_id: i64, query: &str) -> String {
    let response = app
        .get(&format!("/imports/{import_id}/insights/map.svg{query}"))
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("image/svg+xml"));
    response.text().await.unwrap()
}

/// Opens the map in headless Chromium and leaves a screenshot in target/.
async fn screenshot(app: &TestApp, import_id: i64, name: &str) {
    let browser = Browser::start(1240, 1000).await;
    let url = app.url(&format!("/imports/{import_id}/insights/map.svg"));
    let outcome = async {
        browser.goto(&url).await?;
        browser.wait_for("svg", Duration::from_secs(10)).await?;
        browser.screenshot(&target_file(name)).await
    }
    .await;
    browser.close().await;
    outcome.unwrap();
    println!("map screenshot: {}", target_file(name).display());
}

#[tokio::test]
async fn the_map_shows_two_towns_and_names_the_rest_below() {
    let app = app_with_airports().await;
    let import_id = import(
        &app,
        &[
            ("London", 30, 12),
            ("Paris", 20, 2),
            ("Valencia", 5, 1),
            ("Atlantis", 3, 1),
        ],
    )
    .await;
    let svg = map(&app, import_id, "").await;
    let all = texts(&svg);
    let joined = all.join(" ");
    for name in ["London", "Paris"] {
        assert!(
            all.iter().any(|t| t == name),
            "{name} is not labelled: {all:?}"
        );
    }
    assert!(joined.contains(&format!("import {import_id}")), "{joined}");
    assert!(
        joined.contains("Atlantis") && joined.contains("Valencia"),
        "{joined}"
    );
    assert!(joined.contains("Spain or Venezuela"), "{joined}");
    // The course filter is in the subtitle.
    let rust = texts(&map(&app, import_id, "?course=rust&min_score=0.5").await).join(" ");
    assert!(
        rust.contains("asking for rust with a score of at least 0.5"),
        "{rust}"
    );
    // Refusals are named.
    for (query, field) in [("?min_score=high", "min_score"), ("?colour=red", "colour")] {
        let (status, body) = json(
            app.get(&format!("/imports/{import_id}/insights/map.svg{query}"))
                .await,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]["fields"][field].is_string()
                || body["error"]["message"].as_str().unwrap().contains(field),
            "{body}"
        );
    }
    let (status, _) = json(app.get("/imports/999999/insights/map.svg").await).await;
    assert_eq!(status, 404);
    screenshot(&app, import_id, "places-map-2.png").await;
}

#[tokio::test]
async fn the_map_labels_sixty_european_towns_without_overlap() {
    let app = app_with_airports().await;
    // Sixty European cities whose name has airports in one country only.
    let cities: Vec<String> = app
        .db()
        .await
        .query(
            "SELECT city FROM airports WHERE city IS NOT NULL
              GROUP BY city
             HAVING count(DISTINCT country) = 1 AND min(country) IN
                    ('Spain', 'France', 'Germany', 'Italy', 'United Kingdom', 'Portugal',
                     'Netherlands', 'Belgium', 'Switzerland', 'Austria', 'Poland', 'Czech Republic')
              ORDER BY md5(city) LIMIT 60",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cities.len(), 60);
    let towns: Vec<(&str, u32, u32)> = cities
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), 4 + (i as u32 * 7) % 30, (i as u32 * 5) % 9))
        .collect();
    let import_id = import(&app, &towns).await;
    let svg = map(&app, import_id, "").await;
    let all = texts(&svg);
    for city in &cities {
        assert!(
            all.iter().any(|t| t == city),
            "{city} is not labelled: {all:?}"
        );
    }
    screenshot(&app, import_id, "places-map-60.png").await;
}

#[tokio::test]
async fn small_towns_stay_out_of_near_and_the_map() {
    let app = app_with_airports_and(|config| config.min_group_size = 5).await;
    // Toledo has no airport: unplaced, but too small to be named at all.
    let import_id = import(
        &app,
        &[("Madrid", 8, 2), ("Getafe", 3, 1), ("Toledo", 2, 1)],
    )
    .await;
    let (status, body) = json(
        app.get(&format!(
            "/imports/{import_id}/insights/near?lat=40.4&lon=-3.7&radius_km=100"
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suppressed"], 2, "{body}");
    assert_eq!(body["data"]["towns"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"]["not_placed"], json!([]));
    assert!(!body.to_string().contains("Toledo"));
    let response = app
        .get(&format!(
            "/imports/{import_id}/insights/near?lat=40.4&lon=-3.7&radius_km=100&format=csv"
        ))
        .await;
    assert_eq!(response.headers()["insikt-suppressed"], "2");
    assert!(!response.text().await.unwrap().contains("Toledo"));
    let response = app
        .get(&format!("/imports/{import_id}/insights/map.svg"))
        .await;
    assert_eq!(response.headers()["insikt-suppressed"], "2");
    let svg = response.text().await.unwrap();
    let all = texts(&svg).join(" ");
    assert!(
        all.contains("Madrid") && !all.contains("Toledo") && !all.contains("Getafe"),
        "{all}"
    );
    assert!(all.contains("2 towns left out"), "{all}");
}
