//! Benchmark (prints figures, asserts nothing): one import of 10,000
//! residents and ~1,000,000 statements over 26 weeks (the seeded sample of
//! tests/common/insights_data.rs), sent through the API to a release
//! `insikt serve` process. Then, for each insights route of the issue:
//! the first ask after the last statement is stored (segments complete),
//! the first ask after a restart of the service (restarted before each
//! ask): cold (nothing loaded at start) and as users see it (the import was
//! asked lately, so the start loads it), and the second ask; in the same run,
//! PostgreSQL's time for one `SELECT count(*), course FROM statements
//! WHERE import_id = $1 GROUP BY course`, and each first ask as a ratio of
//! it. Also the alternatives the README compares: reading the statements'
//! four columns by binary COPY, and day-bucketed counts in PostgreSQL.
//! Peak RSS of each service process.
//!
//! Run through `scripts/bench.sh insights` (which builds the release binary).
//! Usage: bench_insights [STATEMENTS] (default 1,000,000).
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "../tests/common/citizens_data.rs"]
mod citizens_data;
mod common;
#[allow(dead_code)]
#[path = "../tests/common/insights_data.rs"]
mod insights_data;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{pin_mut, StreamExt, TryStreamExt};
use serde_json::Value;

const RESIDENTS: u32 = 10_000;
const WEEKS: u32 = 26;

/// The routes of the issue, as asked.
const ROUTES: [(&str, &str); 4] = [
    (
        "rates by=town,age_group,channel,course",
        "rates?by=town,age_group,channel,course",
    ),
    ("rates by=town", "rates?by=town"),
    ("trend by=course weekly", "trend?by=course&interval=week"),
    ("emerging by=course,town", "emerging?by=course,town"),
];

struct Service {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(binary: &str, url: &str, unique: &str) -> Service {
    let port = free_port();
    let mut child = Command::new(binary)
        .arg("serve")
        .env("INSIKT_DATABASE_URL", url)
        .env("INSIKT_LISTEN", format!("127.0.0.1:{port}"))
        .env("INSIKT_NO_MIGRATE", "true")
        .env("INSIKT_INSTANCE_ID", "bench-insights")
        .env("INSIKT_TOPIC_PREFIX", format!("insikt.{unique}"))
        .env("INSIKT_CONSUMER_GROUP", format!("insikt-{unique}"))
        .env("INSIKT_SECRET", "bench")
        .env(
            "INSIKT_ARCHIVE_DIR",
            std::env::temp_dir().join("insikt-bench-archive"),
        )
        .env(
            "INSIKT_LOG",
            std::env::var("INSIKT_LOG").unwrap_or("warn".into()),
        )
        .stdout(match std::env::var_os("INSIKT_BENCH_SERVICE_LOG") {
            // The service's log, for a look at where a first ask's time goes.
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_or(Stdio::null(), Stdio::from),
            None => Stdio::null(),
        })
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return Service { child, base };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the service did not become ready");
}

impl Service {
    /// Peak resident set of the process so far, in MiB.
    fn peak_rss(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// SIGTERM, then waits for the process to finish.
    fn stop(mut self) -> f64 {
        let rss = self.peak_rss();
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        rss
    }
}

/// One request's time in milliseconds (the body read whole).
async fn ask(client: &reqwest::Client, url: &str) -> f64 {
    let started = Instant::now();
    let response = client.get(url).send().await.expect("the service answers");
    let status = response.status();
    let body = response.bytes().await.unwrap();
    let took = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    took
}

async fn millis<F: std::future::Future>(f: F) -> (f64, F::Output) {
    let started = Instant::now();
    let out = f.await;
    (started.elapsed().as_secs_f64() * 1e3, out)
}

#[tokio::main]
async fn main() {
    let target = common::size_arg(1_000_000);
    let binary = std::env::var("INSIKT_BIN").unwrap_or("target/release/insikt".into());
    let config = insikt::config::Config::from_env();
    let bench = common::BenchDatabase::create(&config.database_url, "insights").await;
    let db = &bench.client;
    let unique = format!(
        "bench-insights-{}-{}",
        std::process::id(),
        &bench.name[22..]
    );
    let as_of = insights_data::monday_of(chrono::Utc::now());
    let plan = insights_data::Plan {
        seed: 2026,
        residents: RESIDENTS,
        weeks: WEEKS,
        weekly: target as f64 / (f64::from(RESIDENTS) * 6.0 * f64::from(WEEKS)),
        as_of,
    };
    let sample = insights_data::generate(&plan);
    let total = sample.facts.len() as i64;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();

    // Ingest through the API.
    let service = start(&binary, &bench.url, &unique).await;
    let created: Value = client
        .post(format!("{}/imports", service.base))
        .json(&sample.import)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let import = created["data"]["import_id"].as_i64().expect("an import");
    let started = Instant::now();
    let statements: Vec<Value> = sample.statements(plan.seed).collect();
    let posts = futures_util::stream::iter(statements.chunks(10_000).map(|chunk| {
        let client = &client;
        let url = format!("{}/imports/{import}/statements", service.base);
        async move {
            let response = client.post(url).json(chunk).send().await.unwrap();
            assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        }
    }))
    .buffer_unordered(4);
    posts.collect::<Vec<()>>().await;
    drop(statements);
    let posted = started.elapsed();
    loop {
        let held: i64 = db
            .query_one(
                "SELECT COALESCE(sum(statements), 0)::bigint FROM insight_segments WHERE import_id = $1",
                &[&import],
            )
            .await
            .unwrap()
            .get(0);
        if held >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "ingestion is stuck"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = started.elapsed();
    let (segments, bytes): (i64, i64) = db
        .query_one(
            "SELECT count(*), COALESCE(sum(length(data)), 0)::bigint FROM insight_segments WHERE import_id = $1",
            &[&import],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();

    // First asks on the service that stored them (the first one loads).
    let url = |path: &str, base: &str| format!("{base}/imports/{import}/insights/{path}");
    let mut first = Vec::new();
    let mut second = Vec::new();
    for (_, path) in ROUTES {
        first.push(ask(&client, &url(path, &service.base)).await);
        second.push(ask(&client, &url(path, &service.base)).await);
    }
    let mut rss = vec![service.stop()];
    let kept: Option<i32> = db
        .query_opt(
            "SELECT length(data) FROM insight_residents WHERE import_id = $1",
            &[&import],
        )
        .await
        .unwrap()
        .map(|r| r.get(0));

    // First asks after a restart, the service restarted before each ask.
    // Cold: the import's "asked lately" mark cleared, so the start loads
    // nothing and the ask reads everything (the kept residents included).
    // As users see it: the import was asked lately (by the cold ask), so
    // the start loads it, and /readyz (which `start` waits for) answers
    // 200 once it is loaded.
    let mark =
        "SELECT count(*) FROM insight_residents WHERE import_id = $1 AND asked_at IS NOT NULL";
    let mut cold = Vec::new();
    let mut restarted = Vec::new();
    for (_, path) in ROUTES {
        db.execute(
            "UPDATE insight_residents SET asked_at = NULL WHERE import_id = $1",
            &[&import],
        )
        .await
        .unwrap();
        let service = start(&binary, &bench.url, &unique).await;
        cold.push(ask(&client, &url(path, &service.base)).await);
        // The mark is written after the answer: wait for it (5 s at most).
        for _ in 0..250 {
            let marked: i64 = db.query_one(mark, &[&import]).await.unwrap().get(0);
            if marked > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rss.push(service.stop());
        let service = start(&binary, &bench.url, &unique).await;
        restarted.push(ask(&client, &url(path, &service.base)).await);
        rss.push(service.stop());
    }

    // PostgreSQL's scan of the same import, in the same run.
    let scan = "SELECT count(*), course FROM statements WHERE import_id = $1 GROUP BY course";
    let mut scans = Vec::new();
    for _ in 0..3 {
        scans.push(millis(db.query(scan, &[&import])).await.0);
    }
    scans.sort_by(f64::total_cmp);
    let scan_ms = scans[1];

    // Alternatives: the four columns by binary COPY; day-bucketed counts.
    let (copy_ms, copied) = millis(async {
        let stream = db
            .copy_out(&format!(
                "COPY (SELECT citizen_id, course, ts, score FROM statements WHERE import_id = {import}) \
                 TO STDOUT (FORMAT binary)"
            ))
            .await
            .unwrap();
        pin_mut!(stream);
        let mut n = 0usize;
        while let Some(chunk) = stream.try_next().await.unwrap() {
            n += chunk.len();
        }
        n
    })
    .await;
    db.batch_execute(&format!(
        "CREATE TABLE day_counts AS SELECT citizen_id, course, date_trunc('day', ts) AS day, \
         count(*) AS n FROM statements WHERE import_id = {import} GROUP BY 1, 2, 3; ANALYZE day_counts"
    ))
    .await
    .unwrap();
    let day_rows: i64 = db
        .query_one("SELECT count(*) FROM day_counts", &[])
        .await
        .unwrap()
        .get(0);
    let (day_rates_ms, _) = millis(db.query(
        "SELECT course, count(DISTINCT citizen_id), sum(n) FROM day_counts GROUP BY course",
        &[],
    ))
    .await;
    let (day_trend_ms, _) = millis(db.query(
        "SELECT course, date_trunc('week', day), sum(n), count(DISTINCT citizen_id) \
           FROM day_counts GROUP BY 1, 2",
        &[],
    ))
    .await;
    let (segments_ms, _) = millis(db.query(
        "SELECT data FROM insight_segments WHERE import_id = $1",
        &[&import],
    ))
    .await;

    println!(
        "insights bench: {RESIDENTS} residents, {total} statements over {WEEKS} weeks (seed {})",
        plan.seed
    );
    println!(
        "ingest: posted in {:.1} s, all stored and in segments after {:.1} s ({:.0} statements/s)",
        posted.as_secs_f64(),
        stored.as_secs_f64(),
        total as f64 / stored.as_secs_f64()
    );
    println!(
        "segments: {segments}, {:.1} MiB ({:.1} bytes a statement); read in {segments_ms:.1} ms by one client",
        bytes as f64 / 1_048_576.0,
        bytes as f64 / total as f64
    );
    println!(
        "residents kept compact by the first load: {}",
        kept.map_or("none".into(), |b| format!(
            "{:.1} KiB",
            f64::from(b) / 1024.0
        ))
    );
    println!(
        "PostgreSQL GROUP BY course over the import: median of 3 {scan_ms:.1} ms ({:.1} .. {:.1})",
        scans[0], scans[2]
    );
    println!(
        "first: the first ask on the service that stored the statements (it loads the import, residents aggregated)"
    );
    println!(
        "restart cold: first ask after a restart with nothing loaded at start; restart as users see it: the import asked lately, loaded at start before /readyz answers 200"
    );
    println!(
        "{:<40} {:>9} {:>6} {:>12} {:>6} {:>13} {:>6} {:>9}",
        "route", "first ms", "ratio", "cold ms", "ratio", "as-users ms", "ratio", "second ms"
    );
    for (i, (name, _)) in ROUTES.iter().enumerate() {
        println!(
            "{name:<40} {:>9.1} {:>6.3} {:>12.1} {:>6.3} {:>13.1} {:>6.3} {:>9.1}",
            first[i],
            first[i] / scan_ms,
            cold[i],
            cold[i] / scan_ms,
            restarted[i],
            restarted[i] / scan_ms,
            second[i]
        );
    }
    println!("goal: every first ask <= 0.1 x the scan (must: <= 0.25 x)");
    println!(
        "peak RSS of the service: {:.1} MiB (ingesting and first asks), {:.1} MiB at most after a restart (goal < 300 MiB)",
        rss[0],
        rss[1..].iter().copied().fold(0.0, f64::max)
    );
    println!(
        "alternatives: COPY BINARY of (citizen_id, course, ts, score): {copy_ms:.1} ms, {:.1} MiB; \
         day-bucketed counts: {day_rows} rows, askers per course {day_rates_ms:.1} ms, weekly trend {day_trend_ms:.1} ms",
        copied as f64 / 1_048_576.0
    );
    println!("(shared machine; load average {})", common::load_average());
    bench.drop().await;
}
