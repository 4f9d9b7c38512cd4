//! Statement streams and jobs against the real broker and PostgreSQL:
//! ingestion, duplicates, dead letters, stop/start across restarts, expiry
//! with archive, and a SIGKILL in the middle of a stream.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::streams::{self, eventually};
use common::Served;
use common::{error_code, json, TestApp, TestDatabase, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

async fn spawn() -> TestApp {
    TestApp::spawn_with(streams::configure).await
}

#[tokio::test]
async fn statements_are_stored_once_and_the_job_reports_its_offsets() {
    let app = spawn().await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1, 2, 3]).await;
    let name = common::job_name(&db, import).await;

    let items = json!([
        streams::statement("a", import, 1),
        streams::statement("b", import, 2),
        // import_id may be left to the path.
        {"statement_id": "c", "citizen_id": 3, "course": "go", "score": 1,
         "text": "yes", "ts": "2026-11-28T12:00:00+03:00"},
    ]);
    let (status, body) = app.post_statements(import, &items).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"], json!({"accepted": 3, "job": name}));
    eventually("3 statements", WAIT, || async {
        (streams::stored(&db, import).await == 3).then_some(())
    })
    .await;

    // The same statements again, as NDJSON, plus one new: stored once each.
    let ndjson = [
        streams::statement("a", import, 1),
        streams::statement("b", import, 2),
        streams::statement("d", import, 1),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let response = app
        .request(Method::POST, &format!("/imports/{import}/statements"))
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["accepted"], 3);

    // Two requests, two transactions: 6 records and 2 commit markers, which
    // the idle job steps over.
    let shown = eventually("offset 8", WAIT, || async {
        let shown = app.job(&name).await;
        (shown["committed_offset"] == 8).then_some(shown)
    })
    .await;
    assert_eq!(streams::stored(&db, import).await, 4);
    assert_eq!(shown["name"], name.as_str());
    assert_eq!(shown["import"], import);
    assert_eq!(shown["state"], "running");
    assert_eq!(shown["high_watermark"], 8);
    assert_eq!(shown["lag"], 0);
    assert_eq!(shown["statements_stored"], 4);
    assert_eq!(shown["dead_letters"], 0);
    assert!(shown["topic"].as_str().unwrap().ends_with(&name));
    assert!(shown["owner"].is_string());
    assert!(shown["started_at"].is_string() && shown["expires_at"].is_string());
    let row = db
        .query_one(
            "SELECT course, channel, ts = '2026-11-28T09:00:00Z'::timestamptz FROM statements \
             WHERE import_id = $1 AND statement_id = 'c'",
            &[&import],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "go");
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert!(row.get::<_, bool>(2));

    let (status, body) = json(app.get(&format!("/jobs?import={import}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (_, body) = json(app.get("/jobs?state=stopped").await).await;
    assert_eq!(body["data"], json!([]));
    let (status, body) = json(app.get("/jobs?state=sleeping").await).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, _) = json(app.get("/jobs/0000000000000000").await).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn invalid_statements_are_named_and_nothing_is_produced() {
    let app = spawn().await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1]).await;
    let mut missing_course = streams::statement("y", import, 1);
    missing_course.as_object_mut().unwrap().remove("course");
    let items = json!([
        streams::statement("x", import, 1),
        missing_course,
        streams::statement("z", import, 99),
        streams::statement("", import, 1),
    ]);
    let (status, body) = app.post_statements(import, &items).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    let fields = body["error"]["fields"].as_object().unwrap();
    assert!(fields.contains_key("[1].course"), "{body}");
    assert!(fields.contains_key("[2].citizen_id"), "{body}");
    assert!(fields.contains_key("[3].statement_id"), "{body}");
    assert_eq!(fields.len(), 3);

    let response = app
        .request(Method::POST, &format!("/imports/{import}/statements"))
        .header("content-type", "application/json")
        .body(r#"[{"oops"}]"#)
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app.post_statements(import + 100, &json!([])).await;
    assert_eq!(status, 400); // empty body is refused before the import is looked up
    let (status, body) = app
        .post_statements(import + 100, &json!([streams::statement("q", 0, 1)]))
        .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    // The job exists (reconciled from PostgreSQL) but its topic is empty.
    let shown = eventually("the topic", WAIT, || async {
        let (status, body) = json(
            app.get(&format!("/jobs/{}", common::job_name(&db, import).await))
                .await,
        )
        .await;
        (status == 200 && body["data"]["high_watermark"].is_number()).then(|| body["data"].clone())
    })
    .await;
    assert_eq!(shown["high_watermark"], 0);
    assert_eq!(streams::stored(&db, import).await, 0);
}

#[tokio::test]
async fn poison_messages_become_dead_letters_and_the_job_keeps_going() {
    let app = spawn().await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1, 2]).await;
    let name = common::job_name(&db, import).await;
    let topic = eventually("a running job", WAIT, || async {
        let (status, body) = json(app.get(&format!("/jobs/{name}")).await).await;
        (status == 200 && body["data"]["state"] == "running")
            .then(|| body["data"]["topic"].as_str().unwrap().to_owned())
    })
    .await;

    let mut bad_score = streams::statement("m", import, 1);
    bad_score["score"] = json!("high");
    let records: Vec<(String, Vec<u8>)> = [
        streams::statement("good-1", import, 1).to_string(),
        "this is not JSON".to_owned(),
        bad_score.to_string(),
        streams::statement("stranger", import, 42).to_string(),
        streams::statement("other-import", import + 1, 1).to_string(),
        streams::statement("good-2", import, 2).to_string(),
    ]
    .into_iter()
    .map(|payload| ("1".to_owned(), payload.into_bytes()))
    .collect();
    let config = insikt::config::Config::from_env();
    streams::producer(&config)
        .send_all(&topic, records)
        .await
        .unwrap();

    let shown = eventually("everything consumed", WAIT, || async {
        let shown = app.job(&name).await;
        (shown["committed_offset"] == 6).then_some(shown)
    })
    .await;
    assert_eq!(shown["statements_stored"], 2);
    assert_eq!(shown["dead_letters"], 4);
    assert_eq!(shown["state"], "running");

    let (status, body) = json(app.get(&format!("/imports/{import}/dead-letters")).await).await;
    assert_eq!(status, 200, "{body}");
    let letters = body["data"].as_array().unwrap();
    assert_eq!(letters.len(), 4);
    assert_eq!(letters[0]["payload"], "this is not JSON");
    assert_eq!(letters[0]["offset"], 1);
    let reasons: Vec<&str> = letters
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons[0].starts_with("payload: invalid JSON"),
        "{reasons:?}"
    );
    assert!(reasons[1].starts_with("score"), "{reasons:?}");
    assert!(reasons[2].starts_with("citizen_id"), "{reasons:?}");
    assert!(reasons[3].starts_with("foreign import"), "{reasons:?}");
    // Paging: after the second letter's id come exactly the third and fourth,
    // one at a time with limit=1.
    let second = letters[1]["id"].as_i64().unwrap();
    let page = |query: String| {
        let app = &app;
        async move {
            let (status, body) = json(
                app.get(&format!("/imports/{import}/dead-letters?{query}"))
                    .await,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["data"].clone()
        }
    };
    assert_eq!(page(format!("after={second}")).await, json!(letters[2..]));
    assert_eq!(
        page(format!("after={second}&limit=1")).await,
        json!([letters[2]])
    );
    let third = letters[2]["id"].as_i64().unwrap();
    assert_eq!(
        page(format!("after={third}&limit=1")).await,
        json!([letters[3]])
    );
    let last = letters[3]["id"].as_i64().unwrap();
    assert_eq!(page(format!("after={last}")).await, json!([]));
    let (status, _) = json(app.get("/imports/999/dead-letters").await).await;
    assert_eq!(status, 404);
}

async fn control(base: &str, name: &str, action: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{base}/jobs/{name}/{action}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    json(request.send().await.unwrap()).await
}

#[tokio::test]
async fn stop_and_start_need_the_token_are_idempotent_and_survive_a_restart() {
    let database = TestDatabase::create().await;
    let mut template = common::test_config(&database);
    streams::configure(&mut template);
    let first = Served::start(streams::served_config(&database, &template)).await;
    let base = first.url("");
    let db = common::connect(&database.url).await;
    let import = streams::create_import(&db, &[1]).await;
    let name = common::job_name(&db, import).await;
    let client = reqwest::Client::new();
    let post = |base: String, items: Value| {
        let client = client.clone();
        async move {
            json(
                client
                    .post(format!("{base}/imports/{import}/statements"))
                    .json(&items)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (status, body) = post(base.clone(), json!([streams::statement("1", import, 1)])).await;
    assert_eq!(status, 202, "{body}");
    eventually("the first statement", WAIT, || async {
        (streams::stored(&db, import).await == 1).then_some(())
    })
    .await;
    eventually("its commit marker stepped over", WAIT, || async {
        let (_, body) = json(
            client
                .get(format!("{base}/jobs/{name}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        (body["data"]["committed_offset"] == 2).then_some(())
    })
    .await;

    let (status, body) = control(&base, &name, "stop", None).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, body) = control(&base, &name, "stop", Some("wrong")).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, _) = control(&base, "0000000000000000", "stop", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 404);
    for _ in 0..2 {
        let (status, body) = control(&base, &name, "stop", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["state"], "stopped");
    }
    let (status, _) = post(base.clone(), json!([streams::statement("2", import, 1)])).await;
    assert_eq!(status, 202);

    // A restart keeps the job stopped: the statement waits in the topic.
    first.stop().await;
    let second = Served::start(streams::served_config(&database, &template)).await;
    let base = second.url("");
    let (_, body) = json(
        client
            .get(format!("{base}/jobs/{name}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["data"]["state"], "stopped");
    // Two requests of one statement each, each with its commit marker.
    assert_eq!(body["data"]["high_watermark"], 4);
    // A second import, made after the restart: once its job has stored a
    // marker, the restarted supervisor has reconciled every job (the pass
    // that started that one looked at this one too) and kept reading.
    let other = streams::create_import(&db, &[1]).await;
    let (status, body) = json(
        client
            .post(format!("{base}/imports/{other}/statements"))
            .json(&json!([streams::statement("marker", other, 1)]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    eventually("the marker stored", WAIT, || async {
        (streams::stored(&db, other).await == 1).then_some(())
    })
    .await;
    let (_, body) = json(
        client
            .get(format!("{base}/jobs/{name}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["data"]["state"], "stopped");
    assert_eq!(body["data"]["lag"], 2);
    assert_eq!(streams::stored(&db, import).await, 1);

    for _ in 0..2 {
        let (status, body) = control(&base, &name, "start", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        assert_ne!(body["data"]["state"], "stopped");
    }
    eventually("the waiting statement", WAIT, || async {
        (streams::stored(&db, import).await == 2).then_some(())
    })
    .await;
    second.stop().await;
    drop(database);
}

#[tokio::test]
async fn expiry_archives_exactly_the_unconsumed_rest() {
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        config.retention = Duration::from_secs(20);
    })
    .await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1]).await;
    let name = common::job_name(&db, import).await;
    let consumed: Vec<Value> = (0..5)
        .map(|i| streams::statement(&format!("c{i}"), import, 1))
        .collect();
    let (status, body) = app.post_statements(import, &Value::Array(consumed)).await;
    assert_eq!(status, 202, "{body}");
    eventually(
        "5 stored and their commit marker stepped over",
        WAIT,
        || async { (app.job(&name).await["committed_offset"] == 6).then_some(()) },
    )
    .await;
    assert_eq!(streams::stored(&db, import).await, 5);
    let (status, body) = json(
        app.request(Method::POST, &format!("/jobs/{name}/stop"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rest: Vec<Value> = (0..7)
        .map(|i| streams::statement(&format!("r{i}"), import, 1))
        .collect();
    let (status, body) = app.post_statements(import, &Value::Array(rest)).await;
    assert_eq!(status, 202, "{body}");

    let shown = eventually("expiry", WAIT, || async {
        let shown = app.job(&name).await;
        (shown["state"] == "expired").then_some(shown)
    })
    .await;
    // 12 records and a commit marker after each request's 5 and 7.
    assert_eq!(shown["committed_offset"], 14);
    assert_eq!(shown["lag"], 0);
    assert_eq!(streams::stored(&db, import).await, 5);

    let rows = db
        .query(
            "SELECT from_offset, to_offset, messages, url FROM job_archives WHERE job = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].get::<_, i64>(0), rows[0].get::<_, i64>(1)),
        (6, 14)
    );
    assert_eq!(rows[0].get::<_, i64>(2), 7);
    let url: String = rows[0].get(3);
    let path = url.strip_prefix("file://").expect("a file:// URL");
    let dir = std::path::Path::new(path)
        .parent()
        .unwrap()
        .parent()
        .unwrap();
    let lines = streams::archived(dir, &name);
    assert_eq!(
        streams::statement_ids(&lines),
        (0..7).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    let offsets: Vec<i64> = lines
        .iter()
        .map(|l| l["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, (6..13).collect::<Vec<_>>());

    // The API lists the same file.
    let (status, body) = json(app.get(&format!("/jobs/{name}/archives")).await).await;
    assert_eq!(status, 200, "{body}");
    let files = body["data"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{body}");
    assert_eq!(
        (&files[0]["from_offset"], &files[0]["to_offset"]),
        (&json!(6), &json!(14))
    );
    assert_eq!(files[0]["count"], 7);
    // Named within the archive, never by the store's absolute path.
    assert_eq!(
        files[0]["object"],
        format!("{name}/0-6-14.ndjson.gz").as_str()
    );
    assert!(url.ends_with(files[0]["object"].as_str().unwrap()));
    assert!(!body.to_string().contains("file://"), "{body}");
    let (status, body) = json(app.get("/jobs/no-such-job/archives").await).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");

    // Expired is final: no start, no new statements.
    let (status, _) = json(
        app.request(Method::POST, &format!("/jobs/{name}/start"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = app
        .post_statements(import, &json!([streams::statement("late", import, 1)]))
        .await;
    assert_eq!(status, 409);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_killed_service_resumes_and_stores_every_statement_exactly_once() {
    const TOTAL: usize = 20_000;
    let database = TestDatabase::create().await;
    let mut template = common::test_config(&database);
    streams::configure(&mut template);
    let db = common::connect(&database.url).await;
    let citizens: Vec<i32> = (0..100).collect();
    let import = streams::create_import(&db, &citizens).await;
    let port = streams::free_port();

    let mut service = streams::binary(&database, &template, "kill-test", port);
    let topic: String = eventually("a running job", WAIT, || async {
        let row = db
            .query_opt(
                "SELECT topic FROM jobs WHERE import_id = $1 AND state = 'running'",
                &[&import],
            )
            .await
            .unwrap();
        row.map(|r| r.get(0))
    })
    .await;

    let producer = streams::producer(&template);
    let feeding = tokio::spawn(async move {
        for chunk in 0..(TOTAL / 1000) {
            let records = (chunk * 1000..(chunk + 1) * 1000)
                .map(|i| {
                    let citizen = (i % 100) as i32;
                    let payload = streams::statement(&format!("s{i}"), import, citizen);
                    (citizen.to_string(), payload.to_string().into_bytes())
                })
                .collect();
            producer.send_all(&topic, records).await.unwrap();
        }
    });

    // Kill -9 while statements are still streaming in.
    eventually("some statements stored", WAIT, || async {
        (streams::stored(&db, import).await > 2000).then_some(())
    })
    .await;
    service.start_kill().unwrap();
    service.wait().await.unwrap();
    let at_kill = streams::stored(&db, import).await;
    eprintln!("killed with {at_kill} of {TOTAL} statements stored");

    let mut service = streams::binary(&database, &template, "kill-test", port);
    feeding.await.unwrap();
    eventually("every statement", Duration::from_secs(180), || async {
        let next: Option<i64> = db
            .query_one(
                "SELECT sum(next_offset)::bigint FROM job_offsets o JOIN jobs j ON j.name = o.job                  WHERE j.import_id = $1",
                &[&import],
            )
            .await
            .unwrap()
            .get(0);
        (next == Some(TOTAL as i64)).then_some(())
    })
    .await;
    assert_eq!(
        streams::stored(&db, import).await,
        TOTAL as i64,
        "killed at {at_kill}"
    );
    let distinct_offsets = streams::count(
        &db,
        "SELECT count(DISTINCT kafka_offset) FROM statements WHERE import_id = $1",
        import,
    )
    .await;
    assert_eq!(distinct_offsets, TOTAL as i64);
    let dead = streams::count(
        &db,
        "SELECT count(*) FROM dead_letters WHERE import_id = $1",
        import,
    )
    .await;
    assert_eq!(dead, 0);
    streams::counts_match_statements(&db, import).await;

    // SIGTERM: a graceful stop after the current batch.
    let pid = service.id().unwrap() as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = tokio::time::timeout(WAIT, service.wait())
        .await
        .expect("the service stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    drop(database);
}

#[tokio::test]
async fn a_failing_job_restarts_with_backoff_then_is_marked_failed_and_can_be_started() {
    // A tighter failure policy than the default (5 failures, 0.5 s doubling).
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        config.job_max_failures = 3;
        config.job_backoff = Duration::from_millis(100);
    })
    .await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1]).await;
    let name = common::job_name(&db, import).await;
    // A failure of the database itself, tied to no record (a trigger that
    // raises, as a broken deployment would), fails every write of the batch.
    db.batch_execute(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'the database is broken'; END $$; \
         CREATE TRIGGER boom BEFORE INSERT ON statements FOR EACH ROW EXECUTE FUNCTION boom();",
    )
    .await
    .unwrap();
    let statement = streams::statement("b", import, 1);
    let (status, body) = app.post_statements(import, &json!([statement])).await;
    assert_eq!(status, 202, "{body}");

    let shown = eventually("the job to fail for good", WAIT, || async {
        let shown = app.job(&name).await;
        (shown["state"] == "failed").then_some(shown)
    })
    .await;
    assert!(shown["last_error"].is_string(), "{shown}");
    assert_eq!(shown["committed_offset"], 0);
    // The supervisor survived its child: the other routes still work.
    let (status, _) = json(app.get("/jobs").await).await;
    assert_eq!(status, 200);

    db.batch_execute("DROP TRIGGER boom ON statements")
        .await
        .unwrap();
    let (status, body) = json(
        app.request(Method::POST, &format!("/jobs/{name}/start"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually("the statement after the start", WAIT, || async {
        (streams::stored(&db, import).await == 1).then_some(())
    })
    .await;
    assert_eq!(app.job(&name).await["state"], "running");
}

#[tokio::test]
async fn without_kafka_the_job_stays_pending_and_ingestion_is_unavailable() {
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        config.kafka_brokers = "127.0.0.1:1".to_owned();
    })
    .await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1]).await;
    let (status, body) = app
        .post_statements(import, &json!([streams::statement("p", import, 1)]))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (503, "kafka_unavailable"),
        "{body}"
    );
    let shown = app.job(&common::job_name(&db, import).await).await;
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["high_watermark"], Value::Null);
    assert!(!body.to_string().contains("127.0.0.1:1"));
}

#[tokio::test]
async fn a_running_job_expires_with_every_statement_either_stored_or_archived() {
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        config.retention = Duration::from_secs(6);
    })
    .await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1]).await;
    let name = common::job_name(&db, import).await;
    let items: Vec<Value> = (0..50)
        .map(|i| streams::statement(&format!("e{i}"), import, 1))
        .collect();
    let (status, body) = app.post_statements(import, &Value::Array(items)).await;
    assert_eq!(status, 202, "{body}");

    let shown = eventually("expiry", WAIT, || async {
        let shown = app.job(&name).await;
        (shown["state"] == "expired").then_some(shown)
    })
    .await;
    // 50 records and the request's commit marker.
    assert_eq!(shown["committed_offset"], 51);
    let stored = streams::stored_ids(&db, import).await;
    let urls: Vec<String> = db
        .query("SELECT url FROM job_archives WHERE job = $1", &[&name])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut archived = Vec::new();
    for url in &urls {
        let path = url.strip_prefix("file://").unwrap();
        let lines = streams::gunzip_lines(&std::fs::read(path).unwrap());
        archived.extend(streams::statement_ids(&lines));
    }
    // Exactly once across both places, whatever the timing.
    let mut all: Vec<String> = stored.iter().chain(&archived).cloned().collect();
    all.sort();
    let mut expected: Vec<String> = (0..50).map(|i| format!("e{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "stored {stored:?}, archived {archived:?}");
    for url in &urls {
        let _ = std::fs::remove_file(url.strip_prefix("file://").unwrap());
    }
}

/// The batch write on its own (no job running): a batch whose ids are new is
/// copied; one holding an id stored before falls back to skipping it, in the
/// same transaction as its dead letters and offsets, and within a batch the
/// first copy of an id wins.
#[tokio::test]
async fn a_batch_write_skips_stored_ids_and_keeps_the_first_copy() {
    use insikt::statements::{write_batch, Batch, Rejected, Written};

    let fixture = BatchFixture::create().await;
    let (db, import) = (&fixture.db, fixture.import);
    let mut client = fixture.pool.get().await.unwrap();
    let received = |id: &str, offset: i64| fixture.received(id, offset);

    let first = Batch {
        accepted: vec![received("a", 0), received("b", 1), received("a", 2)],
        rejected: vec![],
        next_offsets: vec![(0, 3)],
        ..Batch::default()
    };
    let written = write_batch(&mut client, "batch-test", import, &first, "me")
        .await
        .unwrap();
    let expected = Written {
        stored: 2,
        duplicates: 1,
        dead_letters: 0,
    };
    assert_eq!(written, expected);

    let second = Batch {
        accepted: vec![received("c", 3), received("b", 4), received("c", 6)],
        rejected: vec![Rejected {
            partition: 0,
            offset: 5,
            payload: b"{oops".to_vec(),
            reason: "payload: invalid JSON".into(),
        }],
        next_offsets: vec![(0, 7)],
        expected_offsets: [(0, 3)].into(),
        ..Batch::default()
    };
    // A batch continuing from offsets that are not the stored ones (as after
    // a PostgreSQL crash lost the commit before it) writes nothing.
    let lost = Batch {
        expected_offsets: [(0, 5)].into(),
        ..second.clone()
    };
    let moved = write_batch(&mut client, "batch-test", import, &lost, "me").await;
    assert!(
        matches!(moved, Err(insikt::db::DbError::OffsetsMoved(_))),
        "{moved:?}"
    );
    let fresh = Batch {
        expected_offsets: Default::default(),
        ..second.clone()
    };
    let moved = write_batch(&mut client, "batch-test", import, &fresh, "me").await;
    assert!(
        matches!(moved, Err(insikt::db::DbError::OffsetsMoved(_))),
        "{moved:?}"
    );
    assert_eq!(
        fixture.stored().await,
        (vec![("a".into(), 0), ("b".into(), 1)], Some(3))
    );
    let written = write_batch(&mut client, "batch-test", import, &second, "me")
        .await
        .unwrap();
    let expected = Written {
        stored: 1,
        duplicates: 2,
        dead_letters: 1,
    };
    assert_eq!(written, expected);

    let stored = (
        vec![("a".into(), 0), ("b".into(), 1), ("c".into(), 3)],
        Some(7),
    );
    assert_eq!(fixture.stored().await, stored);
    let with_channel =
        "SELECT count(*) FROM statements WHERE import_id = $1 AND channel IS NOT NULL";
    assert_eq!(streams::count(db, with_channel, import).await, 0);
    let dead = "SELECT count(*) FROM dead_letters WHERE import_id = $1";
    assert_eq!(streams::count(db, dead, import).await, 1);

    // An instance that no longer owns the job writes nothing at all.
    let third = Batch {
        accepted: vec![received("d", 7)],
        rejected: vec![Rejected {
            partition: 0,
            offset: 8,
            payload: b"{oops".to_vec(),
            reason: "payload: invalid JSON".into(),
        }],
        next_offsets: vec![(0, 9)],
        expected_offsets: [(0, 7)].into(),
        ..Batch::default()
    };
    let fenced = write_batch(&mut client, "batch-test", import, &third, "not-me").await;
    assert!(
        matches!(fenced, Err(insikt::db::DbError::Stale(_))),
        "{fenced:?}"
    );
    assert_eq!(fixture.stored().await, stored);
    assert_eq!(streams::count(db, dead, import).await, 1);
}

/// A job's `batch-test` row owned by `me`, over an import of citizens 1 and 2.
struct BatchFixture {
    _database: TestDatabase,
    db: tokio_postgres::Client,
    import: i64,
    pool: insikt::db::Pool,
}

impl BatchFixture {
    async fn create() -> Self {
        let database = TestDatabase::create().await;
        let db = common::connect(&database.url).await;
        let import = streams::create_import(&db, &[1, 2]).await;
        db.execute(
            "INSERT INTO jobs (name, import_id, topic, expires_at, owner) \
             VALUES ('batch-test', $1, 'batch-test', now() + interval '1 day', 'me')",
            &[&import],
        )
        .await
        .unwrap();
        let pool = insikt::db::pool(&database.url, 2).unwrap();
        Self {
            _database: database,
            db,
            import,
            pool,
        }
    }

    /// Statement `id` of citizen 1, read at `offset` of partition 0.
    fn received(&self, id: &str, offset: i64) -> insikt::statements::Received {
        let mut value = streams::statement(id, self.import, 1);
        value["channel"] = Value::Null;
        let statement = insikt::statements::Statement::from_value(&value, None).unwrap();
        insikt::statements::Received {
            ts: statement.ts.unwrap(),
            statement,
            partition: 0,
            offset,
        }
    }

    /// The stored statement ids with the offset of the copy kept, and the
    /// job's next offset on partition 0.
    async fn stored(&self) -> (Vec<(String, i64)>, Option<i64>) {
        let rows = self
            .db
            .query(
                "SELECT statement_id, kafka_offset FROM statements \
                 WHERE import_id = $1 ORDER BY statement_id",
                &[&self.import],
            )
            .await
            .unwrap();
        let next = self
            .db
            .query_opt(
                "SELECT next_offset FROM job_offsets WHERE job = 'batch-test' AND partition = 0",
                &[],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        (rows.iter().map(|r| (r.get(0), r.get(1))).collect(), next)
    }
}

/// Two batches of a job written at once on two connections: the later one
/// leaves the statement ids of the earlier one to it (or the two would wait
/// for each other: the earlier for the later's row, the later for the
/// earlier's commit), and commits only after it, so the stored offsets never
/// pass a batch that is not stored; if the earlier one does not commit,
/// neither does the later.
#[tokio::test]
async fn overlapping_batch_writes_commit_in_stream_order() {
    use insikt::statements::{write_batch, write_batch_after, Batch, Counts, Written};

    let fixture = BatchFixture::create().await;
    let mut first_client = fixture.pool.get().await.unwrap();
    let mut second_client = fixture.pool.get().await.unwrap();
    let first = Batch {
        accepted: vec![fixture.received("a", 0), fixture.received("b", 1)],
        rejected: vec![],
        next_offsets: vec![(0, 2)],
        ..Batch::default()
    };
    let second = Batch {
        accepted: vec![fixture.received("b", 2), fixture.received("c", 3)],
        rejected: vec![],
        next_offsets: vec![(0, 4)],
        expected_offsets: [(0, 2)].into(),
        ..Batch::default()
    };

    // The later batch goes first, up to its wait for the earlier one's commit.
    let (at_gate, reached_gate) = tokio::sync::oneshot::channel::<()>();
    let (first_committed, committed) = tokio::sync::oneshot::channel::<()>();
    let later = write_batch_after(
        &mut second_client,
        "batch-test",
        fixture.import,
        &second,
        "me",
        Some(&first),
        async {
            let _ = at_gate.send(());
            committed.await.is_ok()
        },
    );
    let earlier = async {
        reached_gate.await.unwrap();
        let written = tokio::time::timeout(
            Duration::from_secs(20),
            write_batch(
                &mut first_client,
                "batch-test",
                fixture.import,
                &first,
                "me",
            ),
        )
        .await
        .expect("the earlier batch waited for the later one")
        .unwrap();
        // Committed alone: the later batch is still waiting.
        let (ids, next) = fixture.stored().await;
        assert_eq!(ids, [("a".into(), 0), ("b".into(), 1)]);
        assert_eq!(next, Some(2));
        first_committed.send(()).unwrap();
        written
    };
    let (later, earlier) = tokio::join!(later, earlier);
    let written = |stored, duplicates| Written {
        stored,
        duplicates,
        dead_letters: 0,
    };
    assert_eq!(earlier, written(2, 0));
    // Counted: what this batch stored, not the id it left to the earlier one.
    let stored_c = fixture.received("c", 3);
    let mut counts = Counts::default();
    counts.add(std::iter::once(&stored_c));
    assert_eq!(later.unwrap(), (written(1, 1), counts));
    let (ids, next) = fixture.stored().await;
    assert_eq!(ids, [("a".into(), 0), ("b".into(), 1), ("c".into(), 3)]);
    assert_eq!(next, Some(4));

    // An earlier batch that did not commit takes the later one down with it.
    let third = Batch {
        accepted: vec![fixture.received("d", 4)],
        rejected: vec![],
        next_offsets: vec![(0, 5)],
        expected_offsets: [(0, 4)].into(),
        ..Batch::default()
    };
    let refused = write_batch_after(
        &mut second_client,
        "batch-test",
        fixture.import,
        &third,
        "me",
        None,
        async { false },
    )
    .await;
    assert!(
        matches!(refused, Err(insikt::db::DbError::NotCommitted(_))),
        "{refused:?}"
    );
    assert_eq!(fixture.stored().await, (ids, Some(4)));
}

/// A crash between a batch's commit and the fold of its counts leaves stored
/// statements uncounted (for demand); the job counts them when it starts.
#[tokio::test]
async fn a_starting_job_counts_what_was_stored_but_never_folded() {
    let database = TestDatabase::create().await;
    let mut template = common::test_config(&database);
    streams::configure(&mut template);
    let served = Served::start(streams::served_config(&database, &template)).await;
    let base = served.url("");
    let db = common::connect(&database.url).await;
    let import = streams::create_import(&db, &[1, 2]).await;
    let name = common::job_name(&db, import).await;
    let items: Vec<Value> = (0..40)
        .map(|i| {
            let mut item = streams::statement(&format!("s{i}"), import, 1 + i % 2);
            item["course"] = json!(["rust", "go", "sql"][i as usize % 3]);
            if i % 4 == 0 {
                item["channel"] = Value::Null;
            }
            item
        })
        .collect();
    let (status, body) = json(
        reqwest::Client::new()
            .post(format!("{base}/imports/{import}/statements"))
            .json(&items)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    eventually("every statement", WAIT, || async {
        (streams::stored(&db, import).await == 40).then_some(())
    })
    .await;
    streams::counts_match_statements(&db, import).await;

    // As if the process had died after committing the batches, before folding them.
    let (status, body) = control(&base, &name, "stop", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    db.execute(
        "DELETE FROM statement_counts WHERE import_id = $1",
        &[&import],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE statement_counts_offsets SET next_offset = 0 WHERE import_id = $1",
        &[&import],
    )
    .await
    .unwrap();

    let (status, body) = control(&base, &name, "start", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    streams::counts_match_statements(&db, import).await;
    let all_courses = streams::count(
        &db,
        "SELECT sum(statements)::bigint FROM statement_counts \
         WHERE import_id = $1 AND course IS NULL",
        import,
    )
    .await;
    assert_eq!(all_courses, 40);
}

/// Each request's statements are one Kafka transaction: a request one of
/// whose records Kafka refuses (over `message.max.bytes`) is aborted whole,
/// and none of its statements reaches the job, while the requests committed
/// beside it, in the same group of transactions, are stored exactly.
#[tokio::test]
async fn an_aborted_request_leaves_nothing_for_the_job_and_its_neighbours_are_stored() {
    let app = spawn().await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1, 2]).await;
    let mut huge = streams::statement("huge", import, 2);
    huge["text"] = json!("x".repeat(1_100_000));
    let doomed = json!([streams::statement("doomed", import, 1), huge]);
    let neighbours: Vec<Value> = (0..8)
        .map(|i| json!([streams::statement(&format!("n{i}"), import, 1)]))
        .collect();
    let (aborted, committed) = tokio::join!(
        app.post_statements(import, &doomed),
        futures_util::future::join_all(neighbours.iter().map(|n| app.post_statements(import, n))),
    );
    assert_eq!(aborted.0, 413, "{}", aborted.1);
    assert_eq!(error_code(&aborted.1), "statement_too_large");
    for (status, body) in &committed {
        assert_eq!(*status, 202, "{body}");
    }
    // A marker committed after everything: once it is stored, the job has
    // read past whatever the aborted transaction put in the topic.
    let (status, body) = app
        .post_statements(import, &json!([streams::statement("marker", import, 2)]))
        .await;
    assert_eq!(status, 202, "{body}");
    eventually("the marker", WAIT, || async {
        db.query_opt(
            "SELECT 1 FROM statements WHERE import_id = $1 AND statement_id = 'marker'",
            &[&import],
        )
        .await
        .unwrap()
    })
    .await;
    let stored = streams::stored_ids(&db, import).await;
    let mut expected: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
    expected.push("marker".into());
    expected.sort();
    assert_eq!(stored, expected);
    assert_eq!(
        app.job(&common::job_name(&db, import).await).await["dead_letters"],
        0
    );
}

/// A NUL character cannot be stored in PostgreSQL text: the API refuses it
/// naming the item, and a record with one, produced straight to the topic,
/// is a dead letter while the job goes on with the rest.
#[tokio::test]
async fn a_nul_character_is_refused_by_the_api_and_dead_lettered_from_the_topic() {
    let app = spawn().await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1]).await;
    for field in ["statement_id", "course", "channel", "text"] {
        let mut nul = streams::statement("n", import, 1);
        nul[field] = json!("a\u{0}b");
        let items = json!([streams::statement("fine", import, 1), nul]);
        let (status, body) = app.post_statements(import, &items).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "validation_failed"),
            "{body}"
        );
        let key = format!("[1].{field}");
        assert!(body["error"]["fields"][&key].is_string(), "{key}: {body}");
    }
    let name = common::job_name(&db, import).await;
    let topic = eventually("a running job", WAIT, || async {
        let (_, body) = json(app.get(&format!("/jobs/{name}")).await).await;
        (body["data"]["state"] == "running")
            .then(|| body["data"]["topic"].as_str().unwrap().to_owned())
    })
    .await;
    let mut nul = streams::statement("nul", import, 1);
    nul["text"] = json!("a\u{0}b");
    let records = [
        streams::statement("before", import, 1),
        nul,
        streams::statement("after", import, 1),
    ]
    .iter()
    .map(|s| ("1".to_owned(), s.to_string().into_bytes()))
    .collect();
    streams::producer(&insikt::config::Config::from_env())
        .send_all(&topic, records)
        .await
        .unwrap();
    eventually("the statements around it", WAIT, || async {
        (streams::stored(&db, import).await == 2).then_some(())
    })
    .await;
    let letters = eventually("its dead letter", WAIT, || async {
        let (_, body) = json(app.get(&format!("/imports/{import}/dead-letters")).await).await;
        let letters = body["data"].as_array()?.clone();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["offset"], 1);
    assert!(
        letters[0]["reason"].as_str().unwrap().starts_with("text"),
        "{letters:?}"
    );
    assert_eq!(app.job(&name).await["state"], "running");
}

/// A record PostgreSQL refuses for a reason tied to it alone (here a check
/// constraint the job knows nothing about) is isolated from its batch and
/// dead-lettered with PostgreSQL's reason; the rest of the batch is stored
/// and the job goes on.
#[tokio::test]
async fn a_record_postgres_refuses_is_isolated_as_a_dead_letter() {
    let app = spawn().await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1, 2]).await;
    db.batch_execute("ALTER TABLE statements ADD CONSTRAINT no_boom CHECK (course <> 'boom')")
        .await
        .unwrap();
    let mut items: Vec<Value> = (0..40)
        .map(|i| streams::statement(&format!("s{i}"), import, 1 + i % 2))
        .collect();
    for at in [3, 17] {
        items[at]["course"] = json!("boom");
    }
    // Already stored: the batch also takes the path that skips stored ids.
    let (status, body) = app.post_statements(import, &json!([items[5]])).await;
    assert_eq!(status, 202, "{body}");
    eventually("the first statement", WAIT, || async {
        (streams::stored(&db, import).await == 1).then_some(())
    })
    .await;
    let (status, body) = app.post_statements(import, &Value::Array(items)).await;
    assert_eq!(status, 202, "{body}");
    eventually("the other 38", WAIT, || async {
        (streams::stored(&db, import).await == 38).then_some(())
    })
    .await;
    let stored = streams::stored_ids(&db, import).await;
    assert!(!stored.contains(&"s3".to_owned()) && !stored.contains(&"s17".to_owned()));
    let letters = eventually("their dead letters", WAIT, || async {
        let (_, body) = json(app.get(&format!("/imports/{import}/dead-letters")).await).await;
        let letters = body["data"].as_array()?.clone();
        (letters.len() >= 2).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (letter, id) in letters.iter().zip(["s3", "s17"]) {
        assert!(
            letter["payload"]
                .as_str()
                .unwrap()
                .contains(&format!("\"{id}\"")),
            "{letter}"
        );
        assert!(
            letter["reason"].as_str().unwrap().contains("no_boom"),
            "{letter}"
        );
    }
    let name = common::job_name(&db, import).await;
    let shown = app.job(&name).await;
    assert_eq!(
        (shown["state"].as_str(), shown["dead_letters"].as_i64()),
        (Some("running"), Some(2))
    );
    streams::counts_match_statements(&db, import).await;
}

/// A job name holding NUL is a 400 naming the parameter on every job route,
/// not the 500 of PostgreSQL refusing the parameter (found by schemathesis).
#[tokio::test]
async fn a_job_name_with_a_nul_character_is_a_bad_request() {
    let app = spawn().await;
    let (status, body) = json(app.get("/jobs/a%00b").await).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    assert!(body["error"]["fields"]["name"].is_string(), "{body}");
    for action in ["stop", "start"] {
        let response = app
            .request(Method::POST, &format!("/jobs/a%00b/{action}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let (status, body) = json(response).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "bad_request"),
            "{action}: {body}"
        );
    }
}
