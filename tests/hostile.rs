//! Small requests that used to cost the service dearly (issue 32), each
//! answered now in bounded size and at its root: the answers, their sizes
//! and what was written are checked here; times, memory and /healthz while
//! they run are measured by `scripts/robustness.sh hostile`.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{error_code, json, TestApp, ADMIN_TOKEN};
use insikt::http::error::MAX_ERROR_BODY;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Status, raw size and JSON body of an answer.
async fn sized(response: reqwest::Response) -> (u16, usize, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, bytes.len(), body)
}

async fn small_import(app: &TestApp) -> i64 {
    let citizens: Vec<Value> = (1..=3)
        .map(|id| {
            json!({
                "citizen_id": id, "town": "Soria", "street": "Mayor", "building": "1",
                "apartment": 1, "name": "Resident", "birth_date": "01.01.1990",
                "gender": "male", "relatives": [],
            })
        })
        .collect();
    app.post_import(&json!({ "citizens": citizens })).await
}

#[tokio::test]
async fn patch_with_a_huge_relatives_list_is_refused_early_and_briefly() {
    let app = TestApp::spawn().await;
    let import = small_import(&app).await;
    let path = format!("/imports/{import}/citizens/1");
    let patch = |n: u32| json!({ "relatives": (10..10 + n).collect::<Vec<u32>>() });

    // 200,000 unknown relatives (1.5 MB): over the PATCH body limit.
    let (status, size, body) =
        sized(app.send_json(Method::PATCH, &path, &patch(200_000)).await).await;
    assert_eq!(
        (status, error_code(&body)),
        (413, "payload_too_large"),
        "{body}"
    );
    assert!(size < 1024);
    // 100,000: more relatives than an import can have citizens.
    let (status, _, body) = sized(app.send_json(Method::PATCH, &path, &patch(100_000)).await).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["fields"]["relatives"]
        .as_str()
        .unwrap()
        .contains("at most 10000"));
    // 10,000 unknown ones: each looked up once, the first 100 named.
    let (status, size, body) =
        sized(app.send_json(Method::PATCH, &path, &patch(10_000)).await).await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "validation_failed"),
        "{body}"
    );
    assert_eq!(body["error"]["fields"].as_object().unwrap().len(), 100);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 99 more"),
        "{body}"
    );
    assert!(size <= MAX_ERROR_BODY, "{size} bytes");
    // Nothing changed.
    let (_, citizens) = json(app.get(&format!("/imports/{import}/citizens")).await).await;
    assert_eq!(citizens["data"][0]["relatives"], json!([]));
}

#[tokio::test]
async fn five_million_bad_statements_get_a_short_answer() {
    let app = TestApp::spawn().await;
    let import = small_import(&app).await;
    let mut body = Vec::with_capacity(10_000_002);
    body.push(b'[');
    for i in 0..5_000_000 {
        if i > 0 {
            body.push(b',');
        }
        body.push(b'0');
    }
    body.push(b']');
    let response = app
        .request(Method::POST, &format!("/imports/{import}/statements"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, size, body) = sized(response).await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "validation_failed"),
        "{body}"
    );
    assert!(size <= MAX_ERROR_BODY, "{size} bytes");
    let fields = body["error"]["fields"].as_object().unwrap();
    assert_eq!(fields.len(), 100);
    assert!(fields.contains_key("[0].statement") && fields.contains_key("[99].statement"));
    assert_eq!(
        body["error"]["message"],
        "5000000 statement problem(s); nothing was accepted"
    );
    // Unknown citizens among valid statements are named in item order too.
    let mut items: Vec<Value> = (0..150)
        .map(|i| common::streams::statement(&format!("s{i}"), import, 1 + i % 3))
        .collect();
    items[120]["citizen_id"] = json!(77);
    items[3] = json!(0);
    let (status, body) = app.post_statements(import, &Value::Array(items)).await;
    assert_eq!(status, 400, "{body}");
    let fields = body["error"]["fields"].as_object().unwrap();
    assert_eq!(fields.len(), 2, "{body}");
    assert!(fields.contains_key("[3].statement") && fields.contains_key("[120].citizen_id"));
}

#[tokio::test]
async fn a_chart_of_thirty_thousand_groups_draws_the_largest() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    let import = common::insert_import(&db).await;
    // 300 residents in 30 towns, each asking for 100 courses of their own:
    // 30,000 groups, and as many distinct courses on the chart's axis.
    db.batch_execute(&format!(
        "INSERT INTO citizens (import_id, citizen_id, town, street, building, apartment, name,
                               birth_date, gender)
         SELECT {import}, c, 'town-' || c % 30, 'Mayor', '1', 1, 'R', '1990-01-01', 'male'
           FROM generate_series(1, 300) AS c;
         INSERT INTO statement_counts (import_id, citizen_id, channel, course, statements)
         SELECT {import}, c, NULL, 'course-' || c || '-' || k, 1 + (c * k) % 7
           FROM generate_series(1, 300) AS c, generate_series(1, 100) AS k;
         INSERT INTO statement_counts (import_id, citizen_id, channel, course, statements)
         SELECT {import}, citizen_id, NULL, NULL, sum(statements)
           FROM statement_counts WHERE import_id = {import} GROUP BY citizen_id;"
    ))
    .await
    .unwrap();
    let (status, body) = json(
        app.get(&format!("/imports/{import}/demand?by=town,course"))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 30_000);
    let response = app
        .get(&format!("/imports/{import}/demand.svg?by=town,course"))
        .await;
    assert_eq!(response.status(), 200);
    let svg = response.text().await.unwrap();
    assert!(svg.len() < 1_000_000, "{} bytes", svg.len());
    assert!(svg.contains("the 40 largest of 30000 course values"));
    assert!(!svg.contains("town values"), "30 towns are all shown");
    let response = app
        .get(&format!("/imports/{import}/demand.svg?by=course"))
        .await;
    assert_eq!(response.status(), 200);
    let svg = response.text().await.unwrap();
    assert!(svg.contains("the 40 largest of 30000 course values"));
}

#[tokio::test]
async fn a_50_mb_header_of_control_characters_gets_a_short_answer() {
    let app = TestApp::spawn().await;
    let mut csv = Vec::with_capacity(50 * 1024 * 1024 + 100);
    while csv.len() < 50 * 1024 * 1024 {
        csv.extend_from_slice(b"\x01\x02\x03\x04\x05\x06\x07,");
    }
    csv.extend_from_slice(b"\nA,1,2\n");
    let response = app
        .request(Method::POST, "/airports/upload")
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let (status, size, body) = sized(response).await;
    assert_eq!(status, 400, "{body}");
    assert!(size <= 4096, "{size} bytes");
    assert_eq!(body["error"]["fields"]["errors"][0]["line"], 1);
    let (_, airports) = json(app.get("/airports").await).await;
    assert_eq!(airports["data"]["airports"], json!([]), "{airports}");

    // A header that fits, of junk names: the first ten named, each cut.
    let names: Vec<String> = (0..2000).map(|_| "\u{1}".repeat(30)).collect();
    let response = app
        .request(Method::POST, "/airports/upload")
        .header("content-type", "text/csv")
        .body(format!("{}\nA,1,2\n", names.join(",")))
        .send()
        .await
        .unwrap();
    let (status, size, body) = sized(response).await;
    assert_eq!(status, 400, "{body}");
    assert!(size <= 4096, "{size} bytes");
    let reason = body["error"]["fields"]["errors"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("2003 problems, the first 10"), "{reason}");
}

#[tokio::test]
async fn json_routes_refuse_other_content_types() {
    let app = TestApp::spawn().await;
    let body = r#"{"citizens": []}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = app.request(Method::POST, "/imports").body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, body) = json(request.send().await.unwrap()).await;
        assert_eq!(
            (status, error_code(&body)),
            (415, "unsupported_media_type"),
            "{content_type:?}"
        );
    }
    let db = app.db().await;
    let imports: i64 = db
        .query_one("SELECT count(*) FROM imports", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(imports, 0);
    // What the 2019 contract's clients send is taken.
    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
    ] {
        let response = app
            .request(Method::POST, "/imports")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{content_type}");
    }
    for (method, path) in [
        (Method::PATCH, "/imports/1/citizens/1"),
        (Method::PUT, "/airports"),
        (Method::PATCH, "/airports/1"),
        (Method::POST, "/imports/1/statements"),
    ] {
        let response = app
            .request(method.clone(), path)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{method} {path}");
    }
    let response = app
        .request(Method::POST, "/imports/1/replay")
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"job": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy() {
    let app = TestApp::spawn().await;
    for path in ["/console", "/console/console.js", "/console/console.css"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        let policy = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn nul_job_names_are_bad_requests_on_every_archive_route() {
    let app = TestApp::spawn().await;
    let (status, body) = json(app.get("/jobs/%00/archives").await).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    let admin = |method: Method, path: &str| app.request(method, path).bearer_auth(ADMIN_TOKEN);
    let (status, body) = json(
        admin(Method::GET, "/jobs/a%00/archives/0/0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    let (status, body) = json(
        admin(Method::POST, "/imports/1/replay")
            .json(&json!({"job": "a\u{0}b"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    assert!(body["error"]["fields"]["job"].is_string(), "{body}");
}

/// Reads until the server closes the connection (or `limit` passes).
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn slow_and_idle_clients_are_dropped_after_the_header_timeout() {
    let app = TestApp::spawn_with(|config| config.header_timeout = Duration::from_secs(1)).await;
    // Headers at a byte every 200 ms: the connection closes, no request served.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let started = std::time::Instant::now();
    let writer = async {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n\r\n" {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
    };
    writer.await;
    let received = closed_within(&mut slow, Duration::from_secs(10)).await;
    let received = received.expect("the slow client's connection is closed");
    assert!(
        !String::from_utf8_lossy(&received).contains("\"up\""),
        "served anyway"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // An idle connection (nothing sent), and one kept alive after a request.
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(10))
        .await
        .is_some());
    let mut kept = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = closed_within(&mut kept, Duration::from_secs(10))
        .await
        .expect("closed once idle");
    assert!(String::from_utf8_lossy(&answered).contains("\"up\""));

    // Meanwhile a normal client is served.
    assert_eq!(app.get("/healthz").await.status(), 200);
}
