//! The jobs' rows in PostgreSQL: the source of truth for job state.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{JobView, Naming};
use crate::db::{Client, DbError, Transaction};
use crate::telemetry::metrics;

/// Filters of `GET /jobs`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub name: Option<String>,
    pub state: Option<String>,
    pub import: Option<i64>,
}

/// What a job actor needs to know about its row.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub name: String,
    pub import_id: i64,
    pub topic: String,
    pub state: String,
    pub desired: String,
    pub topic_ready: bool,
    pub expires_at: DateTime<Utc>,
    /// The instance whose consumer-group member holds the job's topic.
    pub owner: Option<String>,
    /// Named before deployments had identities (migration V9): its topic
    /// may be shared with another deployment, so it is never deleted.
    pub legacy_topic: bool,
}

const ROW_COLUMNS: &str =
    "name, import_id, topic, state, desired, topic_ready, expires_at, owner, legacy_topic";

fn row(r: &tokio_postgres::Row) -> Result<JobRow, DbError> {
    Ok(JobRow {
        name: r.try_get(0)?,
        import_id: r.try_get(1)?,
        topic: r.try_get(2)?,
        state: r.try_get(3)?,
        desired: r.try_get(4)?,
        topic_ready: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        owner: r.try_get(7)?,
        legacy_topic: r.try_get(8)?,
    })
}

fn rows(rows: &[tokio_postgres::Row]) -> Result<Vec<JobRow>, DbError> {
    rows.iter().map(row).collect()
}

/// Gives every import without a job (or those of `only`) its `pending`
/// job row, all in one statement.
pub async fn create_missing(
    client: &Client,
    naming: &Naming,
    retention: Duration,
    only: Option<&[i64]>,
) -> Result<(), DbError> {
    let imports = client
        .query(
            "SELECT i.import_id FROM imports i \
             WHERE ($1::bigint[] IS NULL OR i.import_id = ANY($1)) \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.import_id = i.import_id)",
            &[&only],
        )
        .await?;
    if imports.is_empty() {
        return Ok(());
    }
    let (mut ids, mut names, mut topics) = (Vec::new(), Vec::new(), Vec::new());
    for import in &imports {
        let import_id: i64 = import.try_get(0)?;
        let name = naming.job_name(import_id);
        topics.push(naming.topic(&name));
        ids.push(import_id);
        names.push(name);
    }
    let inserted = client
        .query(
            "INSERT INTO jobs (name, import_id, topic, expires_at) \
             SELECT n, i, t, now() + make_interval(secs => $4) \
               FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(n, i, t) \
             ON CONFLICT DO NOTHING RETURNING name",
            &[&names, &ids, &topics, &retention.as_secs_f64()],
        )
        .await?;
    for name in &inserted {
        metrics::set_job_state(name.try_get(0)?, "pending");
    }
    Ok(())
}

/// The topics of jobs named before deployments had identities (migration
/// V9) that may still be consumed: they are subscribed to by name.
pub async fn legacy_topics(client: &Client) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "SELECT topic FROM jobs WHERE legacy_topic AND state <> 'expired' ORDER BY topic",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(DbError::from))
        .collect()
}

/// Which jobs a query is about.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Imports(Vec<i64>),
    Names(Vec<String>),
}

/// Jobs that are not finished (not expired or failed), in `scope`.
pub async fn live(client: &Client, scope: &Scope) -> Result<Vec<JobRow>, DbError> {
    let (imports, names) = match scope {
        Scope::All => (None, None),
        Scope::Imports(ids) => (Some(ids.as_slice()), None),
        Scope::Names(names) => (None, Some(names.as_slice())),
    };
    let found = client
        .query(
            &format!(
                "SELECT {ROW_COLUMNS} FROM jobs WHERE state NOT IN ('expired', 'failed') \
                 AND ($1::bigint[] IS NULL OR import_id = ANY($1)) \
                 AND ($2::text[] IS NULL OR name = ANY($2)) ORDER BY import_id"
            ),
            &[&imports, &names],
        )
        .await?;
    rows(&found)
}

/// The expired jobs among `names` whose topics are theirs alone (not legacy).
pub async fn expired_topics(client: &Client, names: &[String]) -> Result<Vec<JobRow>, DbError> {
    let found = client
        .query(
            &format!(
                "SELECT {ROW_COLUMNS} FROM jobs \
                 WHERE state = 'expired' AND NOT legacy_topic AND name = ANY($1)"
            ),
            &[&names],
        )
        .await?;
    rows(&found)
}

/// The job of an import, whatever its state.
pub async fn of_import(client: &Client, import_id: i64) -> Result<Option<JobRow>, DbError> {
    let row_opt = client
        .query_opt(
            &format!("SELECT {ROW_COLUMNS} FROM jobs WHERE import_id = $1"),
            &[&import_id],
        )
        .await?;
    row_opt.as_ref().map(row).transpose()
}

pub async fn by_name(client: &Client, name: &str) -> Result<Option<JobRow>, DbError> {
    let row_opt = client
        .query_opt(
            &format!("SELECT {ROW_COLUMNS} FROM jobs WHERE name = $1"),
            &[&name],
        )
        .await?;
    row_opt.as_ref().map(row).transpose()
}

/// The topics exist: a stopped job becomes `stopped`, others stay pending
/// until their actor reports `running`.
pub async fn topics_created(client: &Client, names: &[String]) -> Result<(), DbError> {
    let updated = client
        .query(
            "UPDATE jobs SET topic_ready = true, last_error = NULL, updated_at = now(), \
             state = CASE WHEN desired = 'stopped' AND state = 'pending' THEN 'stopped' ELSE state END \
             WHERE name = ANY($1) RETURNING name, state",
            &[&names],
        )
        .await?;
    for row in updated {
        metrics::set_job_state(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(())
}

pub async fn set_desired(client: &Client, name: &str, desired: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE jobs SET desired = $2, updated_at = now() WHERE name = $1",
            &[&name, &desired],
        )
        .await?;
    Ok(())
}

/// Records a state change (never leaving `expired`) in the table and in the
/// job state gauge, and the owner when given (ownership itself changes only
/// with [`claim`] and [`release`]).
pub async fn set_state(
    client: &Client,
    name: &str,
    state: &str,
    owner: Option<&str>,
    error: Option<&str>,
) -> Result<(), DbError> {
    let updated = client
        .execute(
            "UPDATE jobs SET state = $2, owner = COALESCE($3, owner), \
             last_error = COALESCE($4, last_error), updated_at = now(), \
             started_at = CASE WHEN $2 = 'running' THEN COALESCE(started_at, now()) ELSE started_at END \
             WHERE name = $1 AND state <> 'expired'",
            &[&name, &state, &owner, &error],
        )
        .await?;
    if updated > 0 {
        metrics::set_job_state(name, state);
    }
    Ok(())
}

/// Records `owner` as the owner of the jobs `names` (its group member was
/// just assigned their topics). Waits for a batch in flight to commit: the
/// batch's fence holds the row.
pub async fn claim(client: &Client, names: &[String], owner: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE jobs SET owner = $2, updated_at = now() WHERE name = ANY($1)",
            &[&names, &owner],
        )
        .await?;
    Ok(())
}

/// `owner` no longer holds the jobs `names` (all of its jobs when `None`):
/// their owner is cleared and a running one is `pending` until its next
/// owner starts it.
pub async fn release(
    client: &Client,
    names: Option<&[String]>,
    owner: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE jobs SET owner = NULL, updated_at = now(), \
             state = CASE WHEN state = 'running' THEN 'pending' ELSE state END \
             WHERE owner = $2 AND ($1::text[] IS NULL OR name = ANY($1))",
            &[&names, &owner],
        )
        .await?;
    Ok(())
}

/// The channel on which instances tell each other that a job's desired
/// state changed (the payload is the job's name).
pub const CHANNEL: &str = "insikt_jobs";

/// Tells every instance (the owner among them) that job `name` changed.
pub async fn notify(client: &Client, name: &str) -> Result<(), DbError> {
    notify_all(client, CHANNEL, &[name]).await
}

/// One notification on `channel` per payload, in one statement.
async fn notify_all(client: &Client, channel: &str, payloads: &[&str]) -> Result<(), DbError> {
    client
        .execute(
            "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
            &[&channel, &payloads],
        )
        .await?;
    Ok(())
}

/// The channel on which an instance that wrote records to a stream tells
/// the others, so that the owner wakes the stream's reader if it sleeps
/// (the payload is the topic).
pub const STREAMS_CHANNEL: &str = "insikt_streams";

/// Tells every instance (the owner among them) that records were written to
/// `topic`.
pub async fn notify_written(client: &Client, topic: &str) -> Result<(), DbError> {
    notify_all(client, STREAMS_CHANNEL, &[topic]).await
}

/// The channel on which an instance that created stream topics tells the
/// others, whose consumers then look for them at once (the payload is a
/// topic).
pub const TOPICS_CHANNEL: &str = "insikt_topics";

/// Tells every instance that `topics` were created.
pub async fn notify_created(client: &Client, topics: &[String]) -> Result<(), DbError> {
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    notify_all(client, TOPICS_CHANNEL, &topics).await
}

/// Stores `next` as the job's next offset of `partition` (in the caller's
/// transaction: an archive records it with what it archived).
pub async fn store_offset(
    tx: &Transaction<'_>,
    name: &str,
    partition: i32,
    next: i64,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO job_offsets (job, partition, next_offset) VALUES ($1, $2, $3) \
         ON CONFLICT (job, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
        &[&name, &partition, &next],
    )
    .await?;
    Ok(())
}

/// The stored next offset per partition.
pub async fn offsets(client: &Client, name: &str) -> Result<HashMap<i32, i64>, DbError> {
    let rows = client
        .query(
            "SELECT partition, next_offset FROM job_offsets WHERE job = $1",
            &[&name],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

pub async fn list(client: &Client, filter: &JobFilter) -> Result<Vec<JobView>, DbError> {
    let rows = client
        .query(
            "SELECT j.name, j.import_id, j.topic, j.state, j.desired, j.owner, \
             COALESCE((SELECT sum(o.next_offset) FROM job_offsets o WHERE o.job = j.name), 0)::bigint, \
             (SELECT count(*) FROM statements s WHERE s.import_id = j.import_id), \
             (SELECT count(*) FROM dead_letters d WHERE d.import_id = j.import_id), \
             j.created_at, j.started_at, j.expires_at, j.last_error, j.topic_ready \
             FROM jobs j \
             WHERE ($1::text IS NULL OR j.name = $1) AND ($2::text IS NULL OR j.state = $2) \
             AND ($3::bigint IS NULL OR j.import_id = $3) \
             ORDER BY j.import_id",
            &[&filter.name, &filter.state, &filter.import],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(JobView {
                name: r.try_get(0)?,
                import: r.try_get(1)?,
                topic: r.try_get(2)?,
                state: r.try_get(3)?,
                desired: r.try_get(4)?,
                owner: r.try_get(5)?,
                committed_offset: r.try_get(6)?,
                high_watermark: None,
                lag: None,
                statements_stored: r.try_get(7)?,
                dead_letters: r.try_get(8)?,
                created_at: r.try_get(9)?,
                started_at: r.try_get(10)?,
                expires_at: r.try_get(11)?,
                last_error: r.try_get(12)?,
                topic_ready: r.try_get(13)?,
            })
        })
        .collect()
}
