//! Harness for statement streams: imports created by SQL (until the citizens
//! API is merged), statements, a producer straight to a topic, polling with a
//! deadline, and an app that can be stopped and restarted on one database.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use insikt::config::Config;
use serde_json::{json, Value};

use super::TestDatabase;

/// Quick batches and reconciliation, and an archive directory of the app's
/// own (the topic prefix and consumer group stay the defaults: each test
/// database is a deployment of its own on the shared broker).
pub fn configure(config: &mut Config) {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    config.archive_dir = std::env::temp_dir().join(format!("insikt-archive-{unique}"));
    config.job_batch_ms = 100;
    config.reconcile_secs = 1;
}

/// An import with the given citizen ids, written straight to the tables in
/// one statement, as the API writes an import in one transaction: a job
/// started for the import meanwhile sees all of its citizens or none.
pub async fn create_import(db: &tokio_postgres::Client, citizens: &[i32]) -> i64 {
    if citizens.is_empty() {
        return super::insert_import(db).await;
    }
    db.query_one(
        "WITH import AS (INSERT INTO imports DEFAULT VALUES RETURNING import_id), \
         added AS ( \
             INSERT INTO citizens (import_id, citizen_id, town, street, building, apartment, \
                                   name, birth_date, gender) \
             SELECT import_id, c, 'Moscow', 'Lenina', '1', 1, 'Ivan', '1990-01-01', 'male' \
               FROM import, unnest($1::int4[]) AS c \
         ) \
         SELECT import_id FROM import",
        &[&citizens],
    )
    .await
    .unwrap()
    .get(0)
}

/// A valid statement.
pub fn statement(id: &str, import_id: i64, citizen_id: i32) -> Value {
    json!({
        "statement_id": id, "import_id": import_id, "citizen_id": citizen_id,
        "course": "rust", "channel": "radio", "score": 0.8,
        "text": "I would take it", "ts": "2026-11-28T12:00:00Z"
    })
}

/// A producer like the service's, for writing straight to topics.
pub fn producer(config: &Config) -> insikt::kafka::Producer {
    insikt::kafka::Producer::connect(&config.kafka_brokers, "insikt-test-producer").unwrap()
}

/// Polls `check` until it yields a value, failing after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until job `name` runs; its topic.
pub async fn running_topic(db: &tokio_postgres::Client, name: &str, timeout: Duration) -> String {
    eventually("a running job", timeout, || async {
        db.query_opt(
            "SELECT topic FROM jobs WHERE name = $1 AND state = 'running'",
            &[&name],
        )
        .await
        .unwrap()
        .map(|r| r.get::<_, String>(0))
    })
    .await
}

/// As [`eventually`], but a timeout's message adds what `explain` says
/// then (e.g. [`job_report`]): a fault test that fails once in CI must say
/// where the job stood.
pub async fn eventually_explained<T, F, Fut, E, EFut>(
    what: &str,
    timeout: Duration,
    check: F,
    explain: E,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
    E: FnOnce() -> EFut,
    EFut: Future<Output = String>,
{
    // The inner wait's own deadline is never reached first.
    let inner = eventually(what, timeout + Duration::from_secs(60), check);
    match tokio::time::timeout(timeout, inner).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}: {}", explain().await),
    }
}

/// The job of an import as PostgreSQL has it (state, owner, last error,
/// stored offsets) and how many statements are stored; on a connection of
/// its own (the test's may have died with PostgreSQL).
pub async fn job_report(url: &str, import_id: i64) -> String {
    let db = match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((db, connection)) => {
            tokio::spawn(connection);
            db
        }
        Err(error) => return format!("no PostgreSQL to ask: {error}"),
    };
    const SQL: &str = "
        SELECT format('job %s: state %s (desired %s), owner %s, last error %s, offsets %s; %s statements stored',
                      name, state, desired, coalesce(owner, '-'), coalesce(last_error, '-'),
                      coalesce((SELECT string_agg(partition || ':' || next_offset, ',')
                                  FROM job_offsets WHERE job = name), '-'),
                      (SELECT count(*) FROM statements s WHERE s.import_id = jobs.import_id))
          FROM jobs WHERE import_id = $1";
    match db.query_opt(SQL, &[&import_id]).await {
        Ok(Some(row)) => row.try_get(0).unwrap_or_else(|e| e.to_string()),
        Ok(None) => format!("import {import_id} has no job"),
        Err(error) => format!("job of import {import_id} not read: {error}"),
    }
}

pub async fn count(db: &tokio_postgres::Client, sql: &str, import_id: i64) -> i64 {
    db.query_one(sql, &[&import_id]).await.unwrap().get(0)
}

/// Waits until the import's statement counts (what demand reads) match its
/// stored statements row for row: each counted exactly once, however the
/// job got there (folds, a crash and its catch-up, a hand-over).
pub async fn counts_match_statements(db: &tokio_postgres::Client, import_id: i64) {
    const SQL: &str = "
        WITH counted AS (
            SELECT citizen_id, channel, course, statements FROM statement_counts WHERE import_id = $1
        ), expected AS (
            SELECT citizen_id, channel, course, count(*) AS statements
              FROM statements WHERE import_id = $1
             GROUP BY GROUPING SETS ((citizen_id, channel, course), (citizen_id, channel))
        )
        SELECT count(*) FROM (
            (SELECT * FROM counted EXCEPT ALL SELECT * FROM expected)
            UNION ALL
            (SELECT * FROM expected EXCEPT ALL SELECT * FROM counted)
        ) AS differences";
    eventually(
        &format!("the counts of import {import_id} to match its statements"),
        Duration::from_secs(30),
        || async { (count(db, SQL, import_id).await == 0).then_some(()) },
    )
    .await;
}

pub async fn stored(db: &tokio_postgres::Client, import_id: i64) -> i64 {
    count(
        db,
        "SELECT count(*) FROM statements WHERE import_id = $1",
        import_id,
    )
    .await
}

/// The statement ids stored for `import_id`, sorted (byte order, not the
/// database's collation).
pub async fn stored_ids(db: &tokio_postgres::Client, import_id: i64) -> Vec<String> {
    let mut ids: Vec<String> = db
        .query(
            "SELECT statement_id FROM statements WHERE import_id = $1",
            &[&import_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    ids.sort();
    ids
}

/// A config for `Served` apps on `database` sharing one stream setup.
pub fn served_config(database: &TestDatabase, template: &Config) -> Config {
    let mut config = super::test_config(database);
    config.topic_prefix = template.topic_prefix.clone();
    config.consumer_group = template.consumer_group.clone();
    config.archive_dir = template.archive_dir.clone();
    config.job_batch_ms = template.job_batch_ms;
    config.reconcile_secs = template.reconcile_secs;
    // The instances of one deployment read with the same consumers.
    config.kafka_consumers = template.kafka_consumers;
    config.stream_sleep_after = template.stream_sleep_after;
    config
}

/// The statement ids of archived lines (their raw payloads), sorted.
pub fn statement_ids(lines: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = lines
        .iter()
        .map(|line| {
            let payload: Value = serde_json::from_str(line["payload"].as_str().unwrap()).unwrap();
            payload["statement_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// Every line of the archive objects of `job` (gzip NDJSON), parsed, in
/// object name order.
pub fn archived(archive_dir: &Path, job: &str) -> Vec<Value> {
    let dir = archive_dir.join(job);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    let mut lines = Vec::new();
    for path in paths {
        if path.to_string_lossy().ends_with(".ndjson.gz") {
            lines.extend(gunzip_lines(&std::fs::read(&path).unwrap()));
        }
    }
    lines
}

/// The lines of a gzip NDJSON object, parsed.
pub fn gunzip_lines(object: &[u8]) -> Vec<Value> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(object)
        .read_to_string(&mut text)
        .expect("a gzip object");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A free port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary as instance `instance` of the deployment on `database`,
/// with `template`'s stream settings: a process of its own, to kill.
pub fn binary(
    database: &TestDatabase,
    template: &Config,
    instance: &str,
    port: u16,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .env("INSIKT_DATABASE_URL", &database.url)
        .env("INSIKT_LISTEN", format!("127.0.0.1:{port}"))
        .env("INSIKT_NO_MIGRATE", "true")
        .env("INSIKT_TOPIC_PREFIX", &template.topic_prefix)
        .env("INSIKT_CONSUMER_GROUP", &template.consumer_group)
        .env("INSIKT_ARCHIVE_DIR", &template.archive_dir)
        .env("INSIKT_RECONCILE_SECS", template.reconcile_secs.to_string())
        .env("INSIKT_JOB_BATCH_SIZE", "500")
        .env("INSIKT_JOB_BATCH_MS", "50")
        .env("INSIKT_INSTANCE_ID", instance)
        .env(
            "INSIKT_KAFKA_SESSION_TIMEOUT",
            format!("{}ms", template.kafka_session_timeout.as_millis()),
        )
        .env(
            "INSIKT_KAFKA_HEARTBEAT",
            format!("{}ms", template.kafka_heartbeat.as_millis()),
        )
        .env(
            "INSIKT_STREAM_SLEEP_AFTER",
            format!("{}ms", template.stream_sleep_after.as_millis()),
        )
        .env("INSIKT_ADMIN_TOKEN", super::ADMIN_TOKEN)
        .env("INSIKT_SECRET", "test")
        .env("INSIKT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the insikt binary starts")
}
