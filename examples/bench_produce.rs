//! Benchmark (prints figures, asserts nothing): the produce rate of the
//! service's transactional producer (one transaction per request, the way
//! `POST /imports/{id}/statements` produces) against the idempotent producer
//! without transactions, on the same records in the same run: N statements
//! in requests of R records, C requests in flight at once.
//! Run through `scripts/bench.sh produce [N] [R] [C]`.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use insikt::config::Config;
use insikt::kafka::{Cluster, Producer, TransactionalProducer};

#[tokio::main]
async fn main() {
    let arg = |n: usize, default: usize| {
        std::env::args()
            .nth(n)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (total, per_request, in_flight) = (arg(1, 200_000), arg(2, 1000), arg(3, 1));
    let config = Config::from_env();
    let cluster = Cluster::connect(&config.kafka_brokers, "insikt-bench-produce").unwrap();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let requests: Vec<Vec<(String, Vec<u8>)>> = (0..total)
        .collect::<Vec<_>>()
        .chunks(per_request)
        .map(|chunk| {
            chunk
                .iter()
                .map(|i| {
                    let payload = serde_json::json!({
                        "statement_id": format!("bench-{i}"), "import_id": 1,
                        "citizen_id": i % 1000, "course": "rust", "channel": "radio",
                        "score": 0.7, "text": "I would like a course about this, in the evenings.",
                        "ts": "2026-11-28T12:00:00Z"
                    });
                    ((i % 1000).to_string(), payload.to_string().into_bytes())
                })
                .collect()
        })
        .collect();
    println!(
        "produce bench: {total} statements in requests of {per_request}, {in_flight} in flight"
    );

    let plain = Producer::connect(&config.kafka_brokers, "insikt-bench-plain").unwrap();
    let transactional = TransactionalProducer::start(
        &config.kafka_brokers,
        "insikt-bench-transactional",
        &format!("insikt-bench-{unique}"),
    )
    .unwrap();
    // Alternately, twice each, on topics of their own: the broker's and the
    // machine's state drift over a run.
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..4 {
        let with_transactions = round % 2 == 1;
        let topic = format!("insikt.bench.produce.{unique}.{round}");
        cluster
            .create_topic(&topic, Duration::from_secs(3600))
            .await
            .unwrap();
        let started = Instant::now();
        let topic = &topic;
        stream::iter(requests.iter().cloned())
            .map(|records| {
                let (plain, transactional) = (&plain, &transactional);
                async move {
                    if with_transactions {
                        transactional
                            .send_all_with_headers(topic, records, &[])
                            .await
                    } else {
                        plain.send_all(topic, records).await
                    }
                }
            })
            .buffer_unordered(in_flight)
            .for_each(|sent| async move {
                sent.expect("produced");
            })
            .await;
        let rate = total as f64 / started.elapsed().as_secs_f64();
        let name = if with_transactions {
            "transactional"
        } else {
            "idempotent"
        };
        println!("  {name:>13}: {rate:>9.0} records/s");
        rates[usize::from(with_transactions)].push(rate);
    }
    let best = |r: &Vec<f64>| r.iter().copied().fold(0.0, f64::max);
    let (plain, transactional) = (best(&rates[0]), best(&rates[1]));
    println!(
        "best of two: idempotent {plain:.0}, transactional {transactional:.0} records/s; \
         transactional / idempotent = {:.3} ({:+.1} %)",
        transactional / plain,
        (transactional / plain - 1.0) * 100.0
    );
    println!(
        "(shared machine: {} cores, load average {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
