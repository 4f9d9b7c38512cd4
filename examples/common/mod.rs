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
    let mut command = Command::new(binary);
    command.arg("serve").env("INSIKT_LISTEN", "127.0.0.1:0");
    bench_settings(&mut command, url, id)
        .env("INSIKT_RECONCILE_SECS", "1")
        .envs(env.iter().copied())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"))
}

/// The settings every benchmark's service runs with: on `url` (migrated
/// by the benchmark) as instance `id`, its log at `INSIKT_LOG` (warn).
pub fn bench_settings<'a>(command: &'a mut Command, url: &str, id: &str) -> &'a mut Command {
    command
        .env("INSIKT_DATABASE_URL", url)
        .env("INSIKT_NO_MIGRATE", "true")
        .env("INSIKT_INSTANCE_ID", id)
        .env("INSIKT_SECRET", "bench")
        .env(
            "INSIKT_ARCHIVE_DIR",
            std::env::temp_dir().join("insikt-bench-archive"),
        )
        .env(
            "INSIKT_LOG",
            std::env::var("INSIKT_LOG").unwrap_or("warn".into()),
        )
        .stdout(Stdio::null())
}

pub fn size_arg(default: i64) -> i64 {
    std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Settings for a service run inside the benchmark's process: the
/// environment's, on a database of its own (`label`), a free port, as
/// instance "bench"; logging set up as the service does.
pub async fn in_process(label: &str) -> (insikt::config::Config, BenchDatabase) {
    let mut config = insikt::config::Config::from_env();
    insikt::telemetry::init(&config.log_filter);
    let bench = BenchDatabase::create(&config.database_url, label).await;
    config.database_url = bench.url.clone();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.instance_id = Some("bench".into());
    config.secret = Some("bench".into());
    (config, bench)
}

/// A new, empty import's id.
pub async fn new_import(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "INSERT INTO imports DEFAULT VALUES RETURNING import_id",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// A database of its own for one benchmark run, migrated; dropped by
/// [`BenchDatabase::drop`] unless `INSIKT_BENCH_KEEP` is set.
pub struct BenchDatabase {
    /// The server's URL without the database.
    server: String,
    pub name: String,
    pub url: String,
    pub client: tokio_postgres::Client,
}

impl BenchDatabase {
    /// Creates and migrates `insikt_bench_{label}_{random}` on the server of
    /// `database_url`.
    pub async fn create(database_url: &str, label: &str) -> Self {
        let server = database_url
            .rsplit_once('/')
            .map_or(database_url.to_owned(), |(server, _)| server.to_owned());
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("insikt_bench_{label}_{}", &unique[..8]);
        let url = format!("{server}/{name}");
        insikt::db::migrate(&url).await.expect("migrate");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        Self {
            server,
            name,
            url,
            client,
        }
    }

    /// A new import with citizens `0..citizens`, all alike (the benchmarks'
    /// statements only need them to exist).
    pub async fn import_with_citizens(&self, citizens: i64) -> i64 {
        let import = new_import(&self.client).await;
        self.client
            .execute(
                "INSERT INTO citizens (import_id, citizen_id, town, street, building, apartment, name, birth_date, gender) \
                 SELECT $1, g, 'Moscow', 'Lenina', '1', 1, 'Ivan', '1990-01-01', 'male' \
                   FROM generate_series(0, $2::bigint - 1) g",
                &[&import, &citizens],
            )
            .await
            .unwrap();
        import
    }

    /// `import`'s stream as the service names it in this database, the
    /// topic created (with the configured retention) ahead of the service,
    /// so the benchmark can fill it first.
    pub async fn create_stream(&self, config: &insikt::config::Config, import: i64) -> Stream {
        let deployment: String = self
            .client
            .query_one("SELECT id::text FROM deployment", &[])
            .await
            .unwrap()
            .get(0);
        let naming = insikt::jobs::Naming::new(
            deployment.parse().unwrap(),
            &config.topic_prefix,
            &config.consumer_group,
        );
        let job = naming.job_name(import);
        let topic = naming.topic(&job);
        insikt::kafka::Cluster::connect(&config.kafka_brokers, "insikt-bench")
            .unwrap()
            .create_topic(&topic, config.retention)
            .await
            .unwrap();
        Stream { naming, job, topic }
    }

    pub async fn drop(self) {
        drop(self.client);
        if std::env::var_os("INSIKT_BENCH_KEEP").is_some() {
            return;
        }
        let (admin, connection) =
            tokio_postgres::connect(&format!("{}/postgres", self.server), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// An import's stream: its job's name and topic, and the naming they come from.
pub struct Stream {
    pub naming: insikt::jobs::Naming,
    pub job: String,
    pub topic: String,
}

/// This process's resident set now (`VmRSS`), or its peak since the start
/// or the last [`reset_peak_rss`] (`VmHWM`), in MiB (Linux).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// Restarts the peak resident set from the current one (Linux: "5" to
/// `clear_refs`), so a figure is one phase's, not an earlier one's; returns
/// the current one, in MiB, which the phase's peak is to be read against.
pub fn reset_peak_rss() -> f64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_mib("VmRSS:")
}

/// The machine's load average, printed beside figures taken on a shared machine.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// `psql` on `url`, quiet, without a psqlrc, stopping at the first error.
pub fn psql(url: &str) -> Command {
    let mut command = Command::new("psql");
    command.arg(url).args(["-qX", "-v", "ON_ERROR_STOP=1"]);
    command
}

/// Loads `total` rows shaped as the job stores [`produce_statements`]'s
/// for `citizens` citizens (written as CSV) into `statements_copy`, a table `LIKE statements
/// INCLUDING ALL`, with two concurrent `psql \copy` sessions of half the
/// rows each, as the job writes from two: PostgreSQL's own load rate, the
/// limit a stream's rate is measured against. The time from starting them
/// to both finishing.
pub async fn psql_copy(
    url: &str,
    db: &tokio_postgres::Client,
    import: i64,
    total: i64,
    citizens: i64,
) -> Duration {
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
                writeln!(
                    csv,
                    "{import},bench-{i},{},rust,radio,0.7,\"I would like a course about this, in the evenings.\",2026-11-28T12:00:00Z,0,{i}",
                    i % citizens
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
            psql(url)
                .arg("-c")
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

/// Deletes every topic whose name starts with `prefix` (what a benchmark
/// run made on the shared broker); how many.
pub async fn delete_topics(brokers: &str, prefix: &str) -> usize {
    insikt::kafka::Cluster::connect(brokers, "insikt-bench-cleanup")
        .unwrap()
        .delete_topics_with_prefix(prefix)
        .await
        .unwrap()
}
