//! Benchmark (prints figures, asserts nothing): what an instance costs per
//! running import. For each size N (default 100, 1,000 and 5,000), one
//! `insikt serve` process (the binary of `INSIKT_BENCH_BIN`) on a fresh
//! database, started under `ulimit -n 1024` (systemd's default soft limit),
//! gets N imports through `POST /imports` (8 clients at once), each of
//! which is a running job for its window. Printed per size: the time until
//! every job ran and the p50/p99 from `POST /imports` to the job `running`
//! (during the fill, and for 20 imports posted one at a time once N run),
//! whether every route answers, and, idle, the process's threads, open
//! files, connections to the broker, resident memory and CPU over 30 s
//! (the broker's CPU beside it); then the time for a restarted instance
//! (SIGTERM, start) to have every job running again. The topics it made
//! are deleted at the end. Run through `scripts/bench.sh jobs`.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

mod common;

/// The limit systemd gives a service unless its unit raises it.
const NOFILE: u32 = 1024;
const CLIENTS: usize = 8;
const CITIZENS: i32 = 10;
const PROBES: usize = 20;
const IDLE: Duration = Duration::from_secs(30);
const TOKEN: &str = "bench-admin";

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000, 5000]
    } else {
        sizes
    };
    let binary = std::env::var("INSIKT_BENCH_BIN").unwrap_or("target/release/insikt".into());
    let config = insikt::config::Config::from_env();
    println!(
        "jobs bench: {binary}, ulimit -n {NOFILE}, {CLIENTS} clients posting imports of {CITIZENS} citizens"
    );
    println!(
        "(shared machine: {} cores, load average {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        common::load_average()
    );
    for n in sizes {
        let figures = run(&binary, &config, n).await;
        println!("{figures}");
    }
}

/// One size's run, printed as a block.
async fn run(binary: &str, config: &insikt::config::Config, n: usize) -> String {
    let bench = common::BenchDatabase::create(&config.database_url, &format!("jobs_{n}")).await;
    let db = &bench.client;
    let deployment: String = db
        .query_one("SELECT replace(id::text, '-', '') FROM deployment", &[])
        .await
        .unwrap()
        .get(0);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut out = format!("--- {n} imports\n");
    let mut child = start(binary, &bench.url, port);
    wait_ready(&http, &base, Duration::from_secs(60)).await;

    // The fill: N imports through the API, CLIENTS at a time.
    let started = Instant::now();
    let posted = fill(&http, &base, n).await;
    let created = posted.len();
    let all = wait_running(db, created, Duration::from_secs(900)).await;
    let fill_took = started.elapsed();
    let running = running_count(db).await;
    out += &format!(
        "fill: {created} of {n} imports created; {running} jobs running {:.1} s after the first POST{}\n",
        fill_took.as_secs_f64(),
        if all { "" } else { " (gave up waiting)" }
    );
    let fill_starts = start_latencies(db, &posted).await;
    out += &format!(
        "POST /imports -> running, during the fill: {}\n",
        quantiles(&fill_starts)
    );
    if created < n {
        out += "HTTP stopped answering during the fill: no further figures at this size\n";
        out += &resources(child.id()).await;
        stop(&mut child);
        cleanup(bench, config, &deployment).await;
        return out;
    }

    // At N: imports posted one at a time.
    let mut probes = Vec::new();
    for _ in 0..PROBES {
        if let Some(p) = post_import(&http, &base).await {
            let single = [p];
            wait_running(db, running + probes.len() + 1, Duration::from_secs(60)).await;
            probes.extend(start_latencies(db, &single).await);
        }
    }
    out += &format!(
        "POST /imports -> running, one at a time at {n}: {}\n",
        quantiles(&probes)
    );
    out += &routes(&http, &base, db, posted[0].0).await;

    // Idle.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // INSIKT_BENCH_PERF=prefix: `perf record` of the idle instance beside
    // the CPU measure (prefix-N.data): librdkafka's threads block the
    // signals the service's own profiler samples with.
    let perf = std::env::var("INSIKT_BENCH_PERF").ok().and_then(|prefix| {
        std::process::Command::new("perf")
            .args(["record", "-F", "99", "-g", "-o"])
            .arg(format!("{prefix}-{n}.data"))
            .args(["-p", &child.id().to_string(), "--", "sleep", "25"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()
    });
    out += &resources(child.id()).await;
    if let Some(mut perf) = perf {
        let _ = perf.wait();
    }
    out += &format!(
        "partitions asleep (idle streams, paused): {}\n",
        asleep(&http, &base).await
    );
    // Where the idle CPU goes: INSIKT_BENCH_PROFILE=prefix saves a 20 s
    // flame graph of the idle instance as prefix-N.svg.
    if let Ok(prefix) = std::env::var("INSIKT_BENCH_PROFILE") {
        let profile = http
            .get(format!("{base}/debug/pprof/profile?seconds=20"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(60))
            .send()
            .await;
        if let Ok(svg) = profile {
            let path = format!("{prefix}-{n}.svg");
            let _ = std::fs::write(&path, svg.bytes().await.unwrap_or_default());
            out += &format!("idle profile: {path}\n");
        }
    }

    // Restart.
    let total = running_count(db).await;
    let signalled = Instant::now();
    stop(&mut child);
    let stopped = signalled.elapsed();
    let left = running_count(db).await;
    let restarted = Instant::now();
    let since = Utc::now();
    let mut child = start(binary, &bench.url, port);
    let back = wait_restarted(db, total, since, Duration::from_secs(900)).await;
    out += &format!(
        "restart: SIGTERM to exit {:.1} s ({left} left running); every one of {total} jobs running again {:.1} s after the start{}\n",
        stopped.as_secs_f64(),
        restarted.elapsed().as_secs_f64(),
        if back { "" } else { " (gave up waiting)" }
    );
    stop(&mut child);
    cleanup(bench, config, &deployment).await;
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The service under `ulimit -n NOFILE`, with the defaults users get.
fn start(binary: &str, url: &str, port: u16) -> Child {
    let mut command = Command::new("bash");
    command.args([
        "-c",
        &format!("ulimit -n {NOFILE} && exec \"$0\" serve"),
        binary,
    ]);
    common::bench_settings(&mut command, url, "bench-jobs")
        .env("INSIKT_LISTEN", format!("127.0.0.1:{port}"))
        .env("INSIKT_ADMIN_TOKEN", TOKEN)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"))
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

async fn wait_ready(http: &reqwest::Client, base: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the service did not get ready");
}

fn import_body() -> Value {
    let citizens: Vec<Value> = (0..CITIZENS)
        .map(|id| {
            json!({"citizen_id": id, "town": "Керчь", "street": "Иосифа Бродского",
                   "building": "1к2", "apartment": 7, "name": "Иванов Иван Иванович",
                   "birth_date": "26.12.1986", "gender": "male", "relatives": []})
        })
        .collect();
    json!({ "citizens": citizens })
}

/// Posts one import: its id and when it was posted.
async fn post_import(http: &reqwest::Client, base: &str) -> Option<(i64, DateTime<Utc>)> {
    let at = Utc::now();
    let response = http
        .post(format!("{base}/imports"))
        .bearer_auth(TOKEN)
        .json(&import_body())
        .send()
        .await
        .ok()?;
    if response.status().as_u16() != 201 {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    Some((body["data"]["import_id"].as_i64()?, at))
}

/// N imports, CLIENTS at a time; stops once 20 posts in a row failed.
async fn fill(http: &reqwest::Client, base: &str, n: usize) -> Vec<(i64, DateTime<Utc>)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, base) = (http.clone(), base.to_owned());
            let (next, failures) = (next.clone(), failures.clone());
            tokio::spawn(async move {
                let mut posted = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    if failures.load(Ordering::Relaxed) >= 20 {
                        break;
                    }
                    match post_import(&http, &base).await {
                        Some(p) => {
                            failures.store(0, Ordering::Relaxed);
                            posted.push(p);
                        }
                        None => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                posted
            })
        })
        .collect();
    let mut posted = Vec::new();
    for task in tasks {
        posted.extend(task.await.unwrap());
    }
    posted.sort();
    posted
}

async fn running_count(db: &tokio_postgres::Client) -> usize {
    let n: i64 = db
        .query_one("SELECT count(*) FROM jobs WHERE state = 'running'", &[])
        .await
        .unwrap()
        .get(0);
    n as usize
}

/// Polls until at least `n` jobs run; false at the timeout.
async fn wait_running(db: &tokio_postgres::Client, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while running_count(db).await < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// After a restart: until every one of `n` jobs was started by the new
/// process (marked `running` since `since`).
async fn wait_restarted(
    db: &tokio_postgres::Client,
    n: usize,
    since: DateTime<Utc>,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let running: i64 = db
            .query_one(
                "SELECT count(*) FROM jobs WHERE state = 'running' AND updated_at >= $1",
                &[&since],
            )
            .await
            .unwrap()
            .get(0);
        if running as usize >= n {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Seconds from each POST to its job's first `running` (`started_at`).
async fn start_latencies(db: &tokio_postgres::Client, posted: &[(i64, DateTime<Utc>)]) -> Vec<f64> {
    let ids: Vec<i64> = posted.iter().map(|p| p.0).collect();
    let rows = db
        .query(
            "SELECT import_id, started_at FROM jobs WHERE import_id = ANY($1) AND started_at IS NOT NULL",
            &[&ids],
        )
        .await
        .unwrap();
    let at: std::collections::HashMap<i64, DateTime<Utc>> = posted.iter().copied().collect();
    rows.iter()
        .filter_map(|r| {
            let posted = at.get(&r.get::<_, i64>(0))?;
            let started: DateTime<Utc> = r.get(1);
            Some((started - *posted).as_seconds_f64())
        })
        .collect()
}

fn quantiles(samples: &[f64]) -> String {
    if samples.is_empty() {
        return "no job started".into();
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.2} s, p99 {:.2} s, max {:.2} s ({} jobs)",
        at(0.5),
        at(0.99),
        at(1.0),
        sorted.len()
    )
}

/// Every route family once, with its status and time; statements posted
/// to one import must be stored.
async fn routes(
    http: &reqwest::Client,
    base: &str,
    db: &tokio_postgres::Client,
    import: i64,
) -> String {
    let name: String = db
        .query_one("SELECT name FROM jobs WHERE import_id = $1", &[&import])
        .await
        .unwrap()
        .get(0);
    let statements: Vec<Value> = (0..3)
        .map(|i| json!({"statement_id": format!("bench-{i}"), "citizen_id": i, "course": "rust"}))
        .collect();
    let mut line = String::from("routes:");
    let checks: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/healthz".into(), None),
        ("GET", "/readyz".into(), None),
        ("GET", "/metrics".into(), None),
        ("GET", "/jobs".into(), None),
        ("GET", format!("/jobs/{name}"), None),
        ("GET", format!("/imports/{import}/citizens"), None),
        ("GET", format!("/imports/{import}/dead-letters"), None),
        (
            "POST",
            format!("/imports/{import}/statements"),
            Some(json!(statements)),
        ),
    ];
    for (method, path, body) in checks {
        let started = Instant::now();
        let mut request = match method {
            "POST" => http.post(format!("{base}{path}")),
            _ => http.get(format!("{base}{path}")),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let status = match request.bearer_auth(TOKEN).send().await {
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timeout".into(),
            Err(_) => "error".into(),
        };
        let path = path
            .replace(&name, "{name}")
            .replace(&format!("/{import}/"), "/{id}/");
        line += &format!(
            " {method} {path} {status} {:.0} ms;",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    let stored_after = Instant::now();
    let mut stored = 0i64;
    while stored < 3 && stored_after.elapsed() < Duration::from_secs(30) {
        stored = db
            .query_one(
                "SELECT count(*) FROM statements WHERE import_id = $1",
                &[&import],
            )
            .await
            .unwrap()
            .get(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    line += &format!(
        " the 3 statements stored {:.2} s after they were accepted ({stored} stored)\n",
        stored_after.elapsed().as_secs_f64()
    );
    line
}

/// The `insikt_streams_asleep` gauge, as `/metrics` shows it.
async fn asleep(http: &reqwest::Client, base: &str) -> String {
    let text = match http.get(format!("{base}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find_map(|line| line.strip_prefix("insikt_streams_asleep "))
        .unwrap_or("unknown")
        .trim()
        .to_owned()
}

/// The process's threads, open files, broker connections and RSS, and its
/// (and the broker's) CPU over [`IDLE`].
async fn resources(pid: u32) -> String {
    // The shared development broker's, unless the run uses another one.
    let pid_file = std::env::var("INSIKT_BENCH_BROKER_PID_FILE")
        .unwrap_or("/var/lib/insikt-dev/kafka/kafka.pid".into());
    let broker = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    let (cpu0, broker0, threads0) = (cpu_ticks(pid), broker.map(cpu_ticks), thread_ticks(pid));
    tokio::time::sleep(IDLE).await;
    let (cpu1, broker1, threads1) = (cpu_ticks(pid), broker.map(cpu_ticks), thread_ticks(pid));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let percent = |a: u64, b: u64| 100.0 * (b.saturating_sub(a)) as f64 / hz / IDLE.as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let rss_kib: f64 = field("VmRSS:")
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or(f64::NAN);
    let files = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let mut by_thread: Vec<(String, f64)> = threads1
        .iter()
        .map(|(name, b)| {
            let a = threads0.get(name).copied().unwrap_or(0);
            (name.clone(), percent(a, *b))
        })
        .filter(|(_, p)| *p >= 0.05)
        .collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    let by_thread: Vec<String> = by_thread
        .iter()
        .map(|(name, p)| format!("{name} {p:.1} %"))
        .collect();
    format!(
        "idle: threads {}, open files {files}, broker connections {}, RSS {:.0} MiB, CPU {:.1} % of a core over {} s (broker {}); by thread: {}\n",
        field("Threads:"),
        broker_connections(pid),
        rss_kib / 1024.0,
        percent(cpu0, cpu1),
        IDLE.as_secs(),
        match (broker0, broker1) {
            (Some(a), Some(b)) => format!("{:.1} %", percent(a, b)),
            _ => "unknown".into(),
        },
        by_thread.join(", ")
    )
}

/// CPU ticks of a process's threads, summed by thread name.
fn thread_ticks(pid: u32) -> std::collections::HashMap<String, u64> {
    let mut ticks = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return ticks;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Some(tid) = path
            .file_name()
            .and_then(|t| t.to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        *ticks.entry(name.trim().to_owned()).or_default() +=
            cpu_ticks_of(&format!("/proc/{pid}/task/{tid}/stat"));
    }
    ticks
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    cpu_ticks_of(&format!("/proc/{pid}/stat"))
}

/// utime + stime of a `stat` file, in clock ticks.
fn cpu_ticks_of(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let at = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    at(11) + at(12)
}

/// The process's established TCP connections to the port of the first of
/// `INSIKT_KAFKA_BROKERS`.
fn broker_connections(pid: u32) -> usize {
    let brokers = insikt::config::Config::from_env().kafka_brokers;
    let port: u16 = brokers
        .split(',')
        .next()
        .and_then(|b| b.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(9092);
    let port = format!(":{port:04X}");
    let sockets: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    ["tcp", "tcp6"]
        .iter()
        .flat_map(|t| {
            std::fs::read_to_string(format!("/proc/{pid}/net/{t}"))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9 && f[2].ends_with(&port) && f[3] == "01" && sockets.contains(f[9])
        })
        .count()
}

/// Deletes the run's database and the topics of its deployment.
async fn cleanup(bench: common::BenchDatabase, config: &insikt::config::Config, deployment: &str) {
    bench.drop().await;
    let stem = format!("{}.{deployment}.", config.topic_prefix);
    let deleted = common::delete_topics(&config.kafka_brokers, &stem).await;
    println!("(deleted {deleted} topics of {stem}*)");
}
