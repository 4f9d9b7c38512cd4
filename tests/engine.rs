//! The job engine at scale and under back-pressure, against the real broker
//! and PostgreSQL: one consumer per instance reads every stream, so a
//! stopped or slow job must not hold back another job's stream, and an
//! instance with a thousand running imports must fit the open-files limit
//! systemd gives a service by default.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::streams::{self, eventually};
use common::{json, TestApp, TestDatabase, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

/// Per import: stored statements, distinct source offsets, dead letters.
async fn tally(db: &tokio_postgres::Client, import: i64) -> (i64, i64, i64) {
    let count = |sql: &'static str| async move { streams::count(db, sql, import).await };
    (
        count("SELECT count(*) FROM statements WHERE import_id = $1").await,
        count("SELECT count(DISTINCT kafka_offset) FROM statements WHERE import_id = $1").await,
        count("SELECT count(*) FROM dead_letters WHERE import_id = $1").await,
    )
}

/// Statements `{tag}-{range}` of `import` produced straight to `topic`, in
/// chunks of 5,000.
async fn produce(
    producer: &insikt::kafka::Producer,
    topic: &str,
    import: i64,
    tag: &str,
    range: std::ops::Range<usize>,
) {
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(5000) {
        let records = chunk
            .iter()
            .map(|i| {
                let citizen = (*i % 10) as i32;
                let payload = streams::statement(&format!("{tag}-{i}"), import, citizen);
                (citizen.to_string(), payload.to_string().into_bytes())
            })
            .collect();
        producer.send_all(topic, records).await.unwrap();
    }
}

/// Three streams on one instance: `stopped`'s job is stopped and `slow`'s
/// cannot commit (the test holds its job's row locked, so its batches wait),
/// and both get far more records than a partition prefetches. The third
/// stream's records are stored meanwhile; the slow job's partition is
/// paused (its prefetch dropped); once the lock goes and the stopped job
/// starts, every stream is stored exactly once.
#[tokio::test]
async fn a_stopped_or_slow_job_does_not_hold_back_another_jobs_stream() {
    const HELD: usize = 20_000;
    let app = TestApp::spawn_with(streams::configure).await;
    let db = app.db().await;
    let citizens: Vec<i32> = (0..10).collect();
    let mut imports = Vec::new();
    for _ in 0..3 {
        imports.push(streams::create_import(&db, &citizens).await);
    }
    let (stopped, slow, free) = (imports[0], imports[1], imports[2]);
    let mut topics = Vec::new();
    for &import in &imports {
        let name = common::job_name(&db, import).await;
        let topic = eventually(&format!("job {name} running"), WAIT, || async {
            let (status, body) = json(app.get(&format!("/jobs/{name}")).await).await;
            (status == 200 && body["data"]["state"] == "running")
                .then(|| body["data"]["topic"].as_str().unwrap().to_owned())
        })
        .await;
        topics.push((name, topic));
    }
    let response = app
        .request(Method::POST, &format!("/jobs/{}/stop", topics[0].0))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The slow job's batches wait for this lock (their fence takes the row FOR SHARE).
    let mut locker = app.db().await;
    let lock = locker.transaction().await.unwrap();
    lock.execute(
        "SELECT 1 FROM jobs WHERE name = $1 FOR UPDATE",
        &[&topics[1].0],
    )
    .await
    .unwrap();

    let producer = streams::producer(&insikt::config::Config::from_env());
    produce(&producer, &topics[0].1, stopped, "stopped", 0..HELD).await;
    produce(&producer, &topics[1].1, slow, "slow", 0..HELD).await;
    produce(&producer, &topics[2].1, free, "free", 0..100).await;
    eventually("the free stream stored", WAIT, || async {
        (streams::stored(&db, free).await == 100).then_some(())
    })
    .await;
    let paused = format!("insikt_job_paused_total{{job=\"{}\"}}", topics[1].0);
    eventually("the slow job's partition paused", WAIT, || async {
        app.metric(&paused).await.filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(streams::stored(&db, stopped).await, 0);
    assert_eq!(streams::stored(&db, slow).await, 0);
    // And the free stream goes on while the others are held.
    produce(&producer, &topics[2].1, free, "free", 100..200).await;
    eventually("more of the free stream stored", WAIT, || async {
        (streams::stored(&db, free).await == 200).then_some(())
    })
    .await;
    assert_eq!(streams::stored(&db, slow).await, 0);

    lock.rollback().await.unwrap();
    let response = app
        .request(Method::POST, &format!("/jobs/{}/start", topics[0].0))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for (import, each) in [(stopped, HELD as i64), (slow, HELD as i64), (free, 200)] {
        eventually(&format!("import {import} stored"), WAIT, || async {
            (streams::stored(&db, import).await >= each).then_some(())
        })
        .await;
        assert_eq!(tally(&db, import).await, (each, each, 0), "import {import}");
        streams::counts_match_statements(&db, import).await;
    }
}

/// A stream idle for `INSIKT_STREAM_SLEEP_AFTER` sleeps (its partition
/// paused: the consumer fetches it no more) and wakes when written to:
/// through the API of the instance that reads it (which wakes it at once),
/// and straight to the topic by another producer (the lag sweep sees its end
/// move). Every statement is stored exactly once across the naps.
#[tokio::test]
async fn an_idle_stream_sleeps_and_wakes_when_written_to() {
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        config.stream_sleep_after = Duration::from_secs(1);
    })
    .await;
    let db = app.db().await;
    let citizens: Vec<i32> = (0..10).collect();
    let import = streams::create_import(&db, &citizens).await;
    let name = common::job_name(&db, import).await;
    let topic = streams::running_topic(&db, &name, WAIT).await;
    let slept = format!("insikt_job_slept_total{{job=\"{name}\"}}");
    let naps = || async { app.metric(&slept).await.unwrap_or(0.0) };
    let batch = |from: usize| {
        let items: Vec<Value> = (from..from + 100)
            .map(|i| streams::statement(&format!("nap-{i}"), import, (i % 10) as i32))
            .collect();
        json!(items)
    };

    // Asleep before anything was written, and it stays asleep (a nap that
    // ended by itself would show as more naps), then woken by a post.
    eventually("the idle stream asleep", WAIT, || async {
        (naps().await >= 1.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(naps().await, 1.0, "the stream woke up by itself");
    assert!(app.metric("insikt_streams_asleep").await >= Some(1.0));
    let asleep_since = naps().await;
    let posted = std::time::Instant::now();
    app.post_accepted(import, &batch(0)).await;
    eventually("the first post stored", WAIT, || async {
        (streams::stored(&db, import).await == 100).then_some(())
    })
    .await;
    println!(
        "stored {:?} after a post to a sleeping stream",
        posted.elapsed()
    );

    // Asleep again, then woken by records the instance did not write.
    eventually("the stream asleep again", WAIT, || async {
        (naps().await > asleep_since).then_some(())
    })
    .await;
    let producer = streams::producer(&insikt::config::Config::from_env());
    produce(&producer, &topic, import, "straight", 0..100).await;
    eventually("the straight records stored", WAIT, || async {
        (streams::stored(&db, import).await == 200).then_some(())
    })
    .await;
    assert_eq!(tally(&db, import).await, (200, 200, 0));
    streams::counts_match_statements(&db, import).await;
}

/// The topics the broker has, from one metadata request for all of them:
/// asking for a deleted topic by name could make the broker create it again.
fn broker_topics() -> std::collections::HashSet<String> {
    use insikt::kafka::Consumer;
    let brokers = insikt::config::Config::from_env().kafka_brokers;
    let lookup: rdkafka::consumer::BaseConsumer =
        insikt::kafka::client_config(&brokers, "insikt-test-topics")
            .create()
            .unwrap();
    let metadata = lookup
        .fetch_metadata(None, Duration::from_secs(30))
        .unwrap();
    metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_owned())
        .collect()
}

/// An expired stream leaves the broker: once the job's archive is recorded
/// its topic is deleted (by default), counted in a metric, and stays gone
/// while the job is listed and looked at; the job still shows its end.
#[tokio::test]
async fn an_expired_streams_topic_is_deleted_after_its_archive() {
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        config.retention = Duration::from_secs(15);
    })
    .await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1]).await;
    let name = common::job_name(&db, import).await;
    let items: Vec<Value> = (0..3)
        .map(|i| streams::statement(&format!("e{i}"), import, 1))
        .collect();
    app.post_accepted(import, &Value::Array(items)).await;
    let topic = eventually("3 stored", WAIT, || async {
        let job = app.job(&name).await;
        (job["committed_offset"] == 4).then(|| job["topic"].as_str().unwrap().to_owned())
    })
    .await;
    assert!(broker_topics().contains(&topic));
    eventually("expiry", WAIT, || async {
        (app.job(&name).await["state"] == "expired").then_some(())
    })
    .await;
    let archived: i64 = db
        .query_one("SELECT count(*) FROM job_archives WHERE job = $1", &[&name])
        .await
        .unwrap()
        .get(0);
    assert_eq!(archived, 0, "nothing was left unconsumed to archive");
    eventually("the topic deleted", WAIT, || async {
        (!broker_topics().contains(&topic)).then_some(())
    })
    .await;
    let deleted = app.metric("insikt_expired_topics_deleted_total").await;
    assert!(deleted.is_some_and(|n| n >= 1.0), "{deleted:?}");
    // Looked at and listed (and given time for the clients' periodic
    // requests), the topic does not come back.
    for _ in 0..5 {
        let job = app.job(&name).await;
        assert_eq!(job["state"], "expired");
        assert_eq!(job["high_watermark"], 4, "{job}");
        assert_eq!(job["lag"], 0, "{job}");
        let (status, body) = json(app.get("/jobs").await).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(!broker_topics().contains(&topic), "{topic} came back");
    let late = json!([streams::statement("late", import, 1)]);
    let (status, _) = app.post_statements(import, &late).await;
    assert_eq!(status, 409, "an expired stream takes nothing");
}

/// `insikt serve` (the real binary) under `ulimit -n 1024`, on `database`.
fn serve_limited(database: &TestDatabase, port: u16) -> tokio::process::Child {
    tokio::process::Command::new("bash")
        .args([
            "-c",
            "ulimit -n 1024 && exec \"$0\" serve",
            env!("CARGO_BIN_EXE_insikt"),
        ])
        .env("INSIKT_DATABASE_URL", &database.url)
        .env("INSIKT_LISTEN", format!("127.0.0.1:{port}"))
        .env("INSIKT_NO_MIGRATE", "true")
        .env("INSIKT_INSTANCE_ID", format!("thousand-{port}"))
        .env("INSIKT_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("INSIKT_SECRET", "test")
        .env(
            "INSIKT_ARCHIVE_DIR",
            std::env::temp_dir().join(format!("insikt-archive-{port}")),
        )
        .env("INSIKT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the insikt binary starts")
}

/// A thousand imports made through the API on one instance whose process
/// may open 1,024 files (systemd's default for a service): every job runs,
/// statements posted to a few of them (one request twice) are stored
/// exactly once, and the instance is ready. Its topics are deleted after.
#[tokio::test]
#[ignore = "makes 1,000 topics on the shared broker: scripts/test.sh runs it alone"]
async fn a_thousand_imports_run_on_one_instance_under_1024_open_files() {
    const IMPORTS: usize = 1000;
    let database = TestDatabase::create().await;
    let db = common::connect(&database.url).await;
    let port = streams::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut service = serve_limited(&database, port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    eventually("the service ready", WAIT, || async {
        let r = client.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    let body = json!({"citizens": (0..3).map(|id| json!({
        "citizen_id": id, "town": "Керчь", "street": "Иосифа Бродского", "building": "1к2",
        "apartment": 7, "name": "Иванов Иван Иванович", "birth_date": "26.12.1986",
        "gender": "male", "relatives": []})).collect::<Vec<_>>()});
    let posts = (0..8).map(|_| {
        let (client, base, body) = (client.clone(), base.clone(), body.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..IMPORTS / 8 {
                let response = client
                    .post(format!("{base}/imports"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let (status, body) = json(response).await;
                assert_eq!(status, 201, "{body}");
                ids.push(body["data"]["import_id"].as_i64().unwrap());
            }
            ids
        })
    });
    let mut imports = Vec::new();
    for post in posts {
        imports.extend(post.await.unwrap());
    }
    assert_eq!(imports.len(), IMPORTS);
    eventually("every job running", Duration::from_secs(600), || async {
        let running: i64 = db
            .query_one("SELECT count(*) FROM jobs WHERE state = 'running'", &[])
            .await
            .unwrap()
            .get(0);
        (running == IMPORTS as i64).then_some(())
    })
    .await;

    let some = [imports[0], imports[IMPORTS / 2], imports[IMPORTS - 1]];
    for &import in &some {
        let items: Vec<Value> = (0..50)
            .map(
                |i| json!({"statement_id": format!("s{i}"), "citizen_id": i % 3, "course": "rust"}),
            )
            .collect();
        // The first import's request twice: its ids dedup.
        let times = if import == some[0] { 2 } else { 1 };
        for _ in 0..times {
            let response = client
                .post(format!("{base}/imports/{import}/statements"))
                .json(&items)
                .send()
                .await
                .unwrap();
            let (status, body) = json(response).await;
            assert_eq!(status, 202, "{body}");
        }
    }
    for &import in &some {
        eventually(&format!("import {import}'s statements"), WAIT, || async {
            (streams::stored(&db, import).await >= 50).then_some(())
        })
        .await;
        assert_eq!(tally(&db, import).await, (50, 50, 0), "import {import}");
        streams::counts_match_statements(&db, import).await;
    }
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let pid = service.id().unwrap() as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = tokio::time::timeout(Duration::from_secs(120), service.wait())
        .await
        .expect("the service stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let stem = common::topic(&db, "insikt.statements", 1).await;
    let stem = stem.rsplit_once('.').unwrap().0.to_owned() + ".";
    common::delete_topics(&stem).await;
    drop(database);
}
