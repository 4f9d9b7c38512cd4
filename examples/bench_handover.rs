//! Benchmark (prints figures, asserts nothing): how long the jobs of an
//! instance that leaves take to run on the other of two `insikt serve`
//! processes (one database, the default consumer group): the time from the
//! signal to every job `running` on the survivor, for SIGTERM (a graceful
//! stop: it leaves the group) and SIGKILL (the group waits out the member's
//! session timeout), `INSIKT_BENCH_ROUNDS` times each (3 unless set). Run
//! through `scripts/bench.sh handover [--brokers 3]`.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use insikt::config::Config;

mod common;

const IMPORTS: i64 = 6;

#[tokio::main]
async fn main() {
    let binary = std::env::var("INSIKT_BENCH_BIN").unwrap_or("target/release/insikt".into());
    let rounds: usize = std::env::var("INSIKT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let config = Config::from_env();
    let bench = common::BenchDatabase::create(&config.database_url, "handover").await;
    let (url, db) = (bench.url.clone(), &bench.client);
    db.batch_execute(&format!(
        "INSERT INTO imports SELECT FROM generate_series(1, {IMPORTS})"
    ))
    .await
    .unwrap();

    let mut stayer = common::serve(&binary, &url, "stayer", &[]);
    let mut figures: Vec<(&str, f64)> = Vec::new();
    for round in 0..rounds * 2 {
        let leaver_id = format!("leaver-{round}");
        let mut leaver = common::serve(&binary, &url, &leaver_id, &[]);
        // Both own jobs, all running.
        wait_for(db, "both instances running jobs", |owners| {
            owners.iter().any(|o| o == &leaver_id) && owners.iter().any(|o| o == "stayer")
        })
        .await;
        let signal = if round % 2 == 0 { "TERM" } else { "KILL" };
        let sent = Instant::now();
        stop(&mut leaver, signal);
        wait_for(db, "the stayer running every job", |owners| {
            owners.iter().all(|o| o == "stayer")
        })
        .await;
        let took = sent.elapsed().as_secs_f64();
        println!("SIG{signal}: every job running on the other instance after {took:.2} s");
        figures.push((signal, took));
    }
    for signal in ["TERM", "KILL"] {
        let mut times: Vec<f64> = figures
            .iter()
            .filter(|(s, _)| *s == signal)
            .map(|(_, t)| *t)
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "SIG{signal} hand-over: median {:.2} s (of {:?})",
            times[times.len() / 2],
            times
        );
    }
    stop(&mut stayer, "TERM");
    bench.drop().await;
}

fn stop(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Polls (every 20 ms) until every job is `running` and its owners pass `ok`.
async fn wait_for(db: &tokio_postgres::Client, what: &str, ok: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = db
            .query("SELECT state, owner FROM jobs", &[])
            .await
            .unwrap();
        let running =
            rows.len() == IMPORTS as usize && rows.iter().all(|r| r.get::<_, &str>(0) == "running");
        let owners: Vec<String> = rows
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(1))
            .collect();
        if running && owners.len() == rows.len() && ok(&owners) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
