//! Benchmark (prints figures): archive and replay of N statements end to
//! end, through the service as users meet it. N statements in an import's
//! topic whose job's window is already over, so the job's first act is to
//! archive them all (read from Kafka, gzip, multipart upload, recorded in
//! `job_archives`); then `POST /imports/{id}/replay` stores them into a new
//! import, and a second replay stores nothing new. Prints each phase's rate
//! and the process's peak RSS (reset before each phase: run at two sizes to
//! see that it stays flat), and the replay's rate against PostgreSQL's own
//! load rate for the same rows (`psql \copy`, two sessions), as a ratio.
//!
//! The archive is `INSIKT_ARCHIVE_URL` (file:// or s3:// with the AWS_*
//! variables), default a temporary directory. Run through
//! `scripts/bench.sh archive`.
//!
//! Usage: cargo run --release --example bench_replay -- N
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use insikt::kafka::Producer;
use insikt::startup::Application;
use serde_json::Value;

mod common;

const ADMIN_TOKEN: &str = "bench-admin";
const CITIZENS: i64 = 1000;

#[tokio::main]
async fn main() {
    let total = common::size_arg(200_000);
    let (mut config, bench) = common::in_process("replay").await;
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.archive_dir = std::env::temp_dir().join("insikt-bench-archive");
    let db = &bench.client;
    let source = bench.import_with_citizens(CITIZENS).await;
    // The stream, filled before the service starts, and its job as the
    // supervisor makes it but with the window already over.
    let common::Stream { job, topic, .. } = bench.create_stream(&config, source).await;
    db.execute(
        "INSERT INTO jobs (name, import_id, topic, topic_ready, expires_at) \
         VALUES ($1, $2, $3, true, now())",
        &[&job, &source, &topic],
    )
    .await
    .unwrap();
    let producer = Producer::connect(&config.kafka_brokers, "insikt-bench-producer").unwrap();
    common::produce_statements(&producer, &topic, source, 0..total, CITIZENS).await;
    drop(producer);

    // Archive: from the service's start to the job expired with every
    // record in a recorded object.
    let archive_base = common::reset_peak_rss();
    let started = Instant::now();
    let app = Application::build(config.clone()).await.expect("app");
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    loop {
        let state: Option<String> = db
            .query_opt("SELECT state FROM jobs WHERE name = $1", &[&job])
            .await
            .unwrap()
            .map(|r| r.get(0));
        match state.as_deref() {
            Some("expired") => break,
            Some("failed") => panic!("the job failed while archiving"),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the archive is stuck"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let archive = started.elapsed();
    let archive_rss = common::peak_rss_mib();
    let (objects, archived, bytes): (i64, i64, i64) = db
        .query_one(
            "SELECT count(*), COALESCE(sum(messages), 0)::bigint, COALESCE(sum(bytes), 0)::bigint \
               FROM job_archives WHERE job = $1",
            &[&job],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(archived, total, "the archive does not cover the stream");

    // Replay into a new import with the same citizens, twice.
    let target = bench.import_with_citizens(CITIZENS).await;
    let client = reqwest::Client::new();
    let replay = || async {
        let started = Instant::now();
        let response = client
            .post(format!("{base}/imports/{target}/replay"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "job": job }))
            .timeout(Duration::from_secs(1800))
            .send()
            .await
            .expect("replay answers");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON answer");
        assert_eq!(status, 200, "{body}");
        (started.elapsed(), body["data"].clone())
    };
    let replay_base = common::reset_peak_rss();
    let (first, first_body) = replay().await;
    let replay_rss = common::peak_rss_mib();
    assert_eq!(first_body["stored"], total, "{first_body}");
    let (second, second_body) = replay().await;
    assert_eq!(second_body["stored"], 0, "{second_body}");
    assert_eq!(second_body["duplicates"], total, "{second_body}");
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM statements WHERE import_id = $1",
            &[&target],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, total);
    let _ = stop.send(());
    let _ = server.await;

    // PostgreSQL's own load rate for the same rows, in the same run.
    let copied = common::psql_copy(&bench.url, db, target, total, CITIZENS).await;

    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!("{}: {total} statements", config.archive_url());
    println!(
        "  archive (job expiry):     {:>9.0} statements/s  ({:.2} s incl. service start; {objects} object(s), {:.1} MiB gzip)  peak RSS {archive_rss:.1} MiB (from {archive_base:.1})",
        rate(archive),
        archive.as_secs_f64(),
        bytes as f64 / 1_048_576.0
    );
    println!(
        "  replay into a new import: {:>9.0} statements/s  ({:.2} s)  peak RSS {replay_rss:.1} MiB (from {replay_base:.1})",
        rate(first),
        first.as_secs_f64()
    );
    println!(
        "  second replay (all dups): {:>9.0} statements/s  ({:.2} s, stored 0)",
        rate(second),
        second.as_secs_f64()
    );
    println!(
        "  psql \\copy, 2 sessions:   {:>9.0} rows/s        ({:.2} s, same rows, same keys)",
        rate(copied),
        copied.as_secs_f64()
    );
    println!(
        "  ratio replay / psql \\copy: {:.2}   (load average {})",
        copied.as_secs_f64() / first.as_secs_f64(),
        common::load_average()
    );
    bench.drop().await;
}
