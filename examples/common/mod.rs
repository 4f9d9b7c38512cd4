//! What the stream benchmarks share: the statements they put in a topic, and
//! the wait for the jobs to have committed all of them, and their services.
#![allow(dead_code)] // each benchmark uses a different part of it

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use insikt::kafka::Producer;

/// Produces statements `bench-{i}` for `ids` to `topic`, for citizens
/// `i % citizens` of `import` (keyed by citizen, as the API does), in chunks
/// of 10,000 acknowledged records.
pub async fn produce_statements(
    producer: &Producer,
    topic: &str,
    import: i64,
    ids: std::ops::Range<i64>,
    citizens: i64,
) {
    for chunk in ids.collect::<Vec<_>>().chunks(10_000) {
        let records = chunk
            .iter()
            .map(|i| {
                let citizen = i % citizens;
                let payload = serde_json::json!({
                    "statement_id": format!("bench-{i}"), "import_id": import,
                    "citizen_id": citizen, "course": "rust", "channel": "radio",
                    "score": 0.7, "text": "I would like a course about this, in the evenings.",
                    "ts": "2026-11-28T12:00:00Z"
                });
                (citizen.to_string(), payload.to_string().into_bytes())
            })
            .collect();
        producer.send_all(topic, records).await.unwrap();
    }
}

/// How the jobs got through a stream, timed from `started`.
pub struct Committed {
    /// Until every offset was committed.
    pub elapsed: Duration,
    /// The messages committed after the first commit, and in how long: the
    /// first commit also marks the end of the jobs' start-up.
    pub after_first: i64,
    pub after_first_took: Duration,
}

impl Committed {
    pub fn rate_after_first(&self) -> f64 {
        self.after_first as f64 / self.after_first_took.as_secs_f64().max(1e-9)
    }
}

/// Polls the jobs' stored next offsets (every `poll`) until they add up to
/// `total`; panics after 30 minutes.
pub async fn wait_for_offsets(
    db: &tokio_postgres::Client,
    started: Instant,
    total: i64,
    poll: Duration,
) -> Committed {
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let next: i64 = db
            .query_one(
                "SELECT COALESCE(sum(next_offset), 0)::bigint FROM job_offsets",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if first.is_none() && next > 0 {
            first = Some((Instant::now(), next));
        }
        if next >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the jobs are stuck"
        );
        tokio::time::sleep(poll).await;
    }
    let elapsed = started.elapsed();
    let (first_at, first_offset) = first.unwrap_or((started, 0));
    Committed {
        elapsed,
        after_first: total - first_offset,
        after_first_took: first_at.elapsed(),
    }
}

/// One `insikt serve` process on `url` as instance `id`, on a free port,
/// with `env` on top of the benchmarks' settings.
pub fn serve(binary: &str, url: &str, id: &str, env: &[(&str, &str)]) -> Child {
    Command::new(binary)
        .arg("serve")
        .env("INSIKT_DATABASE_URL", url)
        .env("INSIKT_LISTEN", "127.0.0.1:0")
        .env("INSIKT_NO_MIGRATE", "true")
        .env("INSIKT_INSTANCE_ID", id)
        .env("INSIKT_RECONCILE_SECS", "1")
        .env("INSIKT_SECRET", "bench")
        .env(
            "INSIKT_ARCHIVE_DIR",
            std::env::temp_dir().join("insikt-bench-archive"),
        )
        .env(
            "INSIKT_LOG",
            std::env::var("INSIKT_LOG").unwrap_or("warn".into()),
        )
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"))
}
