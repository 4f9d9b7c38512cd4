//! Benchmark (prints figures, asserts nothing): N statements in one import's
//! topic, then (a) a bare rdkafka consumer reading them all versus (b) the
//! job storing them all in PostgreSQL. Run through `scripts/bench.sh stream`.

use std::time::{Duration, Instant};

use insikt::config::Config;
use insikt::jobs::Naming;
use insikt::kafka::{self, Cluster, Message, Offset, Producer};
use insikt::startup::Application;

mod common;

/// The process's peak resident set since the last reset (VmHWM).
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map_or("?".to_owned(), |v| v.trim().to_owned())
}

/// Loads the rows the job stored for `import` (the same values, written as
/// CSV) into `statements_copy`, a table `LIKE statements INCLUDING ALL`, with
/// two concurrent `psql \copy` sessions of half the rows each; the time from
/// starting them to both finishing.
async fn psql_copy(url: &str, db: &tokio_postgres::Client, import: i64, total: i64) -> Duration {
    db.batch_execute(
        "DROP TABLE IF EXISTS statements_copy; \
         CREATE TABLE statements_copy (LIKE statements INCLUDING ALL)",
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir();
    let halves: Vec<std::path::PathBuf> = (0..2)
        .map(|half| {
            let path = dir.join(format!("insikt-bench-copy-{}-{half}.csv", std::process::id()));
            let mut csv = String::with_capacity(200 * total as usize / 2);
            for i in (half..total).step_by(2) {
                use std::fmt::Write;
                // As stored by the job (see common::produce_statements).
                writeln!(
                    csv,
                    "{import},bench-{i},{},rust,radio,0.7,\"I would like a course about this, in the evenings.\",2026-11-28T12:00:00Z,0,{i}",
                    i % 1000
                )
                .unwrap();
            }
            std::fs::write(&path, csv).unwrap();
            path
        })
        .collect();
    let started = Instant::now();
    let sessions: Vec<_> = halves
        .iter()
        .map(|path| {
            std::process::Command::new("psql")
                .arg(url)
                .args(["-qX", "-v", "ON_ERROR_STOP=1", "-c"])
                .arg(format!(
                    "\\copy statements_copy (import_id, statement_id, citizen_id, course, channel, \
                     score, text, ts, kafka_partition, kafka_offset) FROM '{}' WITH (FORMAT csv)",
                    path.display()
                ))
                .spawn()
                .expect("psql (scripts/services.sh up installs it)")
        })
        .collect();
    for mut session in sessions {
        assert!(session.wait().unwrap().success(), "psql \\copy failed");
    }
    let elapsed = started.elapsed();
    for path in halves {
        let _ = std::fs::remove_file(path);
    }
    let copied: i64 = db
        .query_one("SELECT count(*) FROM statements_copy", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(copied, total, "psql \\copy stored a wrong row count");
    elapsed
}

#[tokio::main]
async fn main() {
    let total: i64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let mut config = Config::from_env();
    insikt::telemetry::init(&config.log_filter);
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("insikt_bench_{}", &unique[..12]);
    let base = config
        .database_url
        .rsplit_once('/')
        .map_or(config.database_url.clone(), |(b, _)| b.to_owned());
    config.database_url = format!("{base}/{database}");
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.instance_id = Some("bench".into());
    config.secret = Some("bench".into());
    insikt::db::migrate(&config.database_url)
        .await
        .expect("migrate");

    let (db, connection) = tokio_postgres::connect(&config.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let import: i64 = db
        .query_one(
            "INSERT INTO imports DEFAULT VALUES RETURNING import_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.execute(
        "INSERT INTO citizens (import_id, citizen_id, town, street, building, apartment, name, birth_date, gender) \
         SELECT $1, g, 'Moscow', 'Lenina', '1', 1, 'Ivan', '1990-01-01', 'male' FROM generate_series(0, 999) g",
        &[&import],
    )
    .await
    .unwrap();

    // The stream, filled before anyone reads it.
    let deployment: String = db
        .query_one("SELECT id::text FROM deployment", &[])
        .await
        .unwrap()
        .get(0);
    let naming = Naming::new(
        deployment.parse().unwrap(),
        &config.topic_prefix,
        &config.consumer_group,
    );
    let topic = naming.topic(&naming.job_name(import));
    let cluster = Cluster::connect(&config.kafka_brokers, "insikt-bench").unwrap();
    cluster
        .create_topic(&topic, config.retention)
        .await
        .unwrap();
    let producer = Producer::connect(&config.kafka_brokers, "insikt-bench-producer").unwrap();
    let started = Instant::now();
    common::produce_statements(&producer, &topic, import, 0..total, 1000).await;
    let produce = started.elapsed();

    // (a) A bare consumer reading everything.
    let consumer = kafka::consumer(
        &config.kafka_brokers,
        "insikt-bench-bare",
        &naming.consumer_group(),
    )
    .unwrap();
    let started = Instant::now();
    // Assigned as the job assigns (see kafka::assign), inside the timing.
    let consumer = kafka::assign(consumer, &topic, vec![(0, Offset::Beginning)])
        .await
        .unwrap();
    let mut read = 0i64;
    // librdkafka takes ~0.5 s from assign to the first message (both sides
    // pay it); the rate after it is shown too.
    let mut bare_first = started;
    while read < total {
        let message = consumer.recv().await.unwrap();
        if read == 0 {
            bare_first = Instant::now();
        }
        read += 1;
        std::hint::black_box(message.payload());
    }
    let bare = started.elapsed();
    let bare_steady = bare_first.elapsed();
    drop(consumer);

    // (b) The service's job storing everything. The peak RSS is reset first
    // (Linux: "5" to clear_refs), so the figure is the job's, not the bare
    // consumer's or the producer's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let app = Application::build(config.clone()).await.expect("app");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let committed = common::wait_for_offsets(&db, started, total, Duration::from_millis(20)).await;
    let job = committed.elapsed;
    let steady_rate = committed.rate_after_first();
    let stored: i64 = db
        .query_one("SELECT count(*) FROM statements", &[])
        .await
        .unwrap()
        .get(0);
    let peak_rss = peak_rss();
    let _ = stop.send(());
    let _ = server.await;

    // (c) PostgreSQL's own load rate: the same rows, by `psql \copy`, into a
    // table of the same shape and keys, from two sessions as the job uses.
    let copied = psql_copy(&config.database_url, &db, import, total).await;

    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!("statements:                {total} (stored {stored})");
    println!(
        "produce (API producer):    {:>10.0} msg/s  ({:.2} s)",
        rate(produce),
        produce.as_secs_f64()
    );
    println!(
        "(a) bare consumer:         {:>10.0} msg/s  ({:.2} s)",
        rate(bare),
        bare.as_secs_f64()
    );
    println!(
        "(a') bare after 1st msg:   {:>10.0} msg/s  ({:.2} s to the first message)",
        (total - 1) as f64 / bare_steady.as_secs_f64().max(1e-9),
        (bare - bare_steady).as_secs_f64()
    );
    println!(
        "(b) job into PostgreSQL:   {:>10.0} msg/s  ({:.2} s, incl. app start)",
        rate(job),
        job.as_secs_f64()
    );
    println!(
        "ratio b/a:                 {:>10.1} %  (target >= 50 %)",
        100.0 * bare.as_secs_f64() / job.as_secs_f64()
    );
    println!(
        "(b') job after 1st batch:  {steady_rate:>10.0} msg/s  ({} msgs in {:.2} s)",
        committed.after_first,
        committed.after_first_took.as_secs_f64()
    );
    println!(
        "ratio b'/a:                {:>10.1} %",
        100.0 * steady_rate / rate(bare)
    );
    let copy_rate = rate(copied);
    println!(
        "(c) psql \\copy, 2 sessions: {copy_rate:>10.0} rows/s  ({:.2} s, same rows, same keys)",
        copied.as_secs_f64()
    );
    println!(
        "ratio b'/c:                {:>10.2}    (target >= 0.8)",
        steady_rate / copy_rate
    );
    println!(
        "ratio b/c:                 {:>10.2}    (incl. app start)",
        rate(job) / copy_rate
    );
    println!("peak RSS during (b):       {peak_rss}");
    println!(
        "(shared machine; load average {})",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    drop(db);
    if std::env::var_os("INSIKT_BENCH_KEEP").is_none() {
        let (admin, connection) =
            tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .await;
    }
}
