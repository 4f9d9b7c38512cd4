//! Benchmark (prints figures, asserts nothing): N statements in one import's
//! topic, then (a) a bare rdkafka consumer reading them all versus (b) the
//! job storing them all in PostgreSQL. Run through `scripts/bench.sh stream`.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use insikt::kafka::{self, Message, Offset, Producer};
use insikt::startup::Application;

mod common;

const CITIZENS: i64 = 1000;

#[tokio::main]
async fn main() {
    let total = common::size_arg(200_000);
    let (config, bench) = common::in_process("stream").await;
    let db = &bench.client;
    let import = bench.import_with_citizens(CITIZENS).await;
    // The stream, filled before anyone reads it.
    let common::Stream { naming, topic, .. } = bench.create_stream(&config, import).await;
    let producer = Producer::connect(&config.kafka_brokers, "insikt-bench-producer").unwrap();
    let started = Instant::now();
    common::produce_statements(&producer, &topic, import, 0..total, CITIZENS).await;
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

    // (b) The service's job storing everything. The peak RSS is reset first,
    // so the figure is the job's, not the bare consumer's or the producer's.
    let _ = common::reset_peak_rss();
    let started = Instant::now();
    let app = Application::build(config.clone()).await.expect("app");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let committed = common::wait_for_offsets(db, started, total, Duration::from_millis(20)).await;
    let job = committed.elapsed;
    let steady_rate = committed.rate_after_first();
    let stored: i64 = db
        .query_one("SELECT count(*) FROM statements", &[])
        .await
        .unwrap()
        .get(0);
    let peak_rss = common::peak_rss_mib();
    let _ = stop.send(());
    let _ = server.await;

    // (c) PostgreSQL's own load rate: the same rows, by `psql \copy`, into a
    // table of the same shape and keys, from two sessions as the job uses.
    let copied = common::psql_copy(&bench.url, db, import, total, CITIZENS).await;

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
    println!("peak RSS during (b):       {peak_rss:.1} MiB");
    println!("(shared machine; load average {})", common::load_average());

    bench.drop().await;
}
