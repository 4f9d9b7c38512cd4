//! Benchmark (prints figures, asserts nothing): the stream throughput of one
//! `insikt serve` process against two (one consumer group, one database)
//! over six imports' streams. The six topics are filled first; each run then
//! starts its instances on a fresh database (given the same deployment
//! identity, so its jobs' topics are those six) and a fresh group, so both
//! runs read exactly the same messages from the beginning. Run through
//! `scripts/bench.sh scale` (which builds the release binary).
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use insikt::config::Config;
use insikt::jobs::Naming;
use insikt::kafka::{Cluster, Producer};

mod common;

const IMPORTS: i64 = 6;
const CITIZENS: i64 = 1000;

#[tokio::main]
async fn main() {
    let per_import = common::size_arg(50_000);
    let binary = std::env::var("INSIKT_BENCH_BIN").unwrap_or("target/release/insikt".into());
    let config = Config::from_env();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("insikt.bench.scale.{unique}");
    let deployment = uuid::Uuid::new_v4();
    let naming = Naming::new(deployment, &prefix, "");

    // Six streams, filled before anyone reads them (imports 1..=6 in every fresh database).
    let cluster = Cluster::connect(&config.kafka_brokers, "insikt-bench-scale").unwrap();
    let producer = Producer::connect(&config.kafka_brokers, "insikt-bench-scale-producer").unwrap();
    let started = Instant::now();
    for import in 1..=IMPORTS {
        let topic = naming.topic(&naming.job_name(import));
        cluster
            .create_topic(&topic, config.retention)
            .await
            .unwrap();
        common::produce_statements(&producer, &topic, import, 0..per_import, CITIZENS).await;
    }
    let total = IMPORTS * per_import;
    println!(
        "scale bench: {IMPORTS} imports x {per_import} statements = {total}, produced in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut rates = Vec::new();
    for instances in [1usize, 2] {
        let bench =
            common::BenchDatabase::create(&config.database_url, &format!("scale_{instances}"))
                .await;
        let (url, db) = (bench.url.clone(), &bench.client);
        db.batch_execute(&format!(
            "UPDATE deployment SET id = '{deployment}';
             INSERT INTO imports SELECT FROM generate_series(1, {IMPORTS});
             INSERT INTO citizens (import_id, citizen_id, town, street, building, apartment, name, birth_date, gender)
             SELECT i, c, 'Moscow', 'Lenina', '1', 1, 'Ivan', '1990-01-01', 'male'
               FROM generate_series(1, {IMPORTS}) i, generate_series(0, {CITIZENS} - 1) c;"
        ))
        .await
        .unwrap();

        let group = format!("insikt-bench-scale-{unique}-{instances}");
        let started = Instant::now();
        let mut children: Vec<Child> = (0..instances)
            .map(|k| {
                common::serve(
                    &binary,
                    &url,
                    &format!("bench-{instances}-{k}"),
                    &[
                        ("INSIKT_TOPIC_PREFIX", prefix.as_str()),
                        ("INSIKT_CONSUMER_GROUP", group.as_str()),
                    ],
                )
            })
            .collect();
        let committed =
            common::wait_for_offsets(db, started, total, Duration::from_millis(50)).await;
        let elapsed = committed.elapsed;
        let steady = committed.rate_after_first();
        let owners: Vec<String> = db
            .query(
                "SELECT COALESCE(owner, '-') || ': ' || count(*) FROM jobs GROUP BY owner ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let stored: i64 = db
            .query_one("SELECT count(*) FROM statements", &[])
            .await
            .unwrap()
            .get(0);
        let rate = total as f64 / elapsed.as_secs_f64();
        println!(
            "{instances} instance(s): {rate:>8.0} msg/s ({:.1} s incl. start and group join; \
             {steady:.0} msg/s after the first commit); stored {stored}; jobs per owner {owners:?}",
            elapsed.as_secs_f64()
        );
        rates.push((rate, steady));
        for child in &mut children {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        for child in &mut children {
            let _ = child.wait();
        }
        bench.drop().await;
    }
    println!(
        "ratio two/one: {:.2} (whole run), {:.2} (after the first commit)",
        rates[1].0 / rates[0].0,
        rates[1].1 / rates[0].1
    );
    println!(
        "(shared machine: {} cores, load average {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
