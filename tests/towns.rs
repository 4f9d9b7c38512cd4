//! Towns of an import and their airports, with hand-made airports and citizens.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{error_code, json, TestApp};
use serde_json::Value;

async fn airport(db: &tokio_postgres::Client, name: &str, city: Option<&str>, deleted: bool) {
    db.execute(
        "INSERT INTO airports (name, city, latitude, longitude, deleted_at)
         VALUES ($1, $2, 0, 0, CASE WHEN $3 THEN now() END)",
        &[&name, &city, &deleted],
    )
    .await
    .unwrap();
}

async fn import(db: &tokio_postgres::Client, towns: &[&str]) -> i64 {
    let import_id = common::insert_import(db).await;
    for (id, town) in towns.iter().enumerate() {
        db.execute(
            "INSERT INTO citizens (import_id, citizen_id, town, street, building, apartment,
                                   name, birth_date, gender)
             VALUES ($1, $2, $3, 'Main', '1', 1, 'Resident', '1990-01-01', 'male')",
            &[&import_id, &(id as i32), town],
        )
        .await
        .unwrap();
    }
    import_id
}

fn names(town: &Value) -> Vec<&str> {
    town["airports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn each_town_lists_the_live_airports_of_its_city_case_insensitively() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    airport(&db, "Barajas", Some("MADRID"), false).await;
    airport(&db, "Cuatro Vientos", Some("madrid"), false).await;
    airport(&db, "Old Madrid Field", Some("Madrid"), true).await;
    airport(&db, "San Pablo", Some("Sevilla"), false).await;
    airport(&db, "Nowhere Strip", None, false).await;
    airport(&db, "Madrid Norte", Some("Madrid Norte"), false).await;
    // Two citizens in Madrid (one town, listed once), one in a town without an airport.
    let import_id = import(&db, &["Madrid", "Madrid", "Toledo"]).await;
    // Another import's towns never leak in.
    import(&db, &["Sevilla"]).await;

    let (status, body) = json(
        app.get(&format!("/imports/{import_id}/towns/airports"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let towns = body["data"].as_array().unwrap();
    assert_eq!(towns.len(), 2, "{body}");
    assert_eq!(towns[0]["town"], "Madrid");
    assert_eq!(names(&towns[0]), ["Barajas", "Cuatro Vientos"]);
    assert_eq!(towns[0]["airports"][0]["city"], "MADRID");
    assert!(towns[0]["airports"][0]["id"].is_i64());
    assert_eq!(towns[1]["town"], "Toledo");
    assert_eq!(names(&towns[1]), Vec::<&str>::new());
}

#[tokio::test]
async fn an_unknown_or_malformed_import_is_refused() {
    let app = TestApp::spawn().await;
    let (status, body) = json(app.get("/imports/999/towns/airports").await).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = json(app.get("/imports/x/towns/airports").await).await;
    assert_eq!(status, 400, "{body}");
    // An import without citizens has no towns.
    let db = app.db().await;
    let empty = import(&db, &[]).await;
    let (status, body) = json(app.get(&format!("/imports/{empty}/towns/airports")).await).await;
    assert_eq!((status, body["data"].clone()), (200, serde_json::json!([])));
}

#[tokio::test]
async fn the_city_join_uses_the_lower_city_index() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    for i in 0..2000 {
        airport(&db, &format!("A{i}"), Some(&format!("City {i}")), false).await;
    }
    db.batch_execute("ANALYZE airports").await.unwrap();
    // The service's own query, so a change to it is checked too.
    let sql = format!("EXPLAIN {}", insikt::places::rule::places_sql());
    let names = vec!["City 7".to_owned(), "Toledo".to_owned()];
    let plan: String = db
        .query(&sql, &[&names])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("airports_city_idx"), "{plan}");
}
