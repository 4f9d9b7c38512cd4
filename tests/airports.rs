//! Airports, black-box against the real app and PostgreSQL: the CSV upload
//! with the real OpenFlights file, CRUD and the seed's bare aliases,
//! confirmation links, soft delete and the radius search.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{error_code, json, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

fn airports_csv() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/airports.csv"))
        .expect("data/airports.csv")
}

async fn upload(app: &TestApp, path: &str, body: String) -> (u16, Value) {
    json(
        app.request(Method::POST, path)
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn count(app: &TestApp) -> i64 {
    app.db()
        .await
        .query_one("SELECT count(*) FROM airports", &[])
        .await
        .unwrap()
        .get(0)
}

/// A small file: Madrid's airports and one with a quoted name.
const SMALL: &str = "name,city,country,iata,icao,latitude,longitude,altitude,timezone,dst,tz,type,source
\"Adolfo Suárez Madrid–Barajas Airport\",\"Madrid\",\"Spain\",\"MAD\",\"LEMD\",40.471926,-3.56264,1998,1,\"E\",\"Europe/Madrid\",\"airport\",\"OurAirports\"
\"Magdeburg \"\"City\"\" Airport\",\"Magdeburg\",\"Germany\",\"ZMG\",\"EDBM\",52.073612,11.626389,259,1,\"E\",\"Europe/Berlin\",\"airport\",\"OurAirports\"
";

async fn small_app() -> TestApp {
    let app = TestApp::spawn().await;
    let (status, body) = upload(&app, "/airports/upload", SMALL.to_owned()).await;
    assert_eq!(status, 201, "{body}");
    app
}

#[tokio::test]
async fn the_openflights_file_uploads_whole_and_exact() {
    let app = TestApp::spawn().await;
    let (status, body) = upload(&app, "/airports/upload", airports_csv()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"], json!({"inserted": 7698, "updated": 0}));
    assert_eq!(count(&app).await, 7698);

    // Quotes inside a name (row 329 of the file).
    let (status, body) = json(app.get("/airports?iata=ZMG").await).await;
    assert_eq!(status, 200, "{body}");
    let zmg = &body["data"]["airports"][0];
    assert_eq!(zmg["name"], "Magdeburg \"City\" Airport");
    assert_eq!(zmg["id"], 329);
    // `\N` timezone, dst and tz are NULL.
    let (_, body) = json(app.get("/airports?iata=YAH").await).await;
    let yah = &body["data"]["airports"][0];
    assert_eq!(yah["name"], "La Grande-4 Airport");
    assert!(yah["timezone"].is_null() && yah["dst"].is_null() && yah["tz"].is_null());
    assert_eq!(yah["altitude"], 1005);
    // A non-ASCII city.
    let (_, body) = json(app.get("/airports?city=VADS%C3%B8").await).await;
    let vds = &body["data"]["airports"][0];
    assert_eq!(vds["city"], "Vadsø");
    assert_eq!(vds["iata"], "VDS");
    // Fractional hours stay exact.
    let (_, body) = json(app.get("/airports?iata=BWA").await).await;
    assert_eq!(body["data"]["airports"][0]["timezone"], 5.75);

    // Empty quoted city and `\N` iata are NULL in the table.
    let db = app.db().await;
    let nulls: Vec<i64> = db
        .query_one(
            "SELECT count(*) FILTER (WHERE city IS NULL), count(*) FILTER (WHERE iata IS NULL),
                    count(*) FILTER (WHERE timezone IS NULL), count(*) FILTER (WHERE tz IS NULL)
             FROM airports",
            &[],
        )
        .await
        .map(|row| (0..4).map(|i| row.get(i)).collect())
        .unwrap();
    assert_eq!(nulls, [49, 1626, 353, 1021]);
    // The point follows longitude/latitude.
    let (x, y): (f64, f64) = db
        .query_one(
            "SELECT ST_X(location::geometry), ST_Y(location::geometry) FROM airports WHERE id = 329",
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!((x, y), (11.626389, 52.073612));
}

#[tokio::test]
async fn a_second_upload_with_ids_updates_instead_of_duplicating() {
    let app = TestApp::spawn().await;
    let original = airports_csv();
    assert_eq!(upload(&app, "/upload", original.clone()).await.0, 201);

    // Same rows with their ids (assigned in file order), one renamed, plus a new one.
    let mut lines = original.lines();
    let mut with_ids = format!("ID,{}\n", lines.next().unwrap());
    for (i, line) in lines.enumerate() {
        let line = line.replace(
            "\"Magdeburg \"\"City\"\" Airport\"",
            "\"Magdeburg-Cochstedt\"",
        );
        with_ids.push_str(&format!("{},{line}\n", i + 1));
    }
    with_ids.push_str("9000,\"Brand New\",,\"Spain\",\\N,\\N,40,-3,0,1,\"E\",\\N,\\N,\\N\n");
    let (status, body) = upload(&app, "/airports/upload", with_ids).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"], json!({"inserted": 1, "updated": 7698}));
    assert_eq!(count(&app).await, 7699);
    let (_, body) = json(app.get("/airports/329").await).await;
    assert_eq!(body["data"]["name"], "Magdeburg-Cochstedt");

    // Later creations continue after the largest given id.
    let (status, body) = json(
        app.send_json(
            Method::PUT,
            "/airports",
            &json!({"name": "After", "latitude": 1, "longitude": 2}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["data"]["id"].as_i64().unwrap() > 9000, "{body}");
}

#[tokio::test]
async fn one_bad_line_rejects_the_whole_file_and_writes_nothing() {
    let app = TestApp::spawn().await;
    // Into an empty table: nothing at all appears.
    let mut bad = airports_csv();
    bad.push_str("\"Nowhere\",\"X\",\"Y\",\\N,\\N,123,10,0,1,\"E\",\\N,\\N,\\N\n");
    let (status, body) = upload(&app, "/airports/upload", bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    assert_eq!(body["error"]["fields"]["errors"][0]["line"], 7700);
    assert!(body["error"]["fields"]["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("latitude 123"));
    assert_eq!(count(&app).await, 0);

    // Over existing rows: they stay as they were.
    assert_eq!(
        upload(&app, "/airports/upload", airports_csv()).await.0,
        201
    );
    let before: Value = json(app.get("/airports/1").await).await.1;
    let mut lines: Vec<String> = airports_csv().lines().map(str::to_owned).collect();
    lines[1] = lines[1].replace("Goroka Airport", "Changed");
    lines[5] = "\"Short\",\"row\"".to_owned();
    lines[9] = lines[9].replace(",5282,", ",high,");
    lines.push("\"Extra\",\"A\",\"B\",\\N,\\N,1,2,3,4,\"E\",\\N,\\N,\\N,\"surplus\"".to_owned());
    let (status, body) = upload(&app, "/upload", lines.join("\n")).await;
    assert_eq!(status, 400, "{body}");
    let errors = body["error"]["fields"]["errors"].as_array().unwrap();
    let reported: Vec<i64> = errors.iter().map(|e| e["line"].as_i64().unwrap()).collect();
    assert_eq!(reported[0], 6);
    assert_eq!(*reported.last().unwrap(), 7700);
    assert!(errors[0]["reason"]
        .as_str()
        .unwrap()
        .contains("expected 13 fields, found 2"));
    assert_eq!(count(&app).await, 7698);
    assert_eq!(json(app.get("/airports/1").await).await.1, before);

    // An unknown header is refused on line 1.
    let (status, body) = upload(
        &app,
        "/upload",
        "name,latitude,longitude,colour\nA,1,2,red\n".to_owned(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["fields"]["errors"][0]["line"], 1);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("line 1"));
}

#[tokio::test]
async fn multipart_uploads_read_the_file_part() {
    let app = TestApp::spawn().await;
    let form = reqwest::multipart::Form::new()
        .text("comment", "ignored")
        .part(
            "file",
            reqwest::multipart::Part::text(SMALL).file_name("airports.csv"),
        );
    let (status, body) = json(
        app.request(Method::POST, "/airports/upload")
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["inserted"], 2);

    let form = reqwest::multipart::Form::new().text("other", "x");
    let (status, body) = json(
        app.request(Method::POST, "/upload")
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("file"));
}

#[tokio::test]
async fn uploads_over_the_body_limit_are_refused() {
    let app = TestApp::spawn_with(|config| config.body_limit = 100).await;
    let (status, body) = upload(&app, "/airports/upload", SMALL.to_owned()).await;
    assert_eq!(status, 413, "{body}");
    // Chunked, without Content-Length: caught while streaming.
    let chunks = futures_util::stream::iter(
        SMALL
            .as_bytes()
            .chunks(40)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = app
        .request(Method::POST, "/upload")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn crud_through_the_resource_routes() {
    let app = small_app().await;
    let new = json!({"name": "Test Field", "city": "Nowhere", "latitude": 10.5, "longitude": -20.25,
                     "timezone": 5.75, "dst": "N", "type": "airport"});
    let response = app.send_json(Method::PUT, "/airports", &new).await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, body) = json(response).await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_i64().unwrap();
    assert_eq!(location, format!("/airports/{id}"));
    assert_eq!(body["data"]["timezone"], 5.75);
    assert!(body["data"]["iata"].is_null());

    let (status, got) = json(app.get(&location).await).await;
    assert_eq!(status, 200);
    assert_eq!(got["data"], body["data"]);

    let (status, body) = json(
        app.send_json(
            Method::PATCH,
            &location,
            &json!({"city": null, "altitude": 12}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["city"].is_null());
    assert_eq!(body["data"]["altitude"], 12);
    assert_eq!(body["data"]["name"], "Test Field");

    for bad in [
        json!({"colour": "red"}),
        json!({"altitude": "high"}),
        json!({"latitude": 100}),
        json!({"name": null}),
        json!({}),
    ] {
        let (status, body) = json(app.send_json(Method::PATCH, &location, &bad).await).await;
        assert_eq!(status, 400, "{bad}: {body}");
        error_code(&body);
    }
    let (status, body) = json(
        app.send_json(Method::PUT, "/airports", &json!({"name": "X"}))
            .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = json(app.get("/airports/abc").await).await;
    assert_eq!(status, 400);

    let response = app.request(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(response.status(), 204);
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let response = app
            .request(method.clone(), &location)
            .json(&json!({"altitude": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method}");
    }
}

#[tokio::test]
async fn the_bare_aliases_work() {
    let app = small_app().await;
    let (status, body) = json(
        app.send_json(
            Method::PUT,
            "/create",
            &json!({"name": "Alias", "latitude": 1, "longitude": 2}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_i64().unwrap();

    let (status, body) = json(
        app.send_json(
            Method::PATCH,
            &format!("/update?id={id}"),
            &json!({"iata": "ALI"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["iata"], "ALI");
    let (status, _) = json(
        app.send_json(Method::PATCH, "/update", &json!({"iata": "X"}))
            .await,
    )
    .await;
    assert_eq!(status, 400);

    // GET /create and GET /update?id= hand out links and write nothing.
    let (status, body) = json(app.get("/create?name=Linked&latitude=3&longitude=4").await).await;
    assert_eq!(status, 200, "{body}");
    let create_link = body["data"]["confirm_url"].as_str().unwrap().to_owned();
    let (status, body) = json(app.get(&format!("/update?id={id}&city=Aliasville")).await).await;
    assert_eq!(status, 200, "{body}");
    let update_link = body["data"]["confirm_url"].as_str().unwrap().to_owned();
    assert_eq!(count(&app).await, 3);
    let (status, body) = json(app.get(&create_link).await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["name"], "Linked");
    let (status, body) = json(app.get(&update_link).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["city"], "Aliasville");

    // GET /delete?id= soft-deletes, DELETE /delete?id= removes.
    let (status, body) = json(app.get(&format!("/delete?id={id}")).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["deleted_at"].is_string());
    let linked = 4; // small file ids 1 and 2, then 3 (Alias), 4 (Linked)
    let response = app
        .request(Method::DELETE, &format!("/delete?id={linked}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(count(&app).await, 3); // the soft-deleted row is still stored

    // POST /upload is covered by the other tests; here once more for the record.
    let (status, _) = upload(&app, "/upload", SMALL.to_owned()).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn options_lists_each_airports_route_s_methods() {
    let app = TestApp::spawn().await;
    for (path, allow) in [
        ("/airports", "GET, PUT, OPTIONS"),
        ("/airports/upload", "POST, OPTIONS"),
        ("/airports/near", "GET, OPTIONS"),
        ("/airports/create", "GET, OPTIONS"),
        ("/airports/42", "GET, PATCH, DELETE, OPTIONS"),
        ("/airports/42/update", "GET, OPTIONS"),
        ("/airports/42/delete", "GET, OPTIONS"),
        ("/upload", "POST, OPTIONS"),
        ("/create", "GET, PUT, OPTIONS"),
        ("/update", "GET, PATCH, OPTIONS"),
        ("/delete", "GET, DELETE, OPTIONS"),
        ("/confirm/abc", "GET, POST, OPTIONS"),
    ] {
        let response = app.request(Method::OPTIONS, path).send().await.unwrap();
        assert_eq!(response.status(), 204, "{path}");
        assert_eq!(response.headers()["allow"], allow, "{path}");
    }
    let (status, _) = json(
        app.request(Method::OPTIONS, "/airports/1/nothing")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

async fn link(app: &TestApp, path: &str) -> String {
    let (status, body) = json(app.get(path).await).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert!(body["data"]["expires_at"].is_string());
    body["data"]["confirm_url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn confirmation_links_work_once_and_only_as_issued() {
    let app = small_app().await;
    let url = link(
        &app,
        "/airports/create?name=Once&latitude=1&longitude=2&timezone=-3.5",
    )
    .await;
    assert!(url.starts_with("/confirm/"));
    assert_eq!(count(&app).await, 2, "issuing a link writes nothing");

    // Tampered: change one character of the payload.
    let token = url.trim_start_matches("/confirm/");
    let mut forged: Vec<char> = token.chars().collect();
    forged[10] = if forged[10] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let (status, body) = json(app.get(&format!("/confirm/{forged}")).await).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body), "invalid_token");
    let (status, body) = json(app.get("/confirm/garbage").await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(count(&app).await, 2);

    let response = app.request(Method::POST, &url).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, body) = json(response).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["timezone"], -3.5);
    assert_eq!(location, format!("/airports/{}", body["data"]["id"]));

    let (status, body) = json(app.get(&url).await).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "token_used");
    assert_eq!(count(&app).await, 3);

    // Update links: validated up front, performed once.
    let (status, _) = json(app.get("/airports/1/update?altitude=high").await).await;
    assert_eq!(status, 400);
    let (status, _) = json(app.get("/airports/1/update?colour=red").await).await;
    assert_eq!(status, 400);
    let (status, _) = json(app.get("/airports/999/update?city=X").await).await;
    assert_eq!(status, 404);
    let (status, _) = json(app.get("/airports/create?latitude=1&longitude=2").await).await;
    assert_eq!(status, 400);
    let url = link(&app, "/airports/1/update?city=&altitude=7").await;
    let (_, before) = json(app.get("/airports/1").await).await;
    assert_eq!(before["data"]["city"], "Madrid");
    let (status, body) = json(app.get(&url).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["city"].is_null());
    assert_eq!(body["data"]["altitude"], 7);
    assert_eq!(
        json(app.request(Method::POST, &url).send().await.unwrap())
            .await
            .0,
        409
    );

    // A link whose target was deleted meanwhile fails and stays unused.
    let url = link(&app, "/airports/2/update?city=Later").await;
    assert_eq!(json(app.get("/airports/2/delete").await).await.0, 200);
    assert_eq!(json(app.get(&url).await).await.0, 404);
    let used: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM confirmation_tokens", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(used, 2);
}

#[tokio::test]
async fn links_signed_with_another_secret_are_refused() {
    let app = small_app().await;
    let other = TestApp::spawn_with(|config| config.secret = Some("another".to_owned())).await;
    let url = link(&other, "/create?name=Elsewhere&latitude=1&longitude=2").await;
    let (status, body) = json(app.get(&url).await).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(count(&app).await, 2);
}

#[tokio::test]
async fn expired_links_are_gone() {
    let app = TestApp::spawn_with(|config| config.confirm_ttl_secs = 1).await;
    let url = link(&app, "/airports/create?name=Late&latitude=1&longitude=2").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = json(app.get(&url).await).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(error_code(&body), "token_expired");
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn a_soft_deleted_airport_vanishes_from_every_read() {
    let app = small_app().await;
    let (status, body) = json(app.get("/airports/1/delete").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["iata"], "MAD");
    assert!(body["data"]["deleted_at"].is_string());

    assert_eq!(json(app.get("/airports/1").await).await.0, 404);
    assert_eq!(json(app.get("/airports/1/delete").await).await.0, 404);
    let (_, body) = json(app.get("/airports").await).await;
    let ids: Vec<i64> = body["data"]["airports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2]);
    let (_, body) = json(app.get("/airports?iata=MAD").await).await;
    assert_eq!(body["data"]["airports"], json!([]));
    let (_, body) = json(
        app.get("/airports/near?lat=40.4168&lon=-3.7038&radius_km=25")
            .await,
    )
    .await;
    assert_eq!(body["data"], json!([]));
    let (status, _) = json(
        app.send_json(Method::PATCH, "/airports/1", &json!({"city": "X"}))
            .await,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        json(app.get("/airports/1/update?city=X").await).await.0,
        404
    );
    // Still stored, flagged.
    let deleted: bool = app
        .db()
        .await
        .query_one(
            "SELECT deleted_at IS NOT NULL FROM airports WHERE id = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(deleted);
}

#[tokio::test]
async fn near_madrid_orders_by_distance() {
    let app = TestApp::spawn().await;
    assert_eq!(upload(&app, "/upload", airports_csv()).await.0, 201);
    let (status, body) = json(
        app.get("/airports/near?lat=40.4168&lon=-3.7038&radius_km=25")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let found = body["data"].as_array().unwrap();
    let names: Vec<(&str, f64)> = found
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap(),
                a["distance_km"].as_f64().unwrap(),
            )
        })
        .collect();
    // Cuatro Vientos (8.6 km) is nearer to the Puerta del Sol than Barajas
    // (13.4 km); the four airports within 25 km, nearest first.
    let order: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        order,
        [
            "Cuatro Vientos Airport",
            "Adolfo Suárez Madrid–Barajas Airport",
            "Getafe Air Base",
            "Torrejón Airport"
        ],
        "{names:?}"
    );
    assert_eq!(found[1]["iata"], "MAD");
    assert!((names[1].1 - 13.45).abs() < 0.1, "{names:?}");
    assert!(names.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(names.iter().all(|(_, d)| *d <= 25.0));

    let (_, body) = json(
        app.get("/airports/near?lat=40.4168&lon=-3.7038&radius_km=10")
            .await,
    )
    .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (_, body) = json(
        app.get("/airports/near?lat=40.4168&lon=-3.7038&radius_km=25&limit=2")
            .await,
    )
    .await;
    assert_eq!(body["data"][1]["iata"], "MAD");
    for bad in [
        "/airports/near?lat=100&lon=0&radius_km=5",
        "/airports/near?lat=1&lon=0&radius_km=-5",
        "/airports/near?lat=1&lon=0",
        "/airports/near?lat=1&lon=0&radius_km=5&limit=0",
    ] {
        let (status, body) = json(app.get(bad).await).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn lists_filter_and_page_by_id() {
    let app = TestApp::spawn().await;
    assert_eq!(upload(&app, "/upload", airports_csv()).await.0, 201);
    let mut seen = Vec::new();
    let mut path = "/airports?country=SPAIN&limit=20".to_owned();
    loop {
        let (status, body) = json(app.get(&path).await).await;
        assert_eq!(status, 200, "{body}");
        for airport in body["data"]["airports"].as_array().unwrap() {
            assert_eq!(airport["country"], "Spain");
            seen.push(airport["id"].as_i64().unwrap());
        }
        match body["data"]["next_after"].as_i64() {
            Some(after) => path = format!("/airports?country=SPAIN&limit=20&after={after}"),
            None => break,
        }
    }
    let expected: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM airports WHERE country = 'Spain'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen.len() as i64, expected);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "stable id order");
    let (status, _) = json(app.get("/airports?limit=5000").await).await;
    assert_eq!(status, 400);
    let (status, _) = json(app.get("/airports?colour=red").await).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_cli_streams_a_file_to_the_service() {
    let app = TestApp::spawn().await;
    let path = std::env::temp_dir().join(format!("airports-{}.csv", uuid::Uuid::new_v4()));
    std::fs::write(&path, SMALL).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .args([
            "upload-airports",
            path.to_str().unwrap(),
            "--url",
            &app.url(""),
        ])
        .env("INSIKT_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "inserted 2, updated 0"
    );

    std::fs::write(&path, "name,latitude,longitude\nBad,123,0\n").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .args([
            "upload-airports",
            path.to_str().unwrap(),
            "--url",
            &app.url(""),
        ])
        .env("INSIKT_LOG", "warn")
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2: latitude 123"), "{stderr}");
    assert_eq!(count(&app).await, 2);
}

/// PostgreSQL text cannot hold a NUL character: a name or city with one is
/// a 400 naming the field (and the line, in a CSV), and nothing is written,
/// through every way in: the upload, PUT, PATCH and the confirmation links.
#[tokio::test]
async fn a_nul_character_in_an_airport_is_refused_naming_the_field() {
    let app = small_app().await;
    let before: Value = json(app.get("/airports?limit=100").await).await.1;
    let check = |status: u16, body: &Value, field: &str| {
        assert_eq!(
            (status, error_code(body)),
            (400, "validation_failed"),
            "{body}"
        );
        assert!(body.to_string().contains(field), "{field}: {body}");
        assert!(body.to_string().contains("NUL"), "{body}");
    };

    let mut csv = SMALL.to_owned();
    csv.push_str("\"Nul\",\"Ma\0drid\",\"Spain\",\\N,\\N,40,-3,0,1,\"E\",\\N,\\N,\\N\n");
    let (status, body) = upload(&app, "/airports/upload", csv).await;
    check(status, &body, "city");
    assert_eq!(body["error"]["fields"]["errors"][0]["line"], 4, "{body}");

    let (status, body) = json(
        app.send_json(
            Method::PUT,
            "/airports",
            &json!({"name": "N\u{0}ul", "latitude": 1, "longitude": 2}),
        )
        .await,
    )
    .await;
    check(status, &body, "name");
    let (status, body) = json(
        app.send_json(
            Method::PUT,
            "/airports",
            &json!({"name": "Nul", "city": "Ma\u{0}drid", "latitude": 1, "longitude": 2}),
        )
        .await,
    )
    .await;
    check(status, &body, "city");
    // A one-character dst of NUL was a 500 (schemathesis).
    let (status, body) = json(
        app.send_json(
            Method::PUT,
            "/airports",
            &json!({"name": "Nul", "dst": "\u{0}", "latitude": 1, "longitude": 2}),
        )
        .await,
    )
    .await;
    check(status, &body, "dst");
    let (status, body) = json(app.get("/airports/1/update?dst=%00").await).await;
    check(status, &body, "dst");
    let (status, body) = json(
        app.send_json(Method::PATCH, "/airports/1", &json!({"tz": "Europe/\u{0}"}))
            .await,
    )
    .await;
    check(status, &body, "tz");
    let (status, body) = json(
        app.get("/airports/create?name=Nul&latitude=1&longitude=2&city=a%00b")
            .await,
    )
    .await;
    check(status, &body, "city");
    let (status, body) = json(app.get("/airports/1/update?country=a%00b").await).await;
    check(status, &body, "country");

    assert_eq!(count(&app).await, 2);
    assert_eq!(json(app.get("/airports?limit=100").await).await.1, before);
}

/// A list filter holding NUL is a 400 naming it, not the 500 of PostgreSQL
/// refusing the parameter (found by schemathesis).
#[tokio::test]
async fn a_nul_character_in_a_list_filter_is_a_400() {
    let app = small_app().await;
    for field in ["city", "country", "iata"] {
        let (status, body) = json(app.get(&format!("/airports?{field}=a%00b")).await).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "validation_failed"),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field) && message.contains("NUL"), "{body}");
    }
    let (status, body) = json(app.get("/airports?city=Madrid").await).await;
    assert_eq!(status, 200, "{body}");
}

/// JSON Schema's `integer` includes `2095.0`: such an altitude is stored as
/// 2095, by PUT and PATCH alike, where it was a 400 (schemathesis); a
/// fraction is still refused.
#[tokio::test]
async fn an_altitude_written_as_a_whole_float_is_an_integer() {
    let app = small_app().await;
    let (status, body) = json(
        app.send_json(
            Method::PUT,
            "/airports",
            &json!({"name": "Float", "latitude": 1, "longitude": 2, "altitude": 2095.0}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["altitude"], 2095, "{body}");
    let id = body["data"]["id"].as_i64().unwrap();
    let (status, body) = json(
        app.send_json(
            Method::PATCH,
            &format!("/airports/{id}"),
            &json!({"altitude": -3.0}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["data"]["altitude"].clone()),
        (200, json!(-3)),
        "{body}"
    );
    let (status, body) = json(
        app.send_json(
            Method::PATCH,
            &format!("/airports/{id}"),
            &json!({"altitude": 1.5}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "validation_failed"),
        "{body}"
    );
}
