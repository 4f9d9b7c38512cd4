//! Erasure against the real PostgreSQL, Kafka and archive: an import with
//! everything derived from it (rows, job, topic, archive objects, kept
//! answers), and one resident (relatives kept symmetric, their statements,
//! counts and dead letters gone, the job reloaded so they stay gone).
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::streams::{self, eventually};
use common::{error_code, json, TestApp, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

fn citizen(id: u32, town: &str, relatives: &[u32]) -> Value {
    json!({
        "citizen_id": id, "town": town, "street": "Calle Mayor", "building": "3",
        "apartment": 2, "name": format!("Resident {id}"), "birth_date": "01.02.1990",
        "gender": "female", "relatives": relatives,
    })
}

async fn post_import(app: &TestApp, citizens: Vec<Value>) -> i64 {
    app.post_import(&json!({ "citizens": citizens })).await
}

async fn admin(app: &TestApp, method: Method, path: &str) -> (u16, Value) {
    json(
        app.request(method, path)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn rows(db: &tokio_postgres::Client, table: &str, import: i64) -> i64 {
    streams::count(
        db,
        &format!("SELECT count(*) FROM {table} WHERE import_id = $1"),
        import,
    )
    .await
}

/// Records produced straight to the job's topic (what the API would refuse).
async fn produce(topic: &str, payloads: Vec<String>) {
    let records = payloads
        .into_iter()
        .map(|payload| ("1".to_owned(), payload.into_bytes()))
        .collect();
    let config = insikt::config::Config::from_env();
    streams::producer(&config)
        .send_all(topic, records)
        .await
        .unwrap();
}

async fn running_topic(app: &TestApp, name: &str) -> String {
    eventually("a running job", WAIT, || async {
        let job = app.job(name).await;
        (job["state"] == "running").then(|| job["topic"].as_str().unwrap().to_owned())
    })
    .await
}

/// Whether the broker still lists `topic`. All topics' metadata is asked
/// for: asking for one by name would have the broker create it again
/// (`auto.create.topics.enable`, librdkafka's producer-side default).
async fn topic_exists(topic: &str) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let config = insikt::config::Config::from_env();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            insikt::kafka::client_config(&config.kafka_brokers, "insikt-test-topics")
                .create()
                .unwrap();
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        metadata.topics().iter().any(|t| t.name() == topic)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn erasing_an_import_removes_everything_derived_from_it() {
    let archive_dir =
        std::env::temp_dir().join(format!("insikt-archive-{}", uuid::Uuid::new_v4().simple()));
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        config.retention = Duration::from_secs(20);
        config.archive_dir = archive_dir.clone();
    })
    .await;
    let db = app.db().await;
    let import = post_import(
        &app,
        vec![citizen(1, "Soria", &[2]), citizen(2, "Soria", &[1])],
    )
    .await;
    let keep = post_import(&app, vec![citizen(1, "Burgos", &[])]).await;
    let name = common::job_name(&db, import).await;
    app.post_accepted(
        import,
        &json!([
            streams::statement("a", import, 1),
            streams::statement("b", import, 2)
        ]),
    )
    .await;
    app.post_accepted(keep, &json!([streams::statement("k", keep, 1)]))
        .await;
    let topic = running_topic(&app, &name).await;
    produce(
        &topic,
        vec![streams::statement("stranger", import, 9).to_string()],
    )
    .await;
    eventually("stored and dead-lettered", WAIT, || async {
        let job = app.job(&name).await;
        (job["statements_stored"] == 2 && job["dead_letters"] == 1).then_some(())
    })
    .await;
    // The rest of the stream goes to the archive at expiry.
    let (status, body) = admin(&app, Method::POST, &format!("/jobs/{name}/stop")).await;
    assert_eq!(status, 200, "{body}");
    app.post_accepted(import, &json!([streams::statement("late", import, 1)]))
        .await;
    eventually("expiry", WAIT, || async {
        (app.job(&name).await["state"] == "expired").then_some(())
    })
    .await;
    let (_, listing) = json(app.get(&format!("/jobs/{name}/archives")).await).await;
    assert_eq!(listing["data"].as_array().unwrap().len(), 1, "{listing}");
    assert!(archive_dir.join(&name).exists());
    // A kept answer, to be dropped with the import.
    assert_eq!(
        app.get(&format!("/imports/{import}/citizens"))
            .await
            .status(),
        200
    );

    // Only an admin erases.
    let response = app
        .request(Method::DELETE, &format!("/imports/{import}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let (status, erased) = admin(&app, Method::DELETE, &format!("/imports/{import}")).await;
    assert_eq!(status, 200, "{erased}");
    let erased = &erased["data"];
    assert_eq!(
        (
            &erased["citizens"],
            &erased["statements"],
            &erased["dead_letters"]
        ),
        (&json!(2), &json!(2), &json!(1)),
        "{erased}"
    );
    assert_eq!(erased["job"], name.as_str());
    assert_eq!(erased["topic"], "deleted", "{erased}");
    assert_eq!(
        erased["archive_objects"], 2,
        "an object and the manifest: {erased}"
    );

    for table in [
        "imports",
        "citizens",
        "statements",
        "statement_counts",
        "statement_counts_offsets",
        "dead_letters",
        "jobs",
    ] {
        assert_eq!(rows(&db, table, import).await, 0, "{table}");
    }
    for table in ["job_offsets", "job_archives"] {
        let by_name: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE job = $1"),
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(by_name, 0, "{table}");
    }
    // The broker deletes a topic asynchronously: its metadata follows.
    eventually(&format!("topic {topic} gone"), WAIT, || async {
        (!topic_exists(&topic).await).then_some(())
    })
    .await;
    let leftovers: Vec<_> = std::fs::read_dir(archive_dir.join(&name))
        .map(|dir| dir.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Nothing answers about it any more; the other import is untouched.
    for path in [
        "citizens",
        "citizens/birthdays",
        "demand?by=town",
        "dead-letters",
    ] {
        let (status, body) = json(app.get(&format!("/imports/{import}/{path}")).await).await;
        assert_eq!(
            (status, error_code(&body)),
            (404, "not_found"),
            "{path}: {body}"
        );
    }
    assert_eq!(rows(&db, "citizens", keep).await, 1);
    eventually("the other import's statement", WAIT, || async {
        (streams::stored(&db, keep).await == 1).then_some(())
    })
    .await;
    let (status, _) = admin(&app, Method::DELETE, &format!("/imports/{import}")).await;
    assert_eq!(status, 404);
    let (status, _) = admin(&app, Method::DELETE, "/imports/x").await;
    assert_eq!(status, 400);

    // The erasure is audited, with counts only.
    let (_, audit) = admin(&app, Method::GET, "/audit").await;
    let row = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "erased")
        .cloned()
        .unwrap();
    assert_eq!(row["import_id"], import);
    assert_eq!(row["job"], name.as_str());
    assert_eq!(row["route"], "/imports/{id}");
    assert!(!audit.to_string().contains("Resident"), "{audit}");
}

/// Every relation of the import is mutual.
async fn symmetric(db: &tokio_postgres::Client, import: i64) -> bool {
    let one_sided: i64 = db
        .query_one(
            "SELECT count(*) FROM citizens c, unnest(c.relatives) AS r(id)
              WHERE c.import_id = $1 AND NOT EXISTS (
                SELECT 1 FROM citizens o WHERE o.import_id = $1 AND o.citizen_id = r.id
                   AND c.citizen_id = ANY(o.relatives))",
            &[&import],
        )
        .await
        .unwrap()
        .get(0);
    one_sided == 0
}

#[tokio::test]
async fn erasing_a_resident_keeps_relatives_symmetric_and_the_job_refuses_them_after() {
    let app = TestApp::spawn_with(streams::configure).await;
    let db = app.db().await;
    let import = post_import(
        &app,
        vec![
            citizen(1, "Soria", &[1, 2, 3]),
            citizen(2, "Soria", &[1]),
            citizen(3, "Burgos", &[1, 4]),
            citizen(4, "Burgos", &[3]),
        ],
    )
    .await;
    let name = common::job_name(&db, import).await;
    app.post_accepted(
        import,
        &json!([
            streams::statement("a1", import, 1),
            streams::statement("a2", import, 1),
            streams::statement("b1", import, 2),
        ]),
    )
    .await;
    let topic = running_topic(&app, &name).await;
    let mut bad_one = streams::statement("bad-1", import, 1);
    bad_one["score"] = json!("high");
    let mut bad_two = streams::statement("bad-2", import, 2);
    bad_two["score"] = json!("high");
    produce(&topic, vec![bad_one.to_string(), bad_two.to_string()]).await;
    eventually("stored and dead-lettered", WAIT, || async {
        let job = app.job(&name).await;
        (job["statements_stored"] == 3 && job["dead_letters"] == 2).then_some(())
    })
    .await;
    streams::counts_match_statements(&db, import).await;
    // Kept answers that name resident 1.
    let (_, before) = json(
        app.get(&format!("/imports/{import}/citizens/birthdays"))
            .await,
    )
    .await;
    assert!(before.to_string().contains("\"citizen_id\":1"), "{before}");

    let path = format!("/imports/{import}/citizens/1");
    let response = app.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(
        response.status(),
        401,
        "open mode still needs the admin scope to erase"
    );
    let (status, erased) = admin(&app, Method::DELETE, &path).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(
        erased["data"],
        json!({"import_id": import, "citizen_id": 1, "relatives": 2, "statements": 2, "dead_letters": 1})
    );

    assert!(symmetric(&db, import).await);
    let lists: Vec<(i32, Vec<i32>)> = db
        .query(
            "SELECT citizen_id, relatives FROM citizens WHERE import_id = $1 ORDER BY citizen_id",
            &[&import],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(lists, [(2, vec![]), (3, vec![4]), (4, vec![3])]);
    let of_one = |table: &'static str| {
        let db = &db;
        async move {
            db.query_one(
                &format!("SELECT count(*) FROM {table} WHERE import_id = $1 AND citizen_id = 1"),
                &[&import],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(of_one("statements").await, 0);
    assert_eq!(of_one("statement_counts").await, 0);
    assert_eq!(streams::stored(&db, import).await, 1);
    streams::counts_match_statements(&db, import).await;
    let (_, letters) = json(app.get(&format!("/imports/{import}/dead-letters")).await).await;
    let letters = letters["data"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0]["payload"].as_str().unwrap().contains("bad-2"));

    // What the service answers no longer shows them.
    let (_, citizens) = json(app.get(&format!("/imports/{import}/citizens")).await).await;
    let ids: Vec<i64> = citizens["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["citizen_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2, 3, 4]);
    let (_, after) = json(
        app.get(&format!("/imports/{import}/citizens/birthdays"))
            .await,
    )
    .await;
    assert!(!after.to_string().contains("\"citizen_id\":1,"), "{after}");
    let (_, demand) = json(app.get(&format!("/imports/{import}/demand?by=town")).await).await;
    assert_eq!(
        demand["data"],
        json!([{"town": "Soria", "statements": 1, "residents": 1}])
    );
    // Nor do the insights, whose compact copies were made again without them.
    let (_, rates) = json(
        app.get(&format!("/imports/{import}/insights/rates?by=town"))
            .await,
    )
    .await;
    let soria = rates["data"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["town"] == "Soria")
        .cloned()
        .unwrap_or_else(|| panic!("{rates}"));
    assert_eq!(
        (
            soria["population"].clone(),
            soria["askers"].clone(),
            soria["statements"].clone()
        ),
        (json!(1), json!(1), json!(1)),
        "{rates}"
    );
    let in_segments: i64 = db
        .query_one(
            "SELECT COALESCE(sum(statements), 0)::int8 FROM insight_segments WHERE import_id = $1",
            &[&import],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_segments, 1, "segments hold only what statements keep");

    // The job runs again, with the residents as they are now.
    eventually("the job running again", WAIT, || async {
        let job = app.job(&name).await;
        (job["state"] == "running" && job["desired"] == "running").then_some(())
    })
    .await;
    let (status, body) = app
        .post_statements(import, &json!([streams::statement("again", import, 1)]))
        .await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    produce(
        &topic,
        vec![streams::statement("sneaked", import, 1).to_string()],
    )
    .await;
    eventually(
        "the erased resident's record dead-lettered",
        WAIT,
        || async { (app.job(&name).await["dead_letters"] == 2).then_some(()) },
    )
    .await;
    assert_eq!(of_one("statements").await, 0);

    // Unknown residents and imports.
    for (path, expected) in [
        (format!("/imports/{import}/citizens/1"), 404),
        (format!("/imports/{import}/citizens/99"), 404),
        (format!("/imports/{import}/citizens/-1"), 404),
        (format!("/imports/{}/citizens/2", import + 100), 404),
        (format!("/imports/{import}/citizens/x"), 400),
    ] {
        let (status, body) = admin(&app, Method::DELETE, &path).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
    let (_, audit) = admin(&app, Method::GET, "/audit").await;
    let erased: Vec<&Value> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "erased")
        .collect();
    assert_eq!(erased.len(), 1, "{audit}");
    assert_eq!(erased[0]["citizen_id"], 1);
    assert_eq!(
        erased[0]["detail"],
        json!({"relatives": 2, "statements": 2, "dead_letters": 1})
    );
}
