//! The citizens benchmark's client (run it with `scripts/bench.sh citizens`,
//! which builds and starts a release service for it).
//!
//! Per repetition (`--runs`), posts a NEW fixed 10,000-citizen import (2,000
//! relation pairs, seed 42), asks GET citizens, birthdays and percentiles
//! once each (the first ask, as a client that imports and asks) and PATCHes
//! one citizen; reports the medians, first on an empty database, then after
//! `--preload` more such imports; EXPLAIN ANALYZE of the read queries
//! in both states; and the service's peak RSS. Prints figures, judges nothing.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/common/citizens_data.rs"]
mod citizens_data;
mod common;

use std::time::{Duration, Instant};

use insikt::citizens::{read, statistics};
use reqwest::{Client, Method};
use serde_json::{json, Value};

struct Args {
    url: String,
    pid: u32,
    database_url: String,
    runs: usize,
    preload: usize,
}

fn args() -> Args {
    let mut args = Args {
        url: "http://127.0.0.1:8080".into(),
        pid: 0,
        database_url: "postgres://postgres@127.0.0.1:5432/insikt".into(),
        runs: 5,
        preload: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value,
            "--pid" => args.pid = value.parse().expect("--pid"),
            "--database-url" => args.database_url = value,
            "--runs" => args.runs = value.parse().expect("--runs"),
            "--preload" => args.preload = value.parse().expect("--preload"),
            _ => panic!("unknown flag {flag}"),
        }
    }
    args
}

/// The median and, for a machine busy with other work, the fastest run;
/// and the first, which is the only one that misses the service's
/// statistics cache (the import is new, or was just patched).
#[derive(Clone, Copy)]
struct Figures {
    median: Duration,
    min: Duration,
    first: Duration,
}

fn median(mut samples: Vec<Duration>) -> Figures {
    let first = samples[0];
    samples.sort();
    Figures {
        median: samples[samples.len() / 2],
        min: samples[0],
        first,
    }
}

fn ms(f: Figures) -> String {
    format!(
        "{:8.2} ms  (fastest {:7.2} ms, first {:7.2} ms)",
        f.median.as_secs_f64() * 1e3,
        f.min.as_secs_f64() * 1e3,
        f.first.as_secs_f64() * 1e3
    )
}

/// Sends one request and reads the whole answer; the time covers both.
async fn timed(
    client: &Client,
    method: Method,
    url: &str,
    body: Option<&[u8]>,
    expect: u16,
) -> (Duration, Vec<u8>) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_vec());
    }
    let started = Instant::now();
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body").to_vec();
    let elapsed = started.elapsed();
    assert_eq!(
        status,
        expect,
        "{url}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
    );
    (elapsed, bytes)
}

async fn post(client: &Client, args: &Args, body: &[u8]) -> (Duration, i64) {
    let (elapsed, reply) = timed(
        client,
        Method::POST,
        &format!("{}/imports", args.url),
        Some(body),
        201,
    )
    .await;
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    (elapsed, reply["data"]["import_id"].as_i64().unwrap())
}

/// The columns of a citizen row, as `psql \copy` writes and reads them.
const COPY_COLUMNS: &str =
    "citizen_id, town, street, building, apartment, name, birth_date, gender, channel, relatives";

/// PostgreSQL's own load time for an import: the rows `import` got, written
/// as CSV, loaded `runs` times by `psql \copy` into `citizens` under a new
/// import each (the time psql's `\timing` gives for the `\copy`, which
/// includes its commit). The limit `POST /imports` is measured against.
async fn psql_copy(database_url: &str, import: i64, runs: usize) -> Vec<Duration> {
    let (db, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .expect("connecting for psql \\copy");
    tokio::spawn(connection);
    let exported =
        std::env::temp_dir().join(format!("insikt-bench-citizens-{}.csv", std::process::id()));
    let psql = |command: String| {
        let output = common::psql(database_url)
            .args(["-c", "\\timing on", "-c"])
            .arg(command)
            .output()
            .expect("psql (scripts/services.sh up installs it)");
        assert!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    psql(format!(
        "\\copy (SELECT {COPY_COLUMNS} FROM citizens WHERE import_id = {import}) TO '{}' WITH (FORMAT csv)",
        exported.display()
    ));
    let rows = std::fs::read_to_string(&exported).expect("the exported rows");
    let mut times = Vec::new();
    for _ in 0..runs {
        let new = common::new_import(&db).await;
        let csv: String = rows.lines().map(|line| format!("{new},{line}\n")).collect();
        std::fs::write(&exported, csv).unwrap();
        let timing = psql(format!(
            "\\copy citizens (import_id, {COPY_COLUMNS}) FROM '{}' WITH (FORMAT csv)",
            exported.display()
        ));
        let ms: f64 = timing
            .lines()
            .find_map(|l| l.strip_prefix("Time: "))
            .and_then(|t| t.split_whitespace().next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no timing in psql's output: {timing}"));
        times.push(Duration::from_secs_f64(ms / 1e3));
    }
    let _ = std::fs::remove_file(&exported);
    times
}

/// Runs every measurement `args.runs` times, each on a NEW import asked
/// each question once, as a client that imports and asks does (the first
/// ask); then the second ask of the last import, and `psql \copy` of the
/// same rows beside `POST /imports`. Returns the imports.
async fn phase(
    client: &Client,
    args: &Args,
    body: &[u8],
    patch_target: (u64, &[u64], u64),
) -> Vec<i64> {
    let mut imports = Vec::new();
    let (mut posts, mut citizens, mut birthdays, mut by_channel, mut percentile) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut patches, mut later_patches) = (vec![], vec![]);
    let mut size = 0;
    let (citizen, related, other) = patch_target;
    let get = |path: String| async move { timed(client, Method::GET, &path, None, 200).await };
    for run in 0..args.runs {
        let (elapsed, import_id) = post(client, args, body).await;
        posts.push(elapsed);
        imports.push(import_id);
        let base = format!("{}/imports/{import_id}", args.url);
        let (elapsed, bytes) = get(format!("{base}/citizens")).await;
        citizens.push(elapsed);
        size = bytes.len();
        birthdays.push(get(format!("{base}/citizens/birthdays")).await.0);
        by_channel.push(
            get(format!("{base}/citizens/birthdays?group_by=channel"))
                .await
                .0,
        );
        percentile.push(get(format!("{base}/towns/stat/percentile/age")).await.0);
        // A new name and a relative added (both sides are written).
        let mut relatives = related.to_vec();
        relatives.push(other);
        let patch = json!({ "name": format!("Иванов Иван {run}"), "relatives": relatives });
        let (elapsed, _) = timed(
            client,
            Method::PATCH,
            &format!("{base}/citizens/{citizen}"),
            Some(&serde_json::to_vec(&patch).unwrap()),
            200,
        )
        .await;
        patches.push(elapsed);
        // The same citizen patched again, the same way (a new name, the
        // relative taken away and given back: both sides written each time):
        // what a PATCH costs once the import's first one has run.
        for later in 0..LATER_PATCHES {
            let relatives = if later % 2 == 0 {
                related
            } else {
                &relatives[..]
            };
            let patch =
                json!({ "name": format!("Иванов Иван {run}.{later}"), "relatives": relatives });
            let (elapsed, _) = timed(
                client,
                Method::PATCH,
                &format!("{base}/citizens/{citizen}"),
                Some(&serde_json::to_vec(&patch).unwrap()),
                200,
            )
            .await;
            later_patches.push(elapsed);
        }
    }
    // The last import asked again: kept answers after a PATCH's recompute.
    let base = format!("{}/imports/{}", args.url, imports[imports.len() - 1]);
    let mut again = vec![];
    for path in [
        "citizens",
        "citizens/birthdays",
        "towns/stat/percentile/age",
    ] {
        get(format!("{base}/{path}")).await; // recomputed after the PATCH
        again.push((path, get(format!("{base}/{path}")).await.0));
    }

    let post = median(posts);
    println!("  POST /imports                      {}", ms(post));
    let copy = median(psql_copy(&args.database_url, imports[0], args.runs).await);
    println!("  psql \\copy of the same rows        {}", ms(copy));
    println!(
        "  ratio POST / psql \\copy            {:8.2}     (medians; goal: POST < 40 ms)",
        post.median.as_secs_f64() / copy.median.as_secs_f64()
    );
    println!(
        "  GET  citizens (first ask)          {}  {size} bytes",
        ms(median(citizens))
    );
    println!(
        "  GET  birthdays (first ask)         {}",
        ms(median(birthdays))
    );
    println!(
        "  GET  birthdays?group_by=channel    {}",
        ms(median(by_channel))
    );
    println!(
        "  GET  percentile/age (first ask)    {}",
        ms(median(percentile))
    );
    println!(
        "  PATCH citizen, first after import  {}",
        ms(median(patches))
    );
    println!(
        "  PATCH citizen, later (same kind)  {}",
        ms(median(later_patches))
    );
    for (path, elapsed) in again {
        println!(
            "  after a PATCH, {path} asked twice: second {:.2} ms",
            elapsed.as_secs_f64() * 1e3
        );
    }
    println!("  load average at the end: {}", load());
    imports
}

/// PATCHes of the same citizen after each import's first one.
const LATER_PATCHES: usize = 4;

/// The machine's load average (1, 5, 15 minutes): the bench shares its cores.
fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// EXPLAIN ANALYZE of the read queries for `import_id`, condensed to the
/// plan's node lines and timings.
async fn explain(database_url: &str, import_id: i64) {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .expect("connecting for EXPLAIN");
    tokio::spawn(connection);
    let today = chrono::Utc::now().date_naive();
    let queries: [(&str, &str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>); 4] = [
        ("citizens", read::SELECT_CITIZENS, vec![&import_id]),
        (
            "birthdays",
            statistics::BIRTHDAYS_BY_MONTH,
            vec![&import_id],
        ),
        (
            "birthdays by channel",
            statistics::BIRTHDAYS_BY_CHANNEL,
            vec![&import_id, &statistics::UNKNOWN_CHANNEL],
        ),
        (
            "percentile",
            statistics::AGE_PERCENTILES,
            vec![&import_id, &today],
        ),
    ];
    for (name, sql, params) in queries {
        let rows = client
            .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), &params)
            .await
            .expect("EXPLAIN");
        println!("  -- {name}");
        for row in rows {
            let line: String = row.try_get(0).expect("EXPLAIN gives text lines");
            if line.trim_start().starts_with("Buffers") || line.contains("Planning:") {
                continue;
            }
            println!("     {line}");
        }
    }
}

fn memory(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map_or("?".to_owned(), |l| l[name.len()..].trim().to_owned())
    };
    format!(
        "peak RSS (VmHWM) {}, current RSS {}",
        field("VmHWM:"),
        field("VmRSS:")
    )
}

#[tokio::main]
async fn main() {
    let args = args();
    let body = citizens_data::import(42, 10_000, 2_000);
    let citizen = body["citizens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["relatives"].as_array().unwrap().len() >= 2)
        .unwrap();
    let citizen_id = citizen["citizen_id"].as_u64().unwrap();
    let related: Vec<u64> = citizen["relatives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_u64().unwrap())
        .collect();
    let other = (0..10_000u64)
        .find(|id| *id != citizen_id && !related.contains(id))
        .unwrap();
    let body = serde_json::to_vec(&body).unwrap();
    println!(
        "citizens benchmark: 10,000 citizens, 2,000 relation pairs, {} bytes per import, median of {} runs",
        body.len(),
        args.runs
    );
    let client = Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();

    println!("\nempty database (load average {}):", load());
    let imports = phase(&client, &args, &body, (citizen_id, &related, other)).await;
    explain(&args.database_url, imports[0]).await;
    if args.pid != 0 {
        println!("  {}", memory(args.pid));
    }

    for _ in 0..args.preload {
        post(&client, &args, &body).await;
    }
    let stored = imports.len() + args.preload;
    println!(
        "\nafter {stored} imports are stored (load average {}):",
        load()
    );
    let imports = phase(&client, &args, &body, (citizen_id, &related, other)).await;
    explain(&args.database_url, imports[0]).await;
    if args.pid != 0 {
        println!("  {}", memory(args.pid));
    }
}
